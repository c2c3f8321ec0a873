package attest

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
)

// PCRValues holds PCR values: bank -> PCR index -> value (the same shape
// as ima.PCRValues, to which it converts).
type PCRValues map[crypto.Hash]map[uint32][]byte

// MaxPCRFile caps a PCR values file.
const MaxPCRFile = 1 << 20

// tpm2-tools' "serialized" PCR file (lib/pcr.c, pcr_fwrite_serialized) is
// the C structs written as they lie in memory on the host, little-endian
// on the machines it runs on:
//
//	TPML_PCR_SELECTION  u32 count | 16 x (u16 hash | u8 sizeofSelect | u8 pcrSelect[4] | u8 pad)
//	u32 n               the number of TPML_DIGESTs that follow
//	n x TPML_DIGEST     u32 count | 8 x (u16 size | u8 buffer[64])
//
// The digests hold the selected values in selection order (bank by bank,
// PCRs ascending), eight to a TPML_DIGEST.
const (
	serSelEntry   = 8
	serSelSize    = 4 + MaxBanks*serSelEntry
	serDigestSize = 2 + 64
	serListSize   = 4 + 8*serDigestSize
	serMaxLists   = MaxBanks * 8 * MaxSelectLen / 8
)

// ParsePCRFile reads the PCR values tpm2_quote -o writes: the
// "serialized" layout (the default; it carries its own selection), or
// the "values" layout (-F values: the digests alone, concatenated), which
// is read in the order of sel, the quote's selection. The serialized
// layout is tried first and must be exact; a file that is not one is
// read as values, whose length must then be exactly what sel asks for.
func ParsePCRFile(b []byte, sel []Selection) (PCRValues, error) {
	if len(b) > MaxPCRFile {
		return nil, fmt.Errorf("PCR file: %d bytes: %w", len(b), ErrTooLarge)
	}
	v, serr := parseSerialized(b)
	if serr == nil {
		return v, nil
	}
	v, verr := parseValues(b, sel)
	if verr == nil {
		return v, nil
	}
	return nil, fmt.Errorf("PCR file: neither tpm2-tools layout (serialized: %v; values: %v): %w", serr, verr, ErrMalformed)
}

func parseSerialized(b []byte) (PCRValues, error) {
	le := binary.LittleEndian
	if len(b) < serSelSize+4 {
		return nil, errors.New("shorter than a selection and a count")
	}
	nsel := le.Uint32(b)
	if nsel > MaxBanks {
		return nil, fmt.Errorf("%d banks", nsel)
	}
	var sel []Selection
	for i := 0; i < int(nsel); i++ {
		e := b[4+i*serSelEntry : 4+(i+1)*serSelEntry]
		size := int(e[2])
		if size > MaxSelectLen {
			return nil, fmt.Errorf("a %d-byte PCR bitmap", size)
		}
		h, err := bankHash(algID(le.Uint16(e)))
		if err != nil {
			return nil, err
		}
		sel = append(sel, Selection{Bank: h, Alg: algID(le.Uint16(e)), PCRs: bitmapPCRs(e[3 : 3+size])})
	}
	n := le.Uint32(b[serSelSize:])
	if n > serMaxLists || len(b) != serSelSize+4+int(n)*serListSize {
		return nil, fmt.Errorf("%d digest lists in %d bytes", n, len(b))
	}
	var digests [][]byte
	for i := 0; i < int(n); i++ {
		l := b[serSelSize+4+i*serListSize:]
		c := le.Uint32(l)
		if c > 8 {
			return nil, fmt.Errorf("a digest list of %d", c)
		}
		for k := 0; k < int(c); k++ {
			d := l[4+k*serDigestSize:]
			sz := int(le.Uint16(d))
			if sz > 64 {
				return nil, fmt.Errorf("a %d-byte digest", sz)
			}
			digests = append(digests, d[2:2+sz])
		}
	}
	return assign(sel, digests)
}

func parseValues(b []byte, sel []Selection) (PCRValues, error) {
	if len(sel) == 0 {
		return nil, errors.New("no selection to read values by")
	}
	var digests [][]byte
	off := 0
	for _, s := range sel {
		for range s.PCRs {
			n := s.Bank.Size()
			if len(b)-off < n {
				return nil, fmt.Errorf("%d bytes, fewer than the selection needs", len(b))
			}
			digests = append(digests, b[off:off+n])
			off += n
		}
	}
	if off != len(b) {
		return nil, fmt.Errorf("%d bytes, the selection needs %d", len(b), off)
	}
	return assign(sel, digests)
}

// assign gives the digests, in order, to the selection's PCRs.
func assign(sel []Selection, digests [][]byte) (PCRValues, error) {
	want := 0
	for _, s := range sel {
		want += len(s.PCRs)
	}
	if want != len(digests) {
		return nil, fmt.Errorf("%d values for %d selected PCRs", len(digests), want)
	}
	v := PCRValues{}
	i := 0
	for _, s := range sel {
		m := v[s.Bank]
		if m == nil {
			m = map[uint32][]byte{}
			v[s.Bank] = m
		}
		for _, p := range s.PCRs {
			if len(digests[i]) != s.Bank.Size() {
				return nil, fmt.Errorf("%s PCR %d: a %d-byte value", hashName(s.Bank), p, len(digests[i]))
			}
			m[p] = bytes.Clone(digests[i])
			i++
		}
	}
	return v, nil
}
