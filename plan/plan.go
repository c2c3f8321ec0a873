// Package plan turns a loader's inputs — kernel and initrd bytes, command
// line, the machine's memory map, the running kernel's IMA measurement list
// and the user's options — into a Plan: every segment with its address,
// size and bytes, the entry point and the hand-over layout.
//
// Invariants:
//   - Pure: a Plan is a function of its Inputs only. The same inputs give a
//     byte-for-byte identical plan on any machine, as any user; nothing here
//     reads the host, the clock or a random source (the RNG seed is an input).
//   - A Plan that Build returns has passed segment.Validate: page-aligned,
//     non-overlapping, inside RAM, at most 16 segments, bufsz <= memsz.
//   - The IMA hand-over buffer is validated as strictly as the restoring
//     kernel parses it; a list the next kernel would drop or truncate is
//     refused, never handed over.
//   - x86: the IMA segment lies below the kernel's load address, which lies
//     at or below 512 MiB. The new kernel's decompressor never picks a
//     physical address below min(load address, 512 MiB) for KASLR and
//     decompresses above the load address, so no KASLR choice can overwrite
//     the list before the new kernel has reserved it.
package plan

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/segment"
	"github.com/gokexec/gokexec/vmlinux"
)

// Architectures.
const (
	ArchAMD64 = "amd64"
	ArchARM64 = "arm64"
)

// Syscalls a plan can be executed with.
const (
	SyscallKexecLoad     = "kexec_load"
	SyscallKexecFileLoad = "kexec_file_load"
)

// Inputs is everything a plan depends on.
type Inputs struct {
	Arch       string
	PageSize   uint64 // 0: 4096
	KernelPath string
	Kernel     []byte
	InitrdPath string
	Initrd     []byte // nil: no initrd
	Cmdline    string
	Memory     segment.Map

	// IMAList is the running kernel's binary_runtime_measurements; nil when
	// IMA is inactive or the hand-over is not wanted.
	IMAList  []byte
	IMAOrder binary.ByteOrder // nil: little endian
	// IMAEntries, when set, are the hand-over list already parsed (the
	// loader's finalize has them); IMAList is then not read.
	IMAEntries []ima.Entry
	// IMAKexecList, when set, is the hand-over list already checked and
	// encoded (the loader's finalize has it from its replay); IMAList and
	// IMAEntries are then not read.
	IMAKexecList *ima.KexecList
	// IMAExtra is the headroom reserved after the list, for entries the
	// system adds between load and exec.
	IMAExtra uint64
	// IMASegment, when set, is the IMA segment's size as the loader's
	// hand-over rule computed it (the list and the entries to come, with
	// headroom, page rounded); a buffer that does not fit it is an error.
	// 0: header + list + IMAExtra, page rounded (IMASegmentSize).
	IMASegment uint64

	MemMin, MemMax uint64 // 0: no bound

	RNGSeed  []byte // SETUP_RNG_SEED payload / rng-seed; empty: none
	ACPIRSDP uint64 // x86: 0 lets the kernel scan for it (or takes the EFI systab's)

	// EFI is the host's firmware description (x86); nil on a host that
	// publishes none. NoEFI (--noefi) keeps the EFI state from the next
	// kernel while the rest of the plan stays the same.
	EFI   *efi.Host
	NoEFI bool

	// KernelSHA256 and InitrdSHA256, when set, are the inputs' digests as
	// already computed (a re-plan at finalize); "" computes them.
	KernelSHA256, InitrdSHA256 string

	// DTB is the device tree to hand over: arm64's /chosen-edited tree,
	// or on x86 a SETUP_DTB setup_data node holding it as given.
	DTB []byte
}

// Segment is one segment of a plan.
type Segment struct {
	Name   string `json:"name"`
	Mem    uint64 `json:"mem"`
	Memsz  uint64 `json:"memsz"`
	Bufsz  uint64 `json:"bufsz"`
	SHA256 string `json:"sha256,omitempty"` // see Plan.FillDigests
	Buf    []byte `json:"-"`
}

// IMA describes the hand-over buffer.
type IMA struct {
	Segment   string `json:"segment"`
	Addr      uint64 `json:"addr"`
	Size      uint64 `json:"size"` // segment size: header + list + headroom, page rounded
	ListBytes uint64 `json:"list_bytes"`
	Entries   int    `json:"entries"`
	Headroom  uint64 `json:"headroom"`
	// ListUnread: a dry run could not read the list (securityfs not
	// mounted, and a dry run never mounts): the buffer was sized for an
	// empty list, so Size and ListBytes are estimates, short of the real
	// list's bytes.
	ListUnread bool `json:"list_unread,omitempty"`
}

// SetupData is one x86 setup_data node of a plan.
type SetupData struct {
	Type uint32 `json:"type"`
	Addr uint64 `json:"addr"`
	Len  uint32 `json:"len"`
}

// BootParams describes the x86 zero page.
type BootParams struct {
	Addr        uint64      `json:"addr"`
	CmdlineAddr uint64      `json:"cmdline_addr"`
	SetupData   []SetupData `json:"setup_data"`
	E820Entries int         `json:"e820_entries"`
	ACPIRSDP    uint64      `json:"acpi_rsdp"`
	// EFI is the EFI state handed over; nil: the next kernel boots as non-EFI.
	EFI *EFI `json:"efi"`
	// Screen is the framebuffer handed over in screen_info, if any.
	Screen *efi.Screen `json:"screen_info,omitempty"`
}

// Input describes one file the plan loads.
type Input struct {
	Path   string `json:"path"`
	Size   uint64 `json:"size"`
	SHA256 string `json:"sha256"`
}

// Plan is a complete, validated load.
type Plan struct {
	Arch       string      `json:"arch"`
	PageSize   uint64      `json:"page_size"`
	Entry      uint64      `json:"entry"`
	Syscall    string      `json:"syscall"`
	Cmdline    string      `json:"cmdline"`
	Kernel     Input       `json:"kernel"`
	KernelAddr uint64      `json:"kernel_addr"`
	Initrd     *Input      `json:"initrd,omitempty"`
	Segments   []Segment   `json:"segments"`
	IMA        *IMA        `json:"ima,omitempty"`
	BootParams *BootParams `json:"boot_params,omitempty"`
	DTB        *DTBInfo    `json:"dtb,omitempty"`
	// DTBInput is the device tree file the plan started from, as read
	// (before the loader's edits): measured and appraised like the kernel.
	DTBInput  *Input      `json:"dtb_input,omitempty"`
	Decision  *Decision   `json:"decision,omitempty"`
	Appraisal []Appraisal `json:"appraisal,omitempty"`
	// Warnings are what the user must be told about this plan (an EFI
	// hand-over that cannot happen, and why).
	Warnings []string `json:"warnings,omitempty"`
	// Crash is set for a crash kernel plan (-p; see crash.go).
	Crash *CrashPlan `json:"crash,omitempty"`
}

// Appraisal is the appraisal outcome of one input, as the loader found it.
type Appraisal struct {
	Path   string `json:"path"`
	Pass   bool   `json:"pass"`
	Method string `json:"method,omitempty"`
	Reason string `json:"reason"`
}

// DTBInfo describes the device tree handed over (arm64).
type DTBInfo struct {
	Addr uint64 `json:"addr"`
	Size uint64 `json:"size"`
}

// Errors; match with errors.Is.
var (
	ErrInput   = errors.New("bad input")
	ErrIMAList = errors.New("IMA measurement list cannot be handed over")
	// ErrFileLoadDTB: on x86 kexec_file_load takes no device tree; at
	// most the kernel passes on the one it booted with, when asked to
	// (KEXEC_FILE_FORCE_DTB).
	ErrFileLoadDTB = errors.New("x86 kexec_file_load cannot pass a device tree")
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Build makes a plan. Errors name the input at fault.
func Build(in *Inputs) (*Plan, error) {
	if in.PageSize == 0 {
		in.PageSize = 4096
	}
	switch in.Arch {
	case ArchAMD64, "":
		return buildX86(in)
	case ArchARM64:
		return buildARM64(in)
	}
	return nil, fmt.Errorf("%w: architecture %q (want amd64 or arm64)", ErrInput, in.Arch)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newSegment describes a segment; its digest is filled in by FillDigests
// when the plan is shown, so a load does not hash tens of MiB it never
// prints.
func newSegment(name string, r segment.Range, buf []byte) Segment {
	return newSegmentDigest(name, r, buf, "")
}

// newSegmentDigest is newSegment for a buffer whose digest is known already
// (the initrd's, from its input record).
func newSegmentDigest(name string, r segment.Range, buf []byte, sha string) Segment {
	return Segment{Name: name, Mem: r.Start, Memsz: r.Size(), Bufsz: uint64(len(buf)), SHA256: sha, Buf: buf}
}

// imaLayout validates the list and wraps it for the hand-over. It returns
// the buffer (header + entries), the entry count and the segment size.
func imaLayout(in *Inputs) ([]byte, int, uint64, error) {
	order := in.IMAOrder
	if order == nil {
		order = binary.LittleEndian
	}
	kl := in.IMAKexecList
	if kl == nil {
		entries := in.IMAEntries
		if entries == nil {
			var err error
			if entries, err = ima.ParseList(in.IMAList, order); err != nil {
				return nil, 0, 0, fmt.Errorf("%w: %w", ErrIMAList, err)
			}
		}
		var err error
		if kl, err = ima.NewKexecList(entries, order); err != nil {
			return nil, 0, 0, fmt.Errorf("%w: %w", ErrIMAList, err)
		}
	}
	buf := kl.Buffer()
	var err error
	size := in.IMASegment
	switch {
	case size == 0:
		if size, err = IMASegmentSize(uint64(len(buf)), in.IMAExtra, 0, in.PageSize); err != nil {
			return nil, 0, 0, err
		}
	case size < uint64(len(buf)) || size%in.PageSize != 0:
		return nil, 0, 0, fmt.Errorf("%w: a hand-over buffer of %d bytes does not fit an IMA segment of %d bytes", ErrIMAList, len(buf), size)
	}
	return buf, kl.Count(), size, nil
}

// IMASegmentSize is the IMA segment for a hand-over buffer of bufLen bytes
// (header included): bufLen plus the headroom extra, rounded up to page;
// when min is set and bufLen fits in it, min.
func IMASegmentSize(bufLen, extra, min, page uint64) (uint64, error) {
	if min != 0 && bufLen <= min {
		return min, nil
	}
	n := bufLen + extra
	if n < bufLen {
		return 0, fmt.Errorf("%w: IMA headroom %d overflows", ErrInput, extra)
	}
	n, ok := segment.AlignUp(n, page)
	if !ok {
		return 0, fmt.Errorf("%w: IMA headroom %d overflows", ErrInput, extra)
	}
	return n, nil
}

// bounds clips [lo, hi) to the user's --mem-min/--mem-max.
func (in *Inputs) bounds(lo, hi uint64) (uint64, uint64) {
	if in.MemMin > lo {
		lo = in.MemMin
	}
	if in.MemMax != 0 && (hi == 0 || in.MemMax < hi) {
		hi = in.MemMax
	}
	return lo, hi
}

func (p *Plan) finish(ram []segment.Range) error {
	segs := make([]segment.Segment, len(p.Segments))
	for i, s := range p.Segments {
		segs[i] = segment.Segment{Name: s.Name, Buf: s.Buf, Mem: s.Mem, Memsz: s.Memsz}
	}
	if err := segment.Validate(segs, ram, p.PageSize); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	return nil
}

// FillDigests computes every segment's SHA-256 that is not known yet. The
// digests are a pure function of the plan; they are left out of a load's
// hot path and computed for --dry-run, --debug and anyone who shows a plan.
func (p *Plan) FillDigests() {
	for i := range p.Segments {
		if p.Segments[i].SHA256 == "" {
			p.Segments[i].SHA256 = digest(p.Segments[i].Buf)
		}
	}
}

// FileLoad describes a kexec_file_load: the kernel places everything
// itself, so the plan has inputs but no segments. The kernel image is still
// checked, so a bad one is refused with a clear error before any syscall.
func FileLoad(in *Inputs) (*Plan, error) {
	switch in.Arch {
	case ArchAMD64, "":
		if vmlinux.IsELF(in.Kernel) {
			return nil, errFileLoadELF(in)
		}
		im, err := bzimage.Parse(in.Kernel)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
		}
		if err := im.CheckCmdline(in.Cmdline); err != nil {
			return nil, fmt.Errorf("command line: %w", err)
		}
		// The syscall has no device tree argument: refused rather than
		// recorded (and measured) as loaded when it is not.
		if len(in.DTB) > 0 {
			return nil, fmt.Errorf("%w: %w: at most the running kernel passes on the tree it booted with (KEXEC_FILE_FORCE_DTB); a given device tree reaches the next kernel only with kexec_load (a SETUP_DTB node)", ErrInput, ErrFileLoadDTB)
		}
	case ArchARM64:
		if err := checkARM64Kernel(in); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: architecture %q (want amd64 or arm64)", ErrInput, in.Arch)
	}
	if in.Initrd != nil && len(in.Initrd) == 0 {
		return nil, fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
	}
	p := &Plan{Arch: in.Arch, PageSize: in.PageSize, Syscall: SyscallKexecFileLoad, Cmdline: in.Cmdline,
		Kernel: Input{Path: in.KernelPath, Size: uint64(len(in.Kernel)), SHA256: in.kernelDigest()}, Segments: []Segment{}}
	if in.Initrd != nil {
		p.Initrd = &Input{Path: in.InitrdPath, Size: uint64(len(in.Initrd)), SHA256: in.initrdDigest()}
	}
	return p, nil
}

func (in *Inputs) kernelDigest() string {
	if in.KernelSHA256 != "" {
		return in.KernelSHA256
	}
	return digest(in.Kernel)
}

func (in *Inputs) initrdDigest() string {
	if in.InitrdSHA256 != "" {
		return in.InitrdSHA256
	}
	return digest(in.Initrd)
}

// Digest is the hex SHA-256 the plan records for its inputs and segments.
func Digest(b []byte) string { return digest(b) }
