package arm64

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// EFI zboot header (drivers/firmware/efi/libstub/zboot-header.S): a PE
// file whose DOS header carries, at fixed offsets, where the compressed
// Image lies and how it is compressed.
const (
	zbootTagOffset  = 4    // "zimg"
	zbootOffOffset  = 8    // u32 LE payload offset
	zbootSizeOffset = 12   // u32 LE payload size
	zbootTypeOffset = 0x18 // NUL-terminated compression type, up to 0x38
	zbootTypeEnd    = 0x38 // LINUX_PE_MAGIC follows
	zbootHeaderSize = 0x40

	// ZbootGzip and ZbootZstd are the compression types kernels since 6.13
	// write (Makefile.zboot's comp-type; its zstd payload is made with the
	// zstd22_with_size method, which appends the 4-byte length). Older
	// kernels could also name lzma, xzkern, lzo and lz4, and ZbootZstd22
	// (Makefile.zboot's method name) is unpacked as zstd too, without the
	// length check.
	ZbootGzip   = "gzip"
	ZbootZstd   = "zstd"
	ZbootZstd22 = "zstd22"
)

// Zboot errors.
var (
	// ErrZboot is wrapped for a malformed zboot header or payload.
	ErrZboot = errors.New("arm64: bad EFI zboot image")
	// ErrZbootCompression is wrapped for a compression type this package
	// cannot unpack; the message names the type.
	ErrZbootCompression = errors.New("arm64: unsupported EFI zboot compression")
)

// Zboot is the header of an EFI zboot image.
type Zboot struct {
	PayloadOffset uint32
	PayloadSize   uint32 // for non-gzip types without the trailing 4-byte length
	Compression   string // ZbootGzip, ZbootZstd, or another kernel's name
}

// IsZboot reports whether b starts like an EFI zboot image ("MZ", then
// "zimg" at offset 4).
func IsZboot(b []byte) bool {
	return len(b) >= 8 && string(b[:2]) == "MZ" && string(b[zbootTagOffset:zbootTagOffset+4]) == "zimg"
}

// ParseZboot parses the zboot header of b and checks that the payload lies
// inside b. It does not decompress.
func ParseZboot(b []byte) (*Zboot, error) {
	if !IsZboot(b) {
		return nil, fmt.Errorf("%w: no \"MZ\" ... \"zimg\" signature", ErrZboot)
	}
	if len(b) < zbootHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrZboot, len(b), zbootHeaderSize)
	}
	le := binary.LittleEndian
	z := &Zboot{PayloadOffset: le.Uint32(b[zbootOffOffset:]), PayloadSize: le.Uint32(b[zbootSizeOffset:])}
	t := b[zbootTypeOffset:zbootTypeEnd]
	n := bytes.IndexByte(t, 0)
	if n < 0 {
		return nil, fmt.Errorf("%w: compression type at %#x is not NUL-terminated", ErrZboot, zbootTypeOffset)
	}
	z.Compression = string(t[:n])
	for _, c := range t[:n] {
		if c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("%w: compression type %q is not printable ASCII", ErrZboot, z.Compression)
		}
	}
	if z.PayloadOffset < zbootHeaderSize {
		return nil, fmt.Errorf("%w: payload offset %#x lies inside the header", ErrZboot, z.PayloadOffset)
	}
	if z.PayloadSize == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrZboot)
	}
	if end := uint64(z.PayloadOffset) + uint64(z.PayloadSize); end > uint64(len(b)) {
		return nil, fmt.Errorf("%w: payload %#x+%#x ends beyond the file's %#x bytes (truncated?)", ErrZboot, z.PayloadOffset, z.PayloadSize, len(b))
	}
	return z, nil
}

// Payload returns the compressed payload of b, whose header z describes.
func (z *Zboot) Payload(b []byte) []byte {
	return b[z.PayloadOffset : z.PayloadOffset+z.PayloadSize]
}

// UnpackZboot returns the Image an EFI zboot image carries, decompressed
// within MaxKernelSize bytes, and its header. The result is not checked as
// an Image; ParseImage does that (and calls this itself).
func UnpackZboot(b []byte) ([]byte, *Zboot, error) { return unpackZboot(b, MaxKernelSize) }

func unpackZboot(b []byte, limit int) ([]byte, *Zboot, error) {
	z, err := ParseZboot(b)
	if err != nil {
		return nil, nil, err
	}
	payload := z.Payload(b)
	var raw []byte
	switch z.Compression {
	case ZbootGzip:
		raw, err = gunzipLimited(payload, limit)
	case ZbootZstd, ZbootZstd22:
		raw, err = unzstdLimited(payload, limit)
		if err == nil && z.Compression == ZbootZstd {
			err = checkSizeTrailer(b, z, len(raw))
		}
	default:
		return nil, z, fmt.Errorf("%w: payload compressed with %q (gzip and zstd are supported)", ErrZbootCompression, z.Compression)
	}
	if err != nil {
		return nil, z, err
	}
	return raw, z, nil
}

// checkSizeTrailer compares the 4-byte length that follows a non-gzip
// payload (the decompressed size, little endian, as the kernel's
// size_append writes it) with what decompression gave, when the file
// holds it.
func checkSizeTrailer(b []byte, z *Zboot, got int) error {
	end := uint64(z.PayloadOffset) + uint64(z.PayloadSize)
	if end+4 > uint64(len(b)) {
		return fmt.Errorf("%w: the %s payload lacks its trailing 4-byte length (truncated?)", ErrZboot, z.Compression)
	}
	if want := binary.LittleEndian.Uint32(b[end:]); uint64(want) != uint64(got) {
		return fmt.Errorf("%w: the %s payload decompressed to %d bytes, its trailing length says %d", ErrZboot, z.Compression, got, want)
	}
	return nil
}

func gunzipLimited(b []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip header: %w", ErrNotImage, err)
	}
	zr.Multistream(false)
	raw, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gunzip: %w", ErrNotImage, err)
	}
	if len(raw) > limit {
		return nil, fmt.Errorf("%w: gzip data expands beyond %d bytes", ErrTooLarge, limit)
	}
	return raw, nil
}

func unzstdLimited(b []byte, limit int) ([]byte, error) {
	// One goroutine, and a window no larger than the output may be: the
	// decoder's memory stays bounded by limit whatever the frame header
	// claims.
	window := uint64(limit)
	if window < zstd.MinWindowSize {
		window = zstd.MinWindowSize
	}
	dec, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(window), zstd.WithDecoderMaxMemory(uint64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %w", ErrZboot, err)
	}
	defer dec.Close()
	raw, err := io.ReadAll(io.LimitReader(dec, int64(limit)+1))
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("%w: zstd data expands beyond %d bytes: %w", ErrTooLarge, limit, err)
		}
		return nil, fmt.Errorf("%w: zstd: %w", ErrZboot, err)
	}
	if len(raw) > limit {
		return nil, fmt.Errorf("%w: zstd data expands beyond %d bytes", ErrTooLarge, limit)
	}
	return raw, nil
}
