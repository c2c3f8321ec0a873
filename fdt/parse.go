package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Format constants from the Devicetree Specification, chapter 5.
const (
	Magic = 0xd00dfeed

	tokenBeginNode = 0x1
	tokenEndNode   = 0x2
	tokenProp      = 0x3
	tokenNop       = 0x4
	tokenEnd       = 0x9

	headerSize    = 40 // version 17 header, ten big-endian u32
	headerSizeV16 = 36 // version 16 lacks size_dt_struct
	rsvEntrySize  = 16

	// Version is the format version Marshal writes; LastCompVersion is the
	// oldest version a reader must understand to read it.
	Version         = 17
	LastCompVersion = 16

	// MaxDepth bounds node nesting. Real trees are under ten levels deep;
	// the bound keeps recursion in callers safe on hostile input.
	MaxDepth = 64

	// MaxPropertyName bounds a property name read from a blob. The
	// Devicetree Specification (2.2.4) allows 1 to 31 characters; Linux
	// bindings exceed that now and then (vendor prefixes), so the parser
	// accepts eight times the specification's limit and refuses longer
	// ones. With names shared per strings-block offset, a blob's names
	// cost at most its strings block.
	MaxPropertyName = 255
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrMalformed is matched by every *ParseError.
	ErrMalformed = errors.New("fdt: malformed device tree")
	// ErrNotFound: a node or property does not exist.
	ErrNotFound = errors.New("fdt: not found")
	// ErrInvalidName: a node or property name the format cannot carry.
	ErrInvalidName = errors.New("fdt: invalid name")
	// ErrValue: a property value has the wrong length or shape for the
	// requested type, or a number does not fit the cells it must go into.
	ErrValue = errors.New("fdt: bad property value")
	// ErrNoMemory: the tree has no usable /memory node.
	ErrNoMemory = errors.New("fdt: no memory nodes")
	// ErrTooLarge: a serialized tree exceeds a size limit.
	ErrTooLarge = errors.New("fdt: device tree too large")
)

// ParseError describes why a blob was rejected and where.
type ParseError struct {
	Offset int    // byte offset into the blob
	Msg    string // what is wrong there
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("fdt: malformed device tree at offset %#x: %s", e.Offset, e.Msg)
}

// Is reports ErrMalformed for every ParseError.
func (e *ParseError) Is(target error) bool { return target == ErrMalformed }

func perr(off int, format string, args ...any) error {
	return &ParseError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Header is the decoded blob header, kept for inspection.
type Header struct {
	Magic           uint32
	TotalSize       uint32
	OffDtStruct     uint32
	OffDtStrings    uint32
	OffMemRsvmap    uint32
	Version         uint32
	LastCompVersion uint32
	BootCPUIDPhys   uint32
	SizeDtStrings   uint32
	SizeDtStruct    uint32 // 0 in a version-16 header
}

// layout remembers the byte layout of a parsed blob so that an unmodified
// tree serializes to the same bytes.
type layout struct {
	valid         bool   // blocks were in canonical order
	gapHdr        []byte // between header and reservation map
	gapRsv        []byte // between reservation terminator and structure block
	gapStruct     []byte // between structure block and strings block
	tail          []byte // after the strings block up to totalsize
	structTrailer []byte // inside size_dt_struct, after FDT_END
	rsvTermAddr   uint64 // address field of the terminating (size 0) entry
}

// Parse decodes a flattened device tree blob. The returned tree does not
// alias b.
func Parse(b []byte) (*Tree, error) {
	if len(b) < headerSizeV16 {
		return nil, perr(0, "blob is %d bytes, shorter than a header", len(b))
	}
	var h Header
	be := binary.BigEndian
	h.Magic = be.Uint32(b[0:])
	if h.Magic != Magic {
		return nil, perr(0, "magic is %#08x, want %#08x", h.Magic, uint32(Magic))
	}
	h.TotalSize = be.Uint32(b[4:])
	h.OffDtStruct = be.Uint32(b[8:])
	h.OffDtStrings = be.Uint32(b[12:])
	h.OffMemRsvmap = be.Uint32(b[16:])
	h.Version = be.Uint32(b[20:])
	h.LastCompVersion = be.Uint32(b[24:])
	h.BootCPUIDPhys = be.Uint32(b[28:])
	h.SizeDtStrings = be.Uint32(b[32:])
	if h.Version < 16 {
		return nil, perr(20, "version %d is older than 16", h.Version)
	}
	if h.LastCompVersion > Version {
		return nil, perr(24, "last_comp_version %d: readers need version %d support, this reader has %d", h.LastCompVersion, h.LastCompVersion, Version)
	}
	hsize := headerSizeV16
	if h.Version >= 17 {
		hsize = headerSize
		if len(b) < headerSize {
			return nil, perr(0, "blob is %d bytes, shorter than a version %d header", len(b), h.Version)
		}
		h.SizeDtStruct = be.Uint32(b[36:])
	}
	if uint64(h.TotalSize) > uint64(len(b)) {
		return nil, perr(4, "totalsize %#x exceeds the %#x bytes given", h.TotalSize, len(b))
	}
	if int(h.TotalSize) < hsize {
		return nil, perr(4, "totalsize %#x is smaller than the header", h.TotalSize)
	}
	total := int(h.TotalSize)
	b = b[:total]

	// Memory reservation block.
	rsvOff := int(h.OffMemRsvmap)
	if uint64(h.OffMemRsvmap) > uint64(total) || rsvOff < hsize {
		return nil, perr(16, "off_mem_rsvmap %#x outside [%#x, %#x]", h.OffMemRsvmap, hsize, total)
	}
	if rsvOff%8 != 0 {
		return nil, perr(16, "off_mem_rsvmap %#x is not 8-byte aligned", h.OffMemRsvmap)
	}
	t := &Tree{Header: h, BootCPUIDPhys: h.BootCPUIDPhys}
	var rsvEnd int
	for off := rsvOff; ; off += rsvEntrySize {
		if off+rsvEntrySize > total {
			return nil, perr(off, "memory reservation block runs past totalsize without a terminating entry")
		}
		addr, size := be.Uint64(b[off:]), be.Uint64(b[off+8:])
		if size == 0 {
			t.layout.rsvTermAddr = addr
			rsvEnd = off + rsvEntrySize
			break
		}
		t.Reservations = append(t.Reservations, Range{Start: addr, Size: size})
	}

	// Strings block.
	strOff := int(h.OffDtStrings)
	if uint64(h.OffDtStrings)+uint64(h.SizeDtStrings) > uint64(total) || strOff < hsize {
		return nil, perr(12, "strings block [%#x, +%#x) outside [%#x, %#x)", h.OffDtStrings, h.SizeDtStrings, hsize, total)
	}
	strs := b[strOff : strOff+int(h.SizeDtStrings)]

	// Structure block.
	stOff := int(h.OffDtStruct)
	if uint64(h.OffDtStruct) > uint64(total) || stOff < hsize {
		return nil, perr(8, "off_dt_struct %#x outside [%#x, %#x]", h.OffDtStruct, hsize, total)
	}
	if stOff%4 != 0 {
		return nil, perr(8, "off_dt_struct %#x is not 4-byte aligned", h.OffDtStruct)
	}
	stLimit := total
	if h.Version >= 17 {
		if uint64(h.OffDtStruct)+uint64(h.SizeDtStruct) > uint64(total) {
			return nil, perr(36, "structure block [%#x, +%#x) exceeds totalsize %#x", h.OffDtStruct, h.SizeDtStruct, total)
		}
		stLimit = stOff + int(h.SizeDtStruct)
	}
	endTok, err := t.parseStruct(b, stOff, stLimit, strs)
	if err != nil {
		return nil, err
	}
	stEnd := stLimit
	if h.Version < 17 {
		stEnd = endTok
	}
	t.layout.structTrailer = bytes.Clone(b[endTok:stEnd])
	t.strings = bytes.Clone(strs)

	// Blocks must not overlap each other (the header was checked above).
	type blk struct {
		name       string
		start, end int
	}
	bl := []blk{{"memory reservation block", rsvOff, rsvEnd}, {"structure block", stOff, stEnd}, {"strings block", strOff, strOff + len(strs)}}
	for i := range bl {
		for j := i + 1; j < len(bl); j++ {
			a, c := bl[i], bl[j]
			if a.start < c.end && c.start < a.end && a.end > a.start && c.end > c.start {
				return nil, perr(max(a.start, c.start), "%s [%#x, %#x) overlaps %s [%#x, %#x)", a.name, a.start, a.end, c.name, c.start, c.end)
			}
		}
	}
	if rsvEnd <= stOff && stEnd <= strOff {
		t.layout.valid = true
		t.layout.gapHdr = bytes.Clone(b[hsize:rsvOff])
		if hsize == headerSizeV16 {
			// A v16 header is rewritten as v17: the four extra header
			// bytes come out of the gap when there is one.
			if len(t.layout.gapHdr) >= 4 {
				t.layout.gapHdr = t.layout.gapHdr[4:]
			} else {
				t.layout.gapHdr = nil
			}
		}
		t.layout.gapRsv = bytes.Clone(b[rsvEnd:stOff])
		t.layout.gapStruct = bytes.Clone(b[stEnd:strOff])
		t.layout.tail = bytes.Clone(b[strOff+len(strs):])
	}
	return t, nil
}

// parseStruct walks the structure block in b[off:limit] and builds the node
// tree. It returns the offset just past the FDT_END token.
func (t *Tree) parseStruct(b []byte, off, limit int, strs []byte) (int, error) {
	be := binary.BigEndian
	var stack []*Node
	nops := 0
	sawRootEnd := false
	// One string per name offset: a blob whose properties all name one
	// long string costs that string once, not once per property.
	names := map[uint32]string{}
	for {
		if off+4 > limit {
			return 0, perr(off, "structure block ends without FDT_END")
		}
		tokOff := off
		tok := be.Uint32(b[off:])
		off += 4
		switch tok {
		case tokenNop:
			nops++
		case tokenBeginNode:
			if sawRootEnd {
				return 0, perr(tokOff, "second root node")
			}
			if len(stack) >= MaxDepth {
				return 0, perr(tokOff, "nodes nested deeper than %d", MaxDepth)
			}
			nul := bytes.IndexByte(b[off:limit], 0)
			if nul < 0 {
				return 0, perr(off, "node name is not NUL-terminated inside the structure block")
			}
			n := &Node{name: string(b[off : off+nul]), nopsBefore: nops}
			nops = 0
			padStart := off + nul + 1
			off = align4(padStart)
			if off > limit {
				return 0, perr(tokOff, "node name padding runs past the structure block")
			}
			n.namePad = keepPad(b[padStart:off])
			if len(stack) == 0 {
				t.root = n
			} else {
				p := stack[len(stack)-1]
				n.parent = p
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case tokenEndNode:
			if len(stack) == 0 {
				return 0, perr(tokOff, "FDT_END_NODE without a matching FDT_BEGIN_NODE")
			}
			n := stack[len(stack)-1]
			n.nopsBeforeEnd = nops
			nops = 0
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				sawRootEnd = true
			}
		case tokenProp:
			if len(stack) == 0 {
				return 0, perr(tokOff, "property outside any node")
			}
			if off+8 > limit {
				return 0, perr(off, "property header runs past the structure block")
			}
			vlen, nameoff := be.Uint32(b[off:]), be.Uint32(b[off+4:])
			off += 8
			if uint64(vlen) > uint64(limit-off) {
				return 0, perr(tokOff, "property value length %#x runs past the structure block (%#x bytes left)", vlen, limit-off)
			}
			if uint64(nameoff) >= uint64(len(strs)) {
				return 0, perr(tokOff+8, "property name offset %#x outside the %#x-byte strings block", nameoff, len(strs))
			}
			name, ok := names[nameoff]
			if !ok {
				rest := strs[nameoff:]
				nul := bytes.IndexByte(rest[:min(len(rest), MaxPropertyName+1)], 0)
				switch {
				case nul < 0 && len(rest) > MaxPropertyName:
					return 0, perr(tokOff+8, "property name at strings offset %#x is longer than %d bytes", nameoff, MaxPropertyName)
				case nul < 0:
					return 0, perr(tokOff+8, "property name at strings offset %#x is not NUL-terminated", nameoff)
				}
				name = string(rest[:nul])
				names[nameoff] = name
			}
			n := stack[len(stack)-1]
			if len(n.children) > 0 {
				return 0, perr(tokOff, "property %q of node %q follows a subnode", name, n.name)
			}
			n.props = append(n.props, &Property{
				Name:       name,
				Value:      bytes.Clone(b[off : off+int(vlen)]),
				nameoff:    nameoff,
				hasNameoff: true,
				nopsBefore: nops,
			})
			nops = 0
			padStart := off + int(vlen)
			off = align4(padStart)
			if off > limit {
				return 0, perr(tokOff, "property value padding runs past the structure block")
			}
			n.props[len(n.props)-1].pad = keepPad(b[padStart:off])
		case tokenEnd:
			if len(stack) != 0 {
				return 0, perr(tokOff, "FDT_END inside node %q", stack[len(stack)-1].name)
			}
			if t.root == nil {
				return 0, perr(tokOff, "no root node")
			}
			t.nopsBeforeEnd = nops
			return off, nil
		default:
			return 0, perr(tokOff, "unknown token %#x", tok)
		}
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

// keepPad returns a copy of padding bytes that are not all zero (libfdt
// leaves stale bytes there when a property shrinks in place), nil
// otherwise.
func keepPad(p []byte) []byte {
	for _, c := range p {
		if c != 0 {
			return bytes.Clone(p)
		}
	}
	return nil
}
