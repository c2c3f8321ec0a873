package fdt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Range is a physical address range [Start, Start+Size).
type Range struct {
	Start uint64
	Size  uint64
}

// End returns Start+Size; ok is false when that overflows 64 bits.
func (r Range) End() (end uint64, ok bool) {
	end = r.Start + r.Size
	return end, end >= r.Start
}

func (r Range) String() string { return fmt.Sprintf("[%#x, +%#x)", r.Start, r.Size) }

// Tree is a parsed (or new) device tree.
type Tree struct {
	// Header is the header of the parsed blob; Marshal does not read it.
	Header Header
	// BootCPUIDPhys is written to the header's boot_cpuid_phys field.
	BootCPUIDPhys uint32
	// Reservations is the memory reservation block (/memreserve/ entries),
	// in order, without the terminating entry.
	Reservations []Range

	root          *Node
	strings       []byte // strings block, verbatim from the blob plus appended names
	nopsBeforeEnd int
	layout        layout
}

// New returns a tree with an empty root node.
func New() *Tree {
	return &Tree{root: &Node{}}
}

// Node is one node of the tree.
type Node struct {
	name          string
	parent        *Node
	props         []*Property
	children      []*Node
	namePad       []byte // nonzero padding after the name in the blob
	nopsBefore    int    // FDT_NOP tokens just before this node's FDT_BEGIN_NODE
	nopsBeforeEnd int    // FDT_NOP tokens just before its FDT_END_NODE
}

// Property is one property. Value is the raw big-endian value; callers may
// replace it but should use the Node setters, which validate names.
type Property struct {
	Name  string
	Value []byte

	nameoff    uint32 // offset of Name in the strings block, if hasNameoff
	hasNameoff bool
	pad        []byte // nonzero padding after Value in the blob
	nopsBefore int
}

// Root returns the root node.
func (t *Tree) Root() *Node { return t.root }

// Lookup returns the node at an absolute path such as "/chosen" or
// "/memory@40000000". A path component without a unit address ("memory")
// also matches a node with one ("memory@40000000"), the first such in tree
// order, as libfdt does.
func (t *Tree) Lookup(path string) (*Node, bool) {
	comps, err := splitPath(path)
	if err != nil {
		return nil, false
	}
	n := t.root
	for _, c := range comps {
		if n = n.Child(c); n == nil {
			return nil, false
		}
	}
	return n, true
}

// CreateNode returns the node at path, creating it and any missing
// ancestors.
func (t *Tree) CreateNode(path string) (*Node, error) {
	comps, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	n := t.root
	for _, c := range comps {
		next := n.Child(c)
		if next == nil {
			if next, err = n.AddChild(c); err != nil {
				return nil, err
			}
		}
		n = next
	}
	return n, nil
}

// DeleteNode removes the node at path and its subtree.
func (t *Tree) DeleteNode(path string) error {
	n, ok := t.Lookup(path)
	if !ok {
		return fmt.Errorf("delete node %q: %w", path, ErrNotFound)
	}
	if n.parent == nil {
		return fmt.Errorf("delete node %q: cannot delete the root: %w", path, ErrInvalidName)
	}
	p := n.parent
	p.children = slices.DeleteFunc(p.children, func(c *Node) bool { return c == n })
	n.parent = nil
	return nil
}

func splitPath(path string) ([]string, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q is not absolute: %w", path, ErrInvalidName)
	}
	var comps []string
	for c := range strings.SplitSeq(path[1:], "/") {
		if c == "" {
			continue
		}
		comps = append(comps, c)
	}
	return comps, nil
}

// AddReservation appends a memory reservation entry.
func (t *Tree) AddReservation(r Range) error {
	if r.Size == 0 {
		return fmt.Errorf("reservation at %#x: size 0 would terminate the block: %w", r.Start, ErrValue)
	}
	if _, ok := r.End(); !ok {
		return fmt.Errorf("reservation %v wraps around: %w", r, ErrValue)
	}
	t.Reservations = append(t.Reservations, r)
	return nil
}

// RemoveReservation deletes the first reservation entry exactly equal to r
// and reports whether there was one.
func (t *Tree) RemoveReservation(r Range) bool {
	i := slices.Index(t.Reservations, r)
	if i < 0 {
		return false
	}
	t.Reservations = slices.Delete(t.Reservations, i, i+1)
	return true
}

// Pack drops all padding between the blocks and the free space at the end,
// as libfdt's fdt_pack does, so Marshal writes the smallest blob.
func (t *Tree) Pack() {
	t.layout = layout{valid: true, rsvTermAddr: t.layout.rsvTermAddr}
}

// Name returns the node's name including any unit address ("" for the
// root).
func (n *Node) Name() string { return n.name }

// Parent returns the parent node, nil for the root.
func (n *Node) Parent() *Node { return n.parent }

// Path returns the node's absolute path.
func (n *Node) Path() string {
	if n.parent == nil {
		return "/"
	}
	var parts []string
	for m := n; m.parent != nil; m = m.parent {
		parts = append(parts, m.name)
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

// Children returns the subnodes in order. The slice is a copy.
func (n *Node) Children() []*Node { return slices.Clone(n.children) }

// Child returns the subnode with the given name, or nil. A name without a
// unit address also matches "name@unit".
func (n *Node) Child(name string) *Node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	if !strings.Contains(name, "@") {
		for _, c := range n.children {
			if base, _, ok := strings.Cut(c.name, "@"); ok && base == name {
				return c
			}
		}
	}
	return nil
}

// AddChild appends a new empty subnode. The name must be unique among the
// siblings, non-empty, without '/' or NUL.
func (n *Node) AddChild(name string) (*Node, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("node name %q: %w", name, ErrInvalidName)
	}
	for _, c := range n.children {
		if c.name == name {
			return nil, fmt.Errorf("node %q already has a child %q: %w", n.Path(), name, ErrInvalidName)
		}
	}
	if n.depth()+1 >= MaxDepth {
		return nil, fmt.Errorf("node %q: nesting deeper than %d: %w", name, MaxDepth, ErrInvalidName)
	}
	c := &Node{name: name, parent: n}
	n.children = append(n.children, c)
	return c, nil
}

func (n *Node) depth() int {
	d := 0
	for m := n; m.parent != nil; m = m.parent {
		d++
	}
	return d
}

// RemoveChild deletes the subnode with exactly this name and reports
// whether it existed.
func (n *Node) RemoveChild(name string) bool {
	i := slices.IndexFunc(n.children, func(c *Node) bool { return c.name == name })
	if i < 0 {
		return false
	}
	n.children[i].parent = nil
	n.children = slices.Delete(n.children, i, i+1)
	return true
}

// Properties returns the properties in order. The slice is a copy; the
// *Property values are shared with the tree.
func (n *Node) Properties() []*Property { return slices.Clone(n.props) }

// Property returns the raw value of a property.
func (n *Node) Property(name string) ([]byte, bool) {
	for _, p := range n.props {
		if p.Name == name {
			return p.Value, true
		}
	}
	return nil, false
}

// HasProperty reports whether the node has the property.
func (n *Node) HasProperty(name string) bool {
	_, ok := n.Property(name)
	return ok
}

// SetProperty sets a property's raw value, replacing an existing value in
// place (keeping its position) or appending a new property.
func (n *Node) SetProperty(name string, value []byte) error {
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("property name %q: %w", name, ErrInvalidName)
	}
	if uint64(len(value)) > 0xffffffff {
		return fmt.Errorf("property %q: %d bytes: %w", name, len(value), ErrValue)
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	for _, p := range n.props {
		if p.Name == name {
			p.Value = v
			p.pad = nil
			return nil
		}
	}
	n.props = append(n.props, &Property{Name: name, Value: v})
	return nil
}

// DeleteProperty removes a property and reports whether it existed.
func (n *Node) DeleteProperty(name string) bool {
	i := slices.IndexFunc(n.props, func(p *Property) bool { return p.Name == name })
	if i < 0 {
		return false
	}
	n.props = slices.Delete(n.props, i, i+1)
	return true
}

func (n *Node) need(name string) ([]byte, error) {
	v, ok := n.Property(name)
	if !ok {
		return nil, fmt.Errorf("%s:%s: %w", n.Path(), name, ErrNotFound)
	}
	return v, nil
}

// U32 returns a property holding one 32-bit cell.
func (n *Node) U32(name string) (uint32, error) {
	v, err := n.need(name)
	if err != nil {
		return 0, err
	}
	if len(v) != 4 {
		return 0, fmt.Errorf("%s:%s is %d bytes, want 4: %w", n.Path(), name, len(v), ErrValue)
	}
	return binary.BigEndian.Uint32(v), nil
}

// U64 returns a property holding one 64-bit value (two cells).
func (n *Node) U64(name string) (uint64, error) {
	v, err := n.need(name)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%s:%s is %d bytes, want 8: %w", n.Path(), name, len(v), ErrValue)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Number returns a property of one or two cells as a number, the way the
// kernel's of_read_number reads linux,initrd-start.
func (n *Node) Number(name string) (uint64, error) {
	v, err := n.need(name)
	if err != nil {
		return 0, err
	}
	switch len(v) {
	case 4:
		return uint64(binary.BigEndian.Uint32(v)), nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("%s:%s is %d bytes, want 4 or 8: %w", n.Path(), name, len(v), ErrValue)
}

// String returns a property holding one NUL-terminated string.
func (n *Node) String(name string) (string, error) {
	v, err := n.need(name)
	if err != nil {
		return "", err
	}
	if len(v) == 0 || v[len(v)-1] != 0 || bytes.IndexByte(v, 0) != len(v)-1 {
		return "", fmt.Errorf("%s:%s is not one NUL-terminated string: %w", n.Path(), name, ErrValue)
	}
	return string(v[:len(v)-1]), nil
}

// Strings returns a string-list property ("a\0b\0").
func (n *Node) Strings(name string) ([]string, error) {
	v, err := n.need(name)
	if err != nil {
		return nil, err
	}
	if len(v) == 0 || v[len(v)-1] != 0 {
		return nil, fmt.Errorf("%s:%s is not a NUL-terminated string list: %w", n.Path(), name, ErrValue)
	}
	return strings.Split(string(v[:len(v)-1]), "\x00"), nil
}

// Cells returns a property as 32-bit cells.
func (n *Node) Cells(name string) ([]uint32, error) {
	v, err := n.need(name)
	if err != nil {
		return nil, err
	}
	if len(v)%4 != 0 {
		return nil, fmt.Errorf("%s:%s is %d bytes, not whole cells: %w", n.Path(), name, len(v), ErrValue)
	}
	c := make([]uint32, len(v)/4)
	for i := range c {
		c[i] = binary.BigEndian.Uint32(v[4*i:])
	}
	return c, nil
}

// SetU32 sets a one-cell property.
func (n *Node) SetU32(name string, v uint32) error {
	return n.SetProperty(name, binary.BigEndian.AppendUint32(nil, v))
}

// SetU64 sets a two-cell property.
func (n *Node) SetU64(name string, v uint64) error {
	return n.SetProperty(name, binary.BigEndian.AppendUint64(nil, v))
}

// SetString sets a string property (NUL added). The string must not
// contain NUL.
func (n *Node) SetString(name, s string) error {
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s:%s: string contains NUL: %w", n.Path(), name, ErrValue)
	}
	return n.SetProperty(name, append([]byte(s), 0))
}

// SetStrings sets a string-list property.
func (n *Node) SetStrings(name string, ss ...string) error {
	var v []byte
	for _, s := range ss {
		if strings.ContainsRune(s, 0) {
			return fmt.Errorf("%s:%s: string contains NUL: %w", n.Path(), name, ErrValue)
		}
		v = append(append(v, s...), 0)
	}
	return n.SetProperty(name, v)
}

// SetCells sets a property of 32-bit cells.
func (n *Node) SetCells(name string, cells ...uint32) error {
	v := make([]byte, 0, 4*len(cells))
	for _, c := range cells {
		v = binary.BigEndian.AppendUint32(v, c)
	}
	return n.SetProperty(name, v)
}

// SetEmpty sets a boolean (zero-length) property.
func (n *Node) SetEmpty(name string) error { return n.SetProperty(name, nil) }

// Clone returns a deep copy of the tree, layout and all.
func (t *Tree) Clone() *Tree {
	c := *t
	c.Reservations = slices.Clone(t.Reservations)
	c.strings = bytes.Clone(t.strings)
	c.layout.gapHdr = bytes.Clone(t.layout.gapHdr)
	c.layout.gapRsv = bytes.Clone(t.layout.gapRsv)
	c.layout.gapStruct = bytes.Clone(t.layout.gapStruct)
	c.layout.tail = bytes.Clone(t.layout.tail)
	c.layout.structTrailer = bytes.Clone(t.layout.structTrailer)
	if t.root != nil {
		c.root = t.root.clone(nil)
	}
	return &c
}

func (n *Node) clone(parent *Node) *Node {
	c := *n
	c.parent = parent
	c.namePad = bytes.Clone(n.namePad)
	c.props = make([]*Property, len(n.props))
	for i, p := range n.props {
		q := *p
		q.Value = bytes.Clone(p.Value)
		q.pad = bytes.Clone(p.pad)
		c.props[i] = &q
	}
	c.children = make([]*Node, len(n.children))
	for i, ch := range n.children {
		c.children[i] = ch.clone(&c)
	}
	return &c
}
