package arm64

import (
	"encoding/binary"
	"fmt"

	"github.com/gokexec/gokexec/fdt"
)

// StaleProperties are the /chosen properties that describe memory of the
// running kernel's hand-over and must not reach the next kernel. Each is a
// list of <address size> pairs in the root's cell sizes, usually with a
// matching /memreserve/ entry.
// The KHO (kexec handover, 6.16+) properties are on the list because the
// kernel's own loader deletes them too: they point at the previous
// kernel's handover memory.
var StaleProperties = []string{
	"linux,ima-kexec-buffer",
	"linux,tpm-kexec-buffer",
	"linux,elfcorehdr",
	"linux,usable-memory-range",
	"linux,kho-fdt",
	"linux,kho-scratch",
}

// ChosenOptions is what PrepareDTB writes into /chosen. Randomness is
// supplied by the caller so that PrepareDTB stays pure and deterministic.
type ChosenOptions struct {
	// Bootargs is the next kernel's command line; always written (an
	// empty string gives an empty bootargs).
	Bootargs string
	// Initrd, if set, is where the initrd is loaded: written as
	// linux,initrd-start / linux,initrd-end (end exclusive) plus a
	// /memreserve/ entry, as the kernel's own loader does. If nil, the
	// properties are removed.
	Initrd *fdt.Range
	// KASLRSeed, if nonzero, is written as the u64 kaslr-seed; any old
	// kaslr-seed is removed first (the running kernel zeroed it anyway).
	KASLRSeed uint64
	// RNGSeed, if not empty, is written as rng-seed (the kernel's own
	// loader uses 128 bytes); any old rng-seed is removed first.
	RNGSeed []byte
	// IMABuffer, if set, is the IMA measurement list segment: written as
	// linux,ima-kexec-buffer = <addr size> in the root's #address-cells /
	// #size-cells plus a /memreserve/ entry.
	IMABuffer *fdt.Range
}

// RNGSeedSize is the rng-seed length the kernel's own loader passes.
const RNGSeedSize = 128

// PrepareDTB turns the running system's device tree (/sys/firmware/fdt,
// parsed) into the next kernel's, in place:
//
//  1. /chosen is created if missing.
//  2. Each property in StaleProperties is removed; every /memreserve/
//     entry exactly equal to a range it named is removed with it.
//  3. An old linux,initrd-start/-end pair is removed, with the
//     /memreserve/ entry of exactly that range (or of it rounded up to
//     4, 16 or 64 KiB pages, as firmware may reserve whole pages).
//  4. bootargs, the initrd, kaslr-seed, rng-seed and
//     linux,ima-kexec-buffer are written from opt.
//
// Other /memreserve/ entries and /reserved-memory are kept. A placer should
// avoid t.ReservedRanges() taken after PrepareDTB (stale entries gone, the
// new initrd and IMA entries being gokexec's own segments).
//
// linux,initrd-start/-end use the root's #address-cells (1 or 2 cells, as
// U-Boot writes them) and 2 cells when the value does not fit one; the
// kernel reads either length.
func PrepareDTB(t *fdt.Tree, opt ChosenOptions) error {
	root := t.Root()
	ac, err := root.AddressCells()
	if err != nil {
		return fmt.Errorf("arm64: root #address-cells: %w", err)
	}
	sc, err := root.SizeCells()
	if err != nil {
		return fmt.Errorf("arm64: root #size-cells: %w", err)
	}
	if ac < 1 || ac > 2 || sc > 2 {
		return fmt.Errorf("arm64: root #address-cells %d / #size-cells %d: %w", ac, sc, fdt.ErrValue)
	}
	ch, err := t.CreateNode("/chosen")
	if err != nil {
		return fmt.Errorf("arm64: /chosen: %w", err)
	}

	for _, name := range StaleProperties {
		v, ok := ch.Property(name)
		if !ok {
			continue
		}
		// A malformed stale property is still removed; only its
		// reservations cannot be found.
		if rs, err := fdt.DecodeRanges(ac, sc, v); err == nil {
			for _, r := range rs {
				t.RemoveReservation(r)
			}
		}
		ch.DeleteProperty(name)
	}

	if ch.HasProperty("linux,initrd-start") || ch.HasProperty("linux,initrd-end") {
		start, err1 := ch.Number("linux,initrd-start")
		end, err2 := ch.Number("linux,initrd-end")
		if err1 == nil && err2 == nil && end > start {
			size := end - start
			if !t.RemoveReservation(fdt.Range{Start: start, Size: size}) {
				for _, page := range []uint64{4 << 10, 16 << 10, 64 << 10} {
					if up := (size + page - 1) &^ (page - 1); up >= size && t.RemoveReservation(fdt.Range{Start: start, Size: up}) {
						break
					}
				}
			}
		}
		ch.DeleteProperty("linux,initrd-start")
		ch.DeleteProperty("linux,initrd-end")
	}

	if err := ch.SetString("bootargs", opt.Bootargs); err != nil {
		return fmt.Errorf("%w: bootargs: %w", ErrChosenOption, err)
	}

	if r := opt.Initrd; r != nil {
		end, ok := r.End()
		if !ok || r.Size == 0 {
			return fmt.Errorf("%w: initrd %v is empty or wraps around", ErrChosenOption, *r)
		}
		if err := ch.SetProperty("linux,initrd-start", number(ac, r.Start)); err != nil {
			return err
		}
		if err := ch.SetProperty("linux,initrd-end", number(ac, end)); err != nil {
			return err
		}
		if err := t.AddReservation(*r); err != nil {
			return err
		}
	}

	ch.DeleteProperty("kaslr-seed")
	if opt.KASLRSeed != 0 {
		if err := ch.SetU64("kaslr-seed", opt.KASLRSeed); err != nil {
			return err
		}
	}
	ch.DeleteProperty("rng-seed")
	if len(opt.RNGSeed) > 0 {
		if err := ch.SetProperty("rng-seed", opt.RNGSeed); err != nil {
			return err
		}
	}

	if r := opt.IMABuffer; r != nil {
		if _, ok := r.End(); !ok || r.Size == 0 {
			return fmt.Errorf("%w: IMA buffer %v is empty or wraps around", ErrChosenOption, *r)
		}
		v, err := fdt.EncodeRanges(ac, sc, []fdt.Range{*r})
		if err != nil {
			return fmt.Errorf("%w: IMA buffer %v in the root's %d/%d cells: %w", ErrChosenOption, *r, ac, sc, err)
		}
		if err := ch.SetProperty("linux,ima-kexec-buffer", v); err != nil {
			return err
		}
		if err := t.AddReservation(*r); err != nil {
			return err
		}
	}
	return nil
}

// number encodes v in cells cells, or in 2 when it does not fit 1.
func number(cells uint32, v uint64) []byte {
	if cells == 1 && v <= 0xffffffff {
		return binary.BigEndian.AppendUint32(nil, uint32(v))
	}
	return binary.BigEndian.AppendUint64(nil, v)
}

// BuildDTB packs the tree (dropping padding and free space) and serializes
// it, refusing a result larger than MaxDTBSize. The error matches both
// ErrDTBTooLarge and fdt.ErrTooLarge.
func BuildDTB(t *fdt.Tree) ([]byte, error) {
	t.Pack()
	b, err := t.Marshal()
	if err != nil {
		return nil, fmt.Errorf("arm64: serialize DTB: %w", err)
	}
	if len(b) > MaxDTBSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d (MAX_FDT_SIZE): %w", ErrDTBTooLarge, len(b), MaxDTBSize, fdt.ErrTooLarge)
	}
	return b, nil
}
