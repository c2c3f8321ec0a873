package ima

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Decoded is the field-level content of an entry. Absent fields are zero;
// byte slices alias the entry.
type Decoded struct {
	DigestType   string   `json:"digest_type,omitempty"` // d-ngv2: "ima" or "verity"
	DigestAlgo   string   `json:"digest_algo,omitempty"` // "sha256"; "" for the legacy d field
	Digest       []byte   `json:"digest,omitempty"`
	Name         string   `json:"name,omitempty"`
	Sig          []byte   `json:"sig,omitempty"`
	Buf          []byte   `json:"buf,omitempty"`
	ModsigAlgo   string   `json:"modsig_digest_algo,omitempty"`
	ModsigDigest []byte   `json:"modsig_digest,omitempty"`
	Modsig       []byte   `json:"modsig,omitempty"`
	EvmSig       []byte   `json:"evmsig,omitempty"`
	XattrNames   []string `json:"xattr_names,omitempty"`
	XattrLengths []uint32 `json:"xattr_lengths,omitempty"`
	XattrValues  [][]byte `json:"xattr_values,omitempty"`
	UID          *uint64  `json:"uid,omitempty"`
	GID          *uint64  `json:"gid,omitempty"`
	Mode         *uint64  `json:"mode,omitempty"`
}

// splitDigestNG splits "<type>:<algo>:" NUL digest (type optional).
func splitDigestNG(b []byte, v2 bool) (typ, algo string, digest []byte, err error) {
	nul := bytes.IndexByte(b, 0)
	if nul < 1 || b[nul-1] != ':' {
		return "", "", nil, fmt.Errorf("%w: digest field lacks \"algo:\" NUL prefix", ErrMalformed)
	}
	prefix := string(b[:nul-1])
	digest = b[nul+1:]
	if v2 {
		t, a, ok := strings.Cut(prefix, ":")
		if !ok {
			return "", "", nil, fmt.Errorf("%w: d-ngv2 field lacks \"type:algo:\" prefix", ErrMalformed)
		}
		return t, a, digest, nil
	}
	return "", prefix, digest, nil
}

func decodeUint(b []byte, order binary.ByteOrder) (*uint64, error) {
	var v uint64
	switch len(b) {
	case 0:
		return nil, nil
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(order.Uint16(b))
	case 4:
		v = uint64(order.Uint32(b))
	case 8:
		v = order.Uint64(b)
	default:
		return nil, fmt.Errorf("%w: %d-byte integer field", ErrMalformed, len(b))
	}
	return &v, nil
}

// Decode splits the entry into fields and decodes each.
func (e *Entry) Decode(order binary.ByteOrder) (Decoded, error) {
	var d Decoded
	fs, err := e.Fields(order)
	if err != nil {
		return d, err
	}
	for _, f := range fs {
		var err error
		switch f.ID {
		case FieldD:
			d.Digest = f.Data
		case FieldDNG, FieldDNGv2:
			d.DigestType, d.DigestAlgo, d.Digest, err = splitDigestNG(f.Data, f.ID == FieldDNGv2)
		case FieldN, FieldNNG:
			d.Name = string(cString(f.Data))
		case FieldSig:
			d.Sig = f.Data
		case FieldBuf:
			d.Buf = f.Data
		case FieldDModsig:
			if len(f.Data) > 0 {
				_, d.ModsigAlgo, d.ModsigDigest, err = splitDigestNG(f.Data, false)
			}
		case FieldModsig:
			d.Modsig = f.Data
		case FieldEvmSig:
			d.EvmSig = f.Data
		case FieldXattrNames:
			if s := string(cString(f.Data)); s != "" {
				d.XattrNames = strings.Split(s, "|")
			}
		case FieldXattrLengths:
			if len(f.Data)%4 != 0 {
				err = fmt.Errorf("%w: xattrlengths is %d bytes", ErrMalformed, len(f.Data))
				break
			}
			for i := 0; i < len(f.Data); i += 4 {
				d.XattrLengths = append(d.XattrLengths, order.Uint32(f.Data[i:]))
			}
		case FieldXattrValues:
			if len(f.Data) > 0 {
				d.XattrValues = [][]byte{f.Data}
			}
		case FieldIUID:
			d.UID, err = decodeUint(f.Data, order)
		case FieldIGID:
			d.GID, err = decodeUint(f.Data, order)
		case FieldIMode:
			d.Mode, err = decodeUint(f.Data, order)
		}
		if err != nil {
			return d, fmt.Errorf("field %s: %w", f.ID, err)
		}
	}
	// Split xattr values by their lengths when they agree.
	if len(d.XattrValues) == 1 && len(d.XattrLengths) > 0 {
		all := d.XattrValues[0]
		var parts [][]byte
		off := uint64(0)
		for _, l := range d.XattrLengths {
			if off+uint64(l) > uint64(len(all)) {
				return d, fmt.Errorf("field xattrvalues: %w: lengths exceed the %d value bytes", ErrMalformed, len(all))
			}
			parts = append(parts, all[off:off+uint64(l)])
			off += uint64(l)
		}
		d.XattrValues = parts
	}
	return d, nil
}

// EventName returns the entry's n-ng or n field, or "" if it has none.
func (e *Entry) EventName(order binary.ByteOrder) string {
	t, err := e.Template()
	if err != nil {
		return ""
	}
	var buf [maxTemplateFields]Field
	fs, err := splitFields(e, t, order, buf[:0])
	if err != nil {
		return ""
	}
	for _, f := range fs {
		if f.ID == FieldNNG || f.ID == FieldN {
			return string(cString(f.Data))
		}
	}
	return ""
}
