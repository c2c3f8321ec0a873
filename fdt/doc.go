// Package fdt reads, edits and writes flattened device trees (DTB, the
// "FDT" format of the Devicetree Specification, versions 16 and 17).
//
// It is pure: no system calls, no file access; input is a byte slice and
// output is a byte slice. Everything a kexec loader needs to hand a device
// tree to the next kernel lives here: parsing with strict bounds checks, a
// mutable node/property tree, the memory-reservation block, cell-size aware
// encoding of "reg"-style address ranges, the /memory nodes, and a
// serializer.
//
// # Invariants
//
//   - Parse never panics and never allocates more than a small multiple of
//     its input: every offset and length in the blob is checked against the
//     blob before it is used. Errors are *ParseError values that name the
//     byte offset and the problem, and they match ErrMalformed with
//     errors.Is. Property names are at most MaxPropertyName bytes (the
//     specification's 31 with a documented margin) and are shared per
//     strings-block offset, so names cost at most the strings block.
//   - Marshal(Parse(b)) == b, byte for byte, for every unmodified blob that
//     dtc (any -p/-S padding) or libfdt (QEMU, U-Boot, the kernel) produces.
//     The parser records what it needs for that: the header's
//     boot_cpuid_phys, the order of properties and nodes, nonzero padding
//     after node names and property values (libfdt leaves stale bytes there
//     when it shrinks a property in place; QEMU's virt tree has some), every FDT_NOP
//     token and where it stood (the kernel NOPs out rng-seed in
//     /sys/firmware/fdt), the strings block verbatim (including dtc's and
//     libfdt's suffix sharing and strings no property uses any more), each
//     property's name offset, the padding between header, memory
//     reservation block, structure block and strings block, the free space
//     at the end (libfdt's totalsize may exceed the data, QEMU's is 1 MiB),
//     bytes after FDT_END inside size_dt_struct, and the address of the
//     reservation block's terminating entry.
//   - Not preserved (the output is still a valid, equivalent tree): the
//     padding after a property value that was set again (written as
//     zeros); a version-16 header (always written as version 17,
//     last_comp_version 16, with size_dt_struct filled in); blocks in an
//     order other than reservation map, structure, strings (rewritten in
//     that order without gaps).
//   - Edits keep the output valid: a new property name is looked up in the
//     strings block (also as the suffix of a longer string, as libfdt does)
//     and appended only if missing; strings of deleted properties stay, as
//     with libfdt. Pack removes all padding and free space.
//   - Property values returned by Node.Property alias the tree; the setters
//     copy what they are given. A tree is not safe for concurrent mutation.
//   - Cell sizes: Node.AddressCells/SizeCells are the values a node declares
//     for its children (defaults 2 and 1, Devicetree Specification 2.3.5);
//     Node.RegCells and Node.Reg use the parent's, as the format requires.
//     EncodeRanges/DecodeRanges work for any 1- or 2-cell layout (decode
//     also accepts 3 or 4 cells whose high cells are zero).
//
// # Why not u-root's pkg/dt
//
// u-root's device-tree package rebuilds the strings block and drops NOP
// tokens, so blobs do not round-trip byte for byte (which the differential
// tests against dtc and the kernel rely on), and it allocates property
// buffers from lengths it has not checked against the input. This package
// is written by hand for those two reasons.
package fdt
