package bzimage

import (
	"encoding/binary"
	"fmt"

	"github.com/gokexec/gokexec/segment"
)

// setup_data types (arch/x86/include/uapi/asm/bootparam.h).
const (
	SetupE820Ext  = 1
	SetupDTB      = 2 // a flattened device tree the kernel unflattens (CONFIG_OF)
	SetupEFI      = 4
	SetupIMA      = 8
	SetupRNGSeed  = 9
	SetupIndirect = 1 << 31
)

// SetupDataHeaderSize is sizeof(struct setup_data): u64 next, u32 type, u32 len.
const SetupDataHeaderSize = 16

// SetupData is one node to chain from boot_params.hdr.setup_data.
type SetupData struct {
	Type uint32
	Data []byte
}

// IMASetupData encodes struct ima_setup_data { u64 addr; u64 size; }.
func IMASetupData(addr, size uint64) SetupData {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint64(b[8:], size)
	return SetupData{Type: SetupIMA, Data: b}
}

// Params is what goes into the zero page besides the image's setup header.
type Params struct {
	E820       segment.Map
	Cmdline    string
	InitrdAddr uint64
	InitrdSize uint64
	ACPIRSDP   uint64 // 0: let the kernel find it (BIOS boot)
	SetupData  []SetupData

	// EFI, when set, is the firmware state for an EFI boot: efi_info, the
	// memory map (placed in the block after the setup_data chain) and a
	// SETUP_EFI node (appended to the chain). BuildParams refuses it for a
	// kernel without XLF_EFI_KEXEC.
	EFI *EFI
	// ScreenInfo, when 64 bytes, is copied into boot_params.screen_info.
	ScreenInfo []byte
}

// EFI is the EFI state of a boot_params block.
type EFI struct {
	LoaderSignature string // 4 bytes: "EL64"
	Systab          uint64
	MemdescSize     uint32
	MemdescVersion  uint32
	Memmap          []byte // the descriptors; its address is chosen by BuildParams
	SecureBoot      uint8
	// The SETUP_EFI payload (struct efi_setup_data): physical addresses
	// of the firmware vendor string, the runtime services table (kept for
	// kernels older than 5.7, which read it), the configuration table array
	// and the SMBIOS entry point.
	FwVendor, Runtime, Tables, SMBIOS uint64
}

// EFISetupDataSize is sizeof(struct efi_setup_data): four u64 fields and
// eight reserved u64.
const EFISetupDataSize = 12 * 8

// EFISetupData encodes struct efi_setup_data.
func EFISetupData(e *EFI) SetupData {
	b := make([]byte, EFISetupDataSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], e.FwVendor)
	le.PutUint64(b[8:], e.Runtime)
	le.PutUint64(b[16:], e.Tables)
	le.PutUint64(b[24:], e.SMBIOS)
	return SetupData{Type: SetupEFI, Data: b}
}

// Placed reports where BuildParams put a block's EFI memory map.
type Placed struct {
	Nodes      []NodeInfo
	MemmapAddr uint64 // 0 when there is no EFI state
}

// NodeInfo says where a setup_data node landed.
type NodeInfo struct {
	Type uint32 `json:"type"`
	Addr uint64 `json:"addr"` // physical address of the node header
	Len  uint32 `json:"len"`  // payload length
}

const e820EntrySize = 20

func align16(n uint64) uint64 { return (n + 15) &^ 15 }

// nodes returns the full setup_data list including an E820_EXT node for
// entries that do not fit in the zero page.
func (p *Params) nodes() ([]SetupData, error) {
	var out []SetupData
	if len(p.E820) > E820Max {
		extra := p.E820[E820Max:]
		if len(extra)*e820EntrySize > 1<<20 {
			return nil, fmt.Errorf("%w: %d e820 entries", segment.ErrBadMap, len(p.E820))
		}
		b := make([]byte, 0, len(extra)*e820EntrySize)
		for _, r := range extra {
			b = appendE820(b, r)
		}
		out = append(out, SetupData{Type: SetupE820Ext, Data: b})
	}
	out = append(out, p.SetupData...)
	if p.EFI != nil {
		out = append(out, EFISetupData(p.EFI))
	}
	return out, nil
}

// memmapSize is the room the EFI memory map takes at the block's end.
func (p *Params) memmapSize() uint64 {
	if p.EFI == nil {
		return 0
	}
	return align16(uint64(len(p.EFI.Memmap)))
}

func appendE820(b []byte, r segment.Region) []byte {
	b = binary.LittleEndian.AppendUint64(b, r.Start)
	b = binary.LittleEndian.AppendUint64(b, r.Size())
	return binary.LittleEndian.AppendUint32(b, uint32(r.Type))
}

// ParamsSize is the size of the parameter block BuildParams produces:
// the zero page, the NUL-terminated command line and the setup_data nodes,
// each 16-byte aligned.
func ParamsSize(p *Params) (uint64, error) {
	nodes, err := p.nodes()
	if err != nil {
		return 0, err
	}
	n := uint64(BootParamsSize) + align16(uint64(len(p.Cmdline))+1)
	for _, d := range nodes {
		n += align16(SetupDataHeaderSize + uint64(len(d.Data)))
	}
	return n + p.memmapSize(), nil
}

// BuildParams lays out, for loading at physical address base, the zero page
// followed by the command line and the setup_data chain. It returns the
// bytes and where each node landed.
func BuildParams(im *Image, base uint64, p *Params) ([]byte, []NodeInfo, error) {
	buf, pl, err := BuildParamsEFI(im, base, p)
	if err != nil {
		return nil, nil, err
	}
	return buf, pl.Nodes, nil
}

// BuildParamsEFI is BuildParams that also reports where the EFI memory map
// went: after the last setup_data node, 16-byte aligned.
func BuildParamsEFI(im *Image, base uint64, p *Params) ([]byte, *Placed, error) {
	if p.EFI != nil {
		if im.Xloadflags&XLFEFIKexec == 0 {
			return nil, nil, fmt.Errorf("%w: EFI state for a kernel without XLF_EFI_KEXEC (xloadflags %#x)", ErrUnsupported, im.Xloadflags)
		}
		if len(p.EFI.LoaderSignature) != 4 {
			return nil, nil, fmt.Errorf("%w: EFI loader signature %q is not 4 bytes", ErrUnsupported, p.EFI.LoaderSignature)
		}
		if uint64(len(p.EFI.Memmap)) > 0xffffffff {
			return nil, nil, fmt.Errorf("%w: EFI memory map of %d bytes", ErrUnsupported, len(p.EFI.Memmap))
		}
	}
	if p.ScreenInfo != nil && len(p.ScreenInfo) != ScreenInfoSize {
		return nil, nil, fmt.Errorf("%w: screen_info of %d bytes, want %d", ErrUnsupported, len(p.ScreenInfo), ScreenInfoSize)
	}
	if err := im.CheckCmdline(p.Cmdline); err != nil {
		return nil, nil, err
	}
	size, err := ParamsSize(p)
	if err != nil {
		return nil, nil, err
	}
	if base+size < base {
		return nil, nil, fmt.Errorf("%w: parameter block at %#x", segment.ErrOverflow, base)
	}
	if p.EFI != nil && (base+size)>>32 != 0 && im.Xloadflags&XLFCanBeLoadedAbove4G == 0 {
		return nil, nil, fmt.Errorf("%w: EFI memory map ending at %#x is above 4 GiB", ErrUnsupported, base+size)
	}
	nodes, _ := p.nodes()
	le := binary.LittleEndian
	buf := make([]byte, size)
	bp := buf[:BootParamsSize]
	copy(bp[offSetupSects:], im.header)
	// The fields a loader owns come from this loader, never from the file:
	// an image whose header carries a stale setup_data pointer or initrd
	// would otherwise hand the next kernel whatever those bytes point at.
	clear(bp[offRamdiskImage : offRamdiskSize+4])
	clear(bp[offCmdLinePtr : offCmdLinePtr+4])
	clear(bp[offSetupData : offSetupData+8])

	bp[offTypeOfLoader] = 0xff // "undefined" boot loader id
	if p.ScreenInfo != nil {
		copy(bp[offScreenInfo:offScreenInfo+ScreenInfoSize], p.ScreenInfo)
	}
	cmdAddr := base + BootParamsSize
	copy(buf[BootParamsSize:], p.Cmdline) // NUL already there: buf is zeroed
	le.PutUint32(bp[offCmdLinePtr:], uint32(cmdAddr))
	le.PutUint32(bp[offExtCmdLinePtr:], uint32(cmdAddr>>32))
	if cmdAddr>>32 != 0 && im.Xloadflags&XLFCanBeLoadedAbove4G == 0 {
		return nil, nil, fmt.Errorf("%w: command line at %#x is above 4 GiB", ErrUnsupported, cmdAddr)
	}

	if p.InitrdSize > 0 {
		le.PutUint32(bp[offRamdiskImage:], uint32(p.InitrdAddr))
		le.PutUint32(bp[offExtRamdiskImage:], uint32(p.InitrdAddr>>32))
		le.PutUint32(bp[offRamdiskSize:], uint32(p.InitrdSize))
		le.PutUint32(bp[offExtRamdiskSize:], uint32(p.InitrdSize>>32))
	}
	if p.ACPIRSDP != 0 && im.Version >= 0x020e {
		le.PutUint64(bp[offACPIRSDP:], p.ACPIRSDP)
	}

	n := len(p.E820)
	if n > E820Max {
		n = E820Max
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%w: empty e820 map", segment.ErrBadMap)
	}
	bp[offE820Entries] = uint8(n)
	e := bp[offE820Table:offE820Table]
	for _, r := range p.E820[:n] {
		e = appendE820(e, r)
	}

	// setup_data chain, in order, right after the command line.
	off := uint64(BootParamsSize) + align16(uint64(len(p.Cmdline))+1)
	var infos []NodeInfo
	prevNext := bp[offSetupData : offSetupData+8]
	for _, d := range nodes {
		if uint64(len(d.Data)) > 0xffffffff {
			return nil, nil, fmt.Errorf("%w: setup_data type %d payload of %d bytes", ErrUnsupported, d.Type, len(d.Data))
		}
		addr := base + off
		le.PutUint64(prevNext, addr)
		h := buf[off:]
		le.PutUint32(h[8:], d.Type)
		le.PutUint32(h[12:], uint32(len(d.Data)))
		copy(h[SetupDataHeaderSize:], d.Data)
		prevNext = h[0:8]
		infos = append(infos, NodeInfo{Type: d.Type, Addr: addr, Len: uint32(len(d.Data))})
		off += align16(SetupDataHeaderSize + uint64(len(d.Data)))
	}
	pl := &Placed{Nodes: infos}
	if e := p.EFI; e != nil {
		mm := base + off
		copy(buf[off:], e.Memmap)
		ei := bp[offEFIInfo : offEFIInfo+32]
		copy(ei[0:4], e.LoaderSignature)
		le.PutUint32(ei[4:], uint32(e.Systab))
		le.PutUint32(ei[8:], e.MemdescSize)
		le.PutUint32(ei[12:], e.MemdescVersion)
		le.PutUint32(ei[16:], uint32(mm))
		le.PutUint32(ei[20:], uint32(len(e.Memmap)))
		le.PutUint32(ei[24:], uint32(e.Systab>>32))
		le.PutUint32(ei[28:], uint32(mm>>32))
		bp[offSecureBoot] = e.SecureBoot
		pl.MemmapAddr = mm
	}
	return buf, pl, nil
}

// SetupDataAt walks the chain of a parameter block built by BuildParams and
// returns the nodes found; it is the reader for tests and for checking a
// plan. base is the block's physical address.
func SetupDataAt(block []byte, base uint64) ([]NodeInfo, error) {
	if len(block) < BootParamsSize {
		return nil, fmt.Errorf("%w: parameter block of %d bytes", ErrNotBzImage, len(block))
	}
	le := binary.LittleEndian
	var out []NodeInfo
	next := le.Uint64(block[offSetupData:])
	for next != 0 {
		if len(out) > 64 {
			return nil, fmt.Errorf("%w: setup_data chain longer than 64 nodes (loop?)", ErrUnsupported)
		}
		if next < base || next-base+SetupDataHeaderSize > uint64(len(block)) {
			return nil, fmt.Errorf("%w: setup_data node at %#x outside the block [%#x, %#x)", ErrUnsupported, next, base, base+uint64(len(block)))
		}
		h := block[next-base:]
		n := NodeInfo{Type: le.Uint32(h[8:]), Addr: next, Len: le.Uint32(h[12:])}
		if uint64(n.Len) > uint64(len(h))-SetupDataHeaderSize {
			return nil, fmt.Errorf("%w: setup_data node at %#x claims %d bytes", ErrUnsupported, next, n.Len)
		}
		out = append(out, n)
		next = le.Uint64(h[0:])
	}
	return out, nil
}
