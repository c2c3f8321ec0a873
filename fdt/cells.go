package fdt

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Defaults for a node without #address-cells / #size-cells (Devicetree
// Specification 2.3.5: "a client program should assume a default value of 2
// for #address-cells, and a value of 1 for #size-cells").
const (
	DefaultAddressCells = 2
	DefaultSizeCells    = 1
	// maxCells is the most cells a uint64 address or size can come from.
	maxCells = 2
)

// AddressCells returns this node's #address-cells, which governs how its
// children's reg addresses are encoded; 2 when absent.
func (n *Node) AddressCells() (uint32, error) {
	return n.cells("#address-cells", DefaultAddressCells)
}

// SizeCells returns this node's #size-cells, which governs how its
// children's reg sizes are encoded; 1 when absent.
func (n *Node) SizeCells() (uint32, error) {
	return n.cells("#size-cells", DefaultSizeCells)
}

func (n *Node) cells(prop string, def uint32) (uint32, error) {
	if !n.HasProperty(prop) {
		return def, nil
	}
	return n.U32(prop)
}

// RegCells returns the cell sizes that govern this node's own reg: its
// parent's #address-cells and #size-cells (defaults 2 and 1). For the root,
// which has no parent, it returns the defaults.
func (n *Node) RegCells() (addrCells, sizeCells uint32, err error) {
	if n.parent == nil {
		return DefaultAddressCells, DefaultSizeCells, nil
	}
	if addrCells, err = n.parent.AddressCells(); err != nil {
		return 0, 0, err
	}
	if sizeCells, err = n.parent.SizeCells(); err != nil {
		return 0, 0, err
	}
	return addrCells, sizeCells, nil
}

// Reg decodes the node's reg property with RegCells.
func (n *Node) Reg() ([]Range, error) {
	if n.parent == nil {
		return nil, fmt.Errorf("reg of the root node: %w", ErrValue)
	}
	ac, sc, err := n.RegCells()
	if err != nil {
		return nil, err
	}
	v, err := n.need("reg")
	if err != nil {
		return nil, err
	}
	rs, err := DecodeRanges(ac, sc, v)
	if err != nil {
		return nil, fmt.Errorf("%s:reg: %w", n.Path(), err)
	}
	return rs, nil
}

// EncodeRanges encodes (address, size) pairs with the given cell counts,
// as in reg, linux,usable-memory-range or linux,ima-kexec-buffer. A count of
// 0 omits that part (allowed for sizes only when every size is 0). It fails
// when a value does not fit its cells.
func EncodeRanges(addrCells, sizeCells uint32, rs []Range) ([]byte, error) {
	if addrCells > maxCells || sizeCells > maxCells || addrCells == 0 {
		return nil, fmt.Errorf("encode ranges with %d address and %d size cells: %w", addrCells, sizeCells, ErrValue)
	}
	out := make([]byte, 0, len(rs)*4*int(addrCells+sizeCells))
	for _, r := range rs {
		var err error
		if out, err = appendCells(out, addrCells, r.Start, "address"); err != nil {
			return nil, err
		}
		if out, err = appendCells(out, sizeCells, r.Size, "size"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func appendCells(b []byte, cells uint32, v uint64, what string) ([]byte, error) {
	switch cells {
	case 0:
		if v != 0 {
			return nil, fmt.Errorf("%s %#x with 0 cells: %w", what, v, ErrValue)
		}
		return b, nil
	case 1:
		if v > 0xffffffff {
			return nil, fmt.Errorf("%s %#x does not fit one cell: %w", what, v, ErrValue)
		}
		return binary.BigEndian.AppendUint32(b, uint32(v)), nil
	default:
		return binary.BigEndian.AppendUint64(b, v), nil
	}
}

// DecodeRanges decodes (address, size) pairs with the given cell counts.
// Counts above 2 are accepted when the extra high cells are zero, so that
// the result fits uint64.
func DecodeRanges(addrCells, sizeCells uint32, b []byte) ([]Range, error) {
	if addrCells == 0 || addrCells > 4 || sizeCells > 4 {
		return nil, fmt.Errorf("decode ranges with %d address and %d size cells: %w", addrCells, sizeCells, ErrValue)
	}
	stride := 4 * int(addrCells+sizeCells)
	if len(b)%stride != 0 {
		return nil, fmt.Errorf("%d bytes are not whole (%d+%d)-cell entries: %w", len(b), addrCells, sizeCells, ErrValue)
	}
	rs := make([]Range, 0, len(b)/stride)
	for off := 0; off < len(b); off += stride {
		a, err := readCells(b[off:], addrCells)
		if err != nil {
			return nil, err
		}
		s, err := readCells(b[off+4*int(addrCells):], sizeCells)
		if err != nil {
			return nil, err
		}
		rs = append(rs, Range{Start: a, Size: s})
	}
	return rs, nil
}

func readCells(b []byte, cells uint32) (uint64, error) {
	var v uint64
	for i := range int(cells) {
		c := binary.BigEndian.Uint32(b[4*i:])
		if v>>32 != 0 {
			return 0, fmt.Errorf("%d-cell value does not fit 64 bits: %w", cells, ErrValue)
		}
		v = v<<32 | uint64(c)
	}
	return v, nil
}

// MemoryRanges returns the reg ranges of the root's children whose
// device_type is "memory" (and whose status, if present, is "okay" or
// "ok"), sorted by start address. A tree without any (as on UEFI systems,
// where the EFI stub deletes them) yields ErrNoMemory: the memory map must
// then come from elsewhere, such as /proc/iomem.
func (t *Tree) MemoryRanges() ([]Range, error) {
	var rs []Range
	for _, c := range t.root.children {
		dt, err := c.String("device_type")
		if err != nil || dt != "memory" {
			continue
		}
		if !c.enabled() {
			continue
		}
		r, err := c.Reg()
		if err != nil {
			return nil, err
		}
		for _, x := range r {
			if x.Size == 0 {
				continue
			}
			if _, ok := x.End(); !ok {
				return nil, fmt.Errorf("%s: range %v wraps around: %w", c.Path(), x, ErrValue)
			}
			rs = append(rs, x)
		}
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("no /memory node with device_type \"memory\" and a non-empty reg: %w", ErrNoMemory)
	}
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	return rs, nil
}

// ReservedRanges returns what the tree reserves from the kernel: the memory
// reservation block plus the non-empty reg ranges of the enabled children
// of /reserved-memory (decoded with that node's cell sizes), in that
// order. Children without reg (dynamically placed pools) are skipped.
func (t *Tree) ReservedRanges() ([]Range, error) {
	rs := slices.Clone(t.Reservations)
	rm, ok := t.Lookup("/reserved-memory")
	if !ok {
		return rs, nil
	}
	for _, c := range rm.children {
		if !c.HasProperty("reg") || !c.enabled() {
			continue
		}
		r, err := c.Reg()
		if err != nil {
			return nil, err
		}
		for _, x := range r {
			if x.Size != 0 {
				rs = append(rs, x)
			}
		}
	}
	return rs, nil
}

// enabled reports whether the node has no status or status "okay"/"ok".
func (n *Node) enabled() bool {
	st, err := n.String("status")
	return err != nil || st == "okay" || st == "ok"
}
