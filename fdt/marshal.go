package fdt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Marshal serializes the tree as a version-17 blob. See the package
// documentation for what an unmodified parsed tree preserves.
func (t *Tree) Marshal() ([]byte, error) {
	if t.root == nil {
		return nil, fmt.Errorf("marshal: tree has no root node: %w", ErrValue)
	}
	be := binary.BigEndian
	strs := bytes.Clone(t.strings)
	// Name offsets for new names are resolved against strs as it grows;
	// the map avoids quadratic searches for repeated new names.
	added := map[string]uint32{}
	nameOff := func(p *Property) (uint32, error) {
		if p.hasNameoff && int(p.nameoff) < len(strs) && hasStringAt(strs, p.nameoff, p.Name) {
			return p.nameoff, nil
		}
		if off, ok := added[p.Name]; ok {
			return off, nil
		}
		off := findString(strs, p.Name)
		if off < 0 {
			off = len(strs)
			strs = append(append(strs, p.Name...), 0)
		}
		if off > math.MaxUint32 {
			return 0, fmt.Errorf("marshal: strings block too large: %w", ErrTooLarge)
		}
		added[p.Name] = uint32(off)
		return uint32(off), nil
	}

	var st []byte
	nops := func(k int) {
		for range k {
			st = be.AppendUint32(st, tokenNop)
		}
	}
	var emit func(n *Node, depth int) error
	emit = func(n *Node, depth int) error {
		if depth >= MaxDepth {
			return fmt.Errorf("marshal: %s nested deeper than %d: %w", n.Path(), MaxDepth, ErrValue)
		}
		nops(n.nopsBefore)
		st = be.AppendUint32(st, tokenBeginNode)
		st = append(append(st, n.name...), 0)
		st = padWith(st, n.namePad)
		for _, p := range n.props {
			off, err := nameOff(p)
			if err != nil {
				return err
			}
			if uint64(len(p.Value)) > math.MaxUint32 {
				return fmt.Errorf("marshal: %s:%s value too large: %w", n.Path(), p.Name, ErrTooLarge)
			}
			nops(p.nopsBefore)
			st = be.AppendUint32(st, tokenProp)
			st = be.AppendUint32(st, uint32(len(p.Value)))
			st = be.AppendUint32(st, off)
			st = padWith(append(st, p.Value...), p.pad)
		}
		for _, c := range n.children {
			if err := emit(c, depth+1); err != nil {
				return err
			}
		}
		nops(n.nopsBeforeEnd)
		st = be.AppendUint32(st, tokenEndNode)
		return nil
	}
	if err := emit(t.root, 0); err != nil {
		return nil, err
	}
	nops(t.nopsBeforeEnd)
	st = be.AppendUint32(st, tokenEnd)
	st = append(st, t.layout.structTrailer...)

	var rsv []byte
	for _, r := range t.Reservations {
		rsv = be.AppendUint64(rsv, r.Start)
		rsv = be.AppendUint64(rsv, r.Size)
	}
	rsv = be.AppendUint64(rsv, t.layout.rsvTermAddr)
	rsv = be.AppendUint64(rsv, 0)

	lay := t.layout
	if !lay.valid {
		lay = layout{}
	}
	// The reservation map must start 8-byte aligned; the header is 40
	// bytes, so a preserved gap keeps it aligned only if its length is a
	// multiple of 8.
	if len(lay.gapHdr)%8 != 0 {
		lay.gapHdr = nil
	}
	// The structure block must start 4-byte aligned; the reservation map
	// is a multiple of 16 bytes long.
	if len(lay.gapRsv)%4 != 0 {
		lay.gapRsv = nil
	}
	rsvOff := headerSize + len(lay.gapHdr)
	stOff := rsvOff + len(rsv) + len(lay.gapRsv)
	strOff := stOff + len(st) + len(lay.gapStruct)
	total := strOff + len(strs) + len(lay.tail)
	if total > math.MaxUint32 {
		return nil, fmt.Errorf("marshal: %d bytes: %w", total, ErrTooLarge)
	}
	out := make([]byte, 0, total)
	out = be.AppendUint32(out, Magic)
	out = be.AppendUint32(out, uint32(total))
	out = be.AppendUint32(out, uint32(stOff))
	out = be.AppendUint32(out, uint32(strOff))
	out = be.AppendUint32(out, uint32(rsvOff))
	out = be.AppendUint32(out, Version)
	out = be.AppendUint32(out, LastCompVersion)
	out = be.AppendUint32(out, t.BootCPUIDPhys)
	out = be.AppendUint32(out, uint32(len(strs)))
	out = be.AppendUint32(out, uint32(len(st)))
	out = append(out, lay.gapHdr...)
	out = append(out, rsv...)
	out = append(out, lay.gapRsv...)
	out = append(out, st...)
	out = append(out, lay.gapStruct...)
	out = append(out, strs...)
	out = append(out, lay.tail...)
	return out, nil
}

// padWith pads b to a multiple of 4 with the recorded padding bytes when
// they have the right length, zeros otherwise.
func padWith(b, pad []byte) []byte {
	if n := align4(len(b)) - len(b); n > 0 && len(pad) == n {
		return append(b, pad...)
	}
	return pad4(b)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// hasStringAt reports whether strs holds name NUL-terminated at off.
func hasStringAt(strs []byte, off uint32, name string) bool {
	end := int(off) + len(name)
	return end < len(strs) && string(strs[off:end]) == name && strs[end] == 0
}

// findString returns the offset of name as a NUL-terminated string
// anywhere in strs, including as the tail of a longer string, or -1.
func findString(strs []byte, name string) int {
	needle := append([]byte(name), 0)
	return bytes.Index(strs, needle)
}
