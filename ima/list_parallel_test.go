package ima

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// TestParseListParallelMatchesSequential forces the parallel parser on
// small inputs (many chunks of 1-5 entries) and checks that it returns what
// the sequential parser returns, entries, error text, offset and index, on
// a valid list in both byte orders (every template, legacy "ima" and its
// format "d|n" included) and on every truncation and many corruptions.
func TestParseListParallelMatchesSequential(t *testing.T) {
	defer func(m, c int) { parallelParseMin, parseChunk = m, c }(parallelParseMin, parseChunk)
	parallelParseMin = 0
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := synthList(t, order)
		// "d|n" is the legacy template's format: framed like "ima".
		dn := legacyEntry(order, 10, [20]byte{1}, "/via/format")
		dn.TemplateName = "d|n"
		es = append(es, dn)
		es = append(es, es...)
		raw := AppendList(nil, es, order)
		var inputs [][]byte
		inputs = append(inputs, raw)
		for n := 0; n < len(raw); n += 7 {
			inputs = append(inputs, raw[:n])
		}
		for i := 0; i < len(raw); i += 5 {
			for _, v := range []byte{0xff, 0x80, 0x01} {
				c := append([]byte(nil), raw...)
				c[i] ^= v
				inputs = append(inputs, c)
			}
		}
		var parallelRuns, errorsSeen int
		for _, chunk := range []int{1, 2, 3, 5} {
			parseChunk = chunk
			for _, in := range inputs {
				want, werr := parseListFrom(in, endianOf(order), 0, 0, nil)
				got, gerr := ParseList(in, order)
				if _, ok, _ := parseListParallel(in, endianOf(order)); ok {
					parallelRuns++
				}
				if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
					t.Fatalf("chunk %d, %d bytes: error %v, sequential %v", chunk, len(in), gerr, werr)
				}
				if werr != nil {
					errorsSeen++
					var wp, gp *ParseError
					if !errors.As(werr, &wp) || !errors.As(gerr, &gp) || wp.Offset != gp.Offset || wp.Index != gp.Index {
						t.Fatalf("chunk %d: ParseError %+v, sequential %+v", chunk, gp, wp)
					}
				}
				if len(want) != len(got) || (len(want) > 0 && !reflect.DeepEqual(want, got)) {
					t.Fatalf("chunk %d, %d bytes: %d entries, sequential %d", chunk, len(in), len(got), len(want))
				}
			}
		}
		if parallelRuns < len(inputs) || errorsSeen < len(inputs) {
			t.Errorf("parallel path taken %d times, errors %d, for %d inputs x 4 chunk sizes", parallelRuns, errorsSeen, len(inputs))
		}
	}
}
