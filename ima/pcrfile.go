package ima

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// PCRValues holds PCR values: bank -> PCR index -> value. It is the one
// type for PCR values the package takes and returns.
type PCRValues map[crypto.Hash]map[uint32][]byte

// maxPCRIndex bounds PCR indices accepted from PCR files.
const maxPCRIndex = 1023

// ParsePCRFile reads quoted PCR values in one of three forms, detected from
// the content:
//
//   - evmctl's form (what `evmctl ima_measurement --pcrs` reads, and the
//     TPM 1.2 sysfs "pcrs" file): lines "PCR-NN: XX XX ..." with hex bytes,
//     spaces between bytes optional. The bank is bank if non-zero, else
//     guessed from the digest size (20 sha1, 32 sha256, 48 sha384, 64 sha512).
//   - tpm2_pcrread YAML: "sha256:" then "  N : 0xHEX" lines, any number of
//     banks.
//   - JSON: {"sha256": {"10": "hex", ...}, ...}, any number of banks.
//   - tpm2_quote / tpm2_checkquote output: the same YAML nested under
//     "pcrs:", among other keys.
//
// ParseSysfsPCR reads the fourth form, a sysfs pcr-<bank>/<n> file.
//
// For the YAML and JSON forms a non-zero bank selects that bank only.
// Errors wrap ErrBadPCRFile and name the line.
func ParsePCRFile(b []byte, bank crypto.Hash) (PCRValues, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadPCRFile)
	}
	var out PCRValues
	var err error
	switch {
	case t[0] == '{':
		out, err = parsePCRJSON(t)
	case bytes.HasPrefix(t, []byte("PCR-")):
		return parsePCREvmctl(t, bank)
	default:
		out, err = parsePCRYAML(t)
	}
	if err != nil {
		return nil, err
	}
	if bank != 0 {
		v, ok := out[bank]
		if !ok {
			return nil, fmt.Errorf("%w: no %s bank in file", ErrBadPCRFile, HashName(bank))
		}
		out = PCRValues{bank: v}
	}
	return out, nil
}

func setPCR(out PCRValues, bank crypto.Hash, idx uint64, v []byte, where string) error {
	if idx > maxPCRIndex {
		return fmt.Errorf("%w: %s: PCR index %d out of range", ErrBadPCRFile, where, idx)
	}
	if bank.Size() != len(v) {
		return fmt.Errorf("%w: %s: %s value is %d bytes, want %d", ErrBadPCRFile, where, HashName(bank), len(v), bank.Size())
	}
	if out[bank] == nil {
		out[bank] = map[uint32][]byte{}
	}
	if _, dup := out[bank][uint32(idx)]; dup {
		return fmt.Errorf("%w: %s: PCR %d of %s given twice", ErrBadPCRFile, where, idx, HashName(bank))
	}
	out[bank][uint32(idx)] = v
	return nil
}

func parsePCREvmctl(t []byte, bank crypto.Hash) (PCRValues, error) {
	out := PCRValues{}
	if bank != 0 {
		if err := checkBank(bank); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadPCRFile, err)
		}
	}
	for n, line := range strings.Split(string(t), "\n") {
		where := "line " + strconv.Itoa(n+1)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "PCR-")
		if !ok {
			return nil, fmt.Errorf("%w: %s: want \"PCR-NN: XX XX ...\"", ErrBadPCRFile, where)
		}
		num, val, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("%w: %s: no ':'", ErrBadPCRFile, where)
		}
		idx, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: PCR index %q", ErrBadPCRFile, where, num)
		}
		v, err := hex.DecodeString(strings.Join(strings.Fields(val), ""))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPCRFile, where, err)
		}
		b := bank
		if b == 0 {
			var ok bool
			if b, ok = bankForSize(len(v)); !ok {
				return nil, fmt.Errorf("%w: %s: %d-byte value matches no bank", ErrBadPCRFile, where, len(v))
			}
		}
		if err := setPCR(out, b, idx, v, where); err != nil {
			return nil, err
		}
	}
	if len(out) > 1 {
		return nil, fmt.Errorf("%w: values of different sizes in one evmctl-format file", ErrBadPCRFile)
	}
	return out, nil
}

func parsePCRYAML(t []byte) (PCRValues, error) {
	out := PCRValues{}
	var cur crypto.Hash
	curIndent := 0
	for n, raw := range strings.Split(string(t), "\n") {
		where := "line " + strconv.Itoa(n+1)
		if i := strings.IndexByte(raw, '#'); i >= 0 {
			raw = raw[:i]
		}
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		// A key indented no deeper than the bank's ends the bank's block
		// (tpm2_quote and tpm2_checkquote print "calcDigest:", "sig:"
		// after the values nested under "pcrs:").
		indent := len(strings.TrimRight(raw, " \t\r")) - len(strings.TrimLeft(strings.TrimRight(raw, " \t\r"), " \t"))
		if cur != 0 && indent <= curIndent {
			cur = 0
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: %s: want \"key: value\"", ErrBadPCRFile, where)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case v == "":
			// A mapping key: a bank name, or a tpm2-tools header such as
			// "pcrs:" or "selected-pcrs:".
			h, err := ParseHashName(k)
			if err != nil {
				cur = 0
				continue
			}
			cur, curIndent = h, indent
		case cur != 0:
			idx, err := strconv.ParseUint(k, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: PCR index %q", ErrBadPCRFile, where, k)
			}
			s := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
			val, err := hex.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadPCRFile, where, err)
			}
			if err := setPCR(out, cur, idx, val, where); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PCR values found", ErrBadPCRFile)
	}
	return out, nil
}

func parsePCRJSON(t []byte) (PCRValues, error) {
	var raw map[string]map[string]string
	if err := json.Unmarshal(t, &raw); err != nil {
		return nil, fmt.Errorf("%w: json: %v", ErrBadPCRFile, err)
	}
	out := PCRValues{}
	for bn, m := range raw {
		h, err := ParseHashName(bn)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadPCRFile, err)
		}
		for k, v := range m {
			idx, err := strconv.ParseUint(k, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: PCR index %q", ErrBadPCRFile, bn, k)
			}
			val, err := hex.DecodeString(strings.TrimPrefix(v, "0x"))
			if err != nil {
				return nil, fmt.Errorf("%w: %s PCR %s: %v", ErrBadPCRFile, bn, k, err)
			}
			if err := setPCR(out, h, idx, val, bn+" PCR "+k); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PCR values found", ErrBadPCRFile)
	}
	return out, nil
}

// MarshalPCRJSON renders values in the JSON form ParsePCRFile reads.
func MarshalPCRJSON(v PCRValues) ([]byte, error) {
	raw := map[string]map[string]string{}
	for h, m := range v {
		name := HashName(h)
		if name == "" {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedHash, h)
		}
		raw[name] = map[string]string{}
		for i, b := range m {
			raw[name][strconv.FormatUint(uint64(i), 10)] = hex.EncodeToString(b)
		}
	}
	return json.MarshalIndent(raw, "", "  ")
}

// Merge adds every bank and PCR of src to v (src wins on conflicts).
func (v PCRValues) Merge(src PCRValues) {
	for h, m := range src {
		if v[h] == nil {
			v[h] = map[uint32][]byte{}
		}
		for i, b := range m {
			v[h][i] = b
		}
	}
}

// ParseSysfsPCR reads a sysfs /sys/class/tpm/tpmN/pcr-<bank>/<n> file:
// the value of PCR pcr in bank as bare hex (upper case, one line).
func ParseSysfsPCR(b []byte, bank crypto.Hash, pcr uint64) (PCRValues, error) {
	if err := checkBank(bank); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPCRFile, err)
	}
	v, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: not bare hex: %v", ErrBadPCRFile, err)
	}
	out := PCRValues{}
	if err := setPCR(out, bank, pcr, v, "sysfs value"); err != nil {
		return nil, err
	}
	return out, nil
}

// IsBareHex reports whether b is one hex token (a sysfs PCR file's form).
func IsBareHex(b []byte) bool {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || len(t)%2 != 0 {
		return false
	}
	for _, c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
