package ima

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// JSON and bytes that are not UTF-8.
//
// encoding/json writes every byte that is not UTF-8 as U+FFFD, so two
// different names ("\xff" and "\xef\xbf\xbd") would print the same. The
// rule for every string taken from a list: when it is valid UTF-8 it is
// written as it is; when it is not, the string member holds its escaped
// form (Escape: \xNN for the bytes that are not printable) and a sibling
// member "<name>_hex" holds the exact bytes in hex. Reading back prefers
// the _hex member, so a value round-trips exactly (checkpoints rely on it).

// JSONText returns the string member's value and the _hex member's
// ("" when s is valid UTF-8).
func JSONText(s string) (text, hexBytes string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return Escape(s), hex.EncodeToString([]byte(s))
}

func fromJSONText(text, hexBytes string) (string, error) {
	if hexBytes == "" {
		return text, nil
	}
	b, err := hex.DecodeString(hexBytes)
	if err != nil {
		return "", fmt.Errorf("%w: _hex member: %v", ErrMalformed, err)
	}
	return string(b), nil
}

type markerJSON struct {
	Index       int    `json:"index"`
	PCR         uint32 `json:"pcr"`
	Name        string `json:"name"`
	NameHex     string `json:"name_hex,omitempty"`
	Payload     string `json:"payload"`
	PayloadHex  string `json:"payload_hex,omitempty"`
	Truncated   bool   `json:"payload_truncated,omitempty"`
	Decoded     bool   `json:"decoded"`
	SegmentSize uint64 `json:"kexec_segment_size"`
	ListSize    uint64 `json:"ima_binary_runtime_size"`
	Count       uint64 `json:"ima_runtime_measurements_count"`
}

// MarshalJSON writes the marker with exact bytes for a name or payload
// that is not UTF-8 (name_hex, payload_hex).
func (m Marker) MarshalJSON() ([]byte, error) {
	j := markerJSON{Index: m.Index, PCR: m.PCR, Truncated: m.Truncated, Decoded: m.Decoded, SegmentSize: m.SegmentSize, ListSize: m.ListSize, Count: m.Count}
	j.Name, j.NameHex = JSONText(m.Name)
	j.Payload, j.PayloadHex = JSONText(m.Payload)
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Marker) UnmarshalJSON(b []byte) error {
	var j markerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	name, err := fromJSONText(j.Name, j.NameHex)
	if err != nil {
		return err
	}
	payload, err := fromJSONText(j.Payload, j.PayloadHex)
	if err != nil {
		return err
	}
	*m = Marker{Index: j.Index, PCR: j.PCR, Name: name, Payload: payload, Truncated: j.Truncated, Decoded: j.Decoded, SegmentSize: j.SegmentSize, ListSize: j.ListSize, Count: j.Count}
	return nil
}
