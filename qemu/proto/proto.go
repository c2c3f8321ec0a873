// Package proto defines the line protocol between the guest agent
// (qemu/agent, running as /init inside a QEMU guest) and the host harness
// (package qemu), and the scenario format the host hands to the agent.
//
// Invariants:
//   - Every record travels as one text line "GKT " + JSON. A record whose JSON
//     is longer than MaxLine is gzip-compressed, base64-encoded and split into
//     numbered part lines ("GKT " + {"part":{...}}); the decoder reassembles
//     the parts, checks that none is missing or duplicated and decompresses.
//   - Lines that do not start with the prefix (kernel messages, other output)
//     are ignored by the decoder; a line that starts with it but does not
//     decode is an error, never silently dropped.
//   - The package is pure: no I/O besides the io.Reader/io.Writer a caller
//     passes in, no globals that change.
package proto

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Prefix starts every protocol line.
const Prefix = "GKT "

// MaxLine is the largest JSON text sent as a single plain line; larger
// records are compressed and split into parts of at most MaxLine characters.
const MaxLine = 2048

// Record types.
const (
	TypeBoot  = "boot"  // first record of every boot: Release, Cmdline
	TypePCRs  = "pcrs"  // PCRs: bank -> 24 hex strings
	TypeList  = "list"  // Name (binary_runtime_measurements or ascii_runtime_measurements), Data
	TypeCmd   = "cmd"   // Argv, Exit, Output
	TypeFile  = "file"  // Name (guest path), Data
	TypeError = "error" // Error; the step stops after an error
	TypeDone  = "done"  // last record of a step that ran to its end
	TypeLog   = "log"   // Message: free-form progress note
	// TypeBootInfo answers {"report": ["boot"]}: Release and Cmdline again,
	// without starting a new boot number.
	TypeBootInfo = "boot-info"
)

// Record is one message from the guest.
type Record struct {
	// Boot is assigned by the host decoder: 1 for the records after the
	// first "boot" record, 2 after the second, and so on. The guest leaves
	// it zero.
	Boot int `json:"boot,omitempty"`
	// Step is the scenario step the agent runs (gkt.step= on the command line).
	Step string `json:"step"`
	// Type is one of the Type* constants.
	Type string `json:"type"`
	// Action is the index of the scenario action that produced the record,
	// -1 for records not tied to an action (boot, done, watchdog errors).
	Action int `json:"action"`
	// MonoNS is the guest's CLOCK_MONOTONIC (ns since its kernel started)
	// when the record was made.
	MonoNS int64 `json:"mono_ns,omitempty"`

	Release string              `json:"release,omitempty"`
	Cmdline string              `json:"cmdline,omitempty"`
	PCRs    map[string][]string `json:"pcrs,omitempty"`
	Name    string              `json:"name,omitempty"`
	Data    []byte              `json:"data,omitempty"`
	Argv    []string            `json:"argv,omitempty"`
	Exit    int                 `json:"exit,omitempty"`
	Output  []byte              `json:"output,omitempty"`
	Error   string              `json:"error,omitempty"`
	Message string              `json:"message,omitempty"`
}

// part is one piece of a compressed record.
type part struct {
	ID int    `json:"id"` // record number within the boot, chosen by the sender
	I  int    `json:"i"`  // 0-based part index
	N  int    `json:"n"`  // number of parts
	Z  string `json:"z"`  // base64(gzip(JSON)) slice
}

type envelope struct {
	Part *part `json:"part,omitempty"`
}

// Encoder writes records as protocol lines.
type Encoder struct {
	w    io.Writer
	next int
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes rec as one or more lines. Each line is written with a single
// Write call so that concurrent writers to a terminal do not split it.
func (e *Encoder) Encode(rec *Record) error {
	lines, err := e.lines(rec)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := io.WriteString(e.w, l); err != nil {
			return fmt.Errorf("proto: write: %w", err)
		}
	}
	return nil
}

func (e *Encoder) lines(rec *Record) ([]string, error) {
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("proto: marshal: %w", err)
	}
	if len(js) <= MaxLine {
		return []string{Prefix + string(js) + "\n"}, nil
	}
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestCompression)
	if _, err := zw.Write(js); err != nil {
		return nil, fmt.Errorf("proto: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("proto: gzip: %w", err)
	}
	z := base64.StdEncoding.EncodeToString(zb.Bytes())
	e.next++
	id := e.next
	n := (len(z) + MaxLine - 1) / MaxLine
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		end := min((i+1)*MaxLine, len(z))
		pj, err := json.Marshal(envelope{Part: &part{ID: id, I: i, N: n, Z: z[i*MaxLine : end]}})
		if err != nil {
			return nil, fmt.Errorf("proto: marshal part: %w", err)
		}
		out = append(out, Prefix+string(pj)+"\n")
	}
	return out, nil
}

// ErrBadLine is wrapped by the errors Decoder.Feed returns for protocol lines
// that do not decode.
var ErrBadLine = errors.New("proto: bad protocol line")

// MaxRecord bounds the decompressed size of one record (and the number of
// parts a decoder accepts), so a corrupted header cannot make the host
// allocate without limit.
const MaxRecord = 256 << 20

// Decoder turns protocol lines back into records.
type Decoder struct {
	boot    int
	pending map[int]*assembly
}

type assembly struct {
	n     int
	have  int
	parts []string
}

// Feed takes one line of guest output (with or without its line ending).
// It returns a record when the line completes one, nil when the line is not
// a protocol line or only a part of a record, and an error wrapping
// ErrBadLine when the line is malformed.
func (d *Decoder) Feed(line string) (*Record, error) {
	line = strings.TrimRight(line, "\r\n")
	i := strings.Index(line, Prefix+"{")
	if i < 0 {
		return nil, nil
	}
	js := line[i+len(Prefix):]
	var probe struct {
		Part *part  `json:"part"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(js), &probe); err != nil {
		return nil, fmt.Errorf("%w: %v: %.80q", ErrBadLine, err, js)
	}
	if probe.Part != nil {
		return d.feedPart(probe.Part)
	}
	return d.finish([]byte(js))
}

func (d *Decoder) feedPart(p *part) (*Record, error) {
	if p.N <= 0 || p.N > MaxRecord/MaxLine || p.I < 0 || p.I >= p.N {
		return nil, fmt.Errorf("%w: part %d of %d", ErrBadLine, p.I, p.N)
	}
	if d.pending == nil {
		d.pending = make(map[int]*assembly)
	}
	a := d.pending[p.ID]
	if a == nil {
		a = &assembly{n: p.N, parts: make([]string, p.N)}
		d.pending[p.ID] = a
	}
	if a.n != p.N {
		return nil, fmt.Errorf("%w: record %d: part count changed from %d to %d", ErrBadLine, p.ID, a.n, p.N)
	}
	if a.parts[p.I] != "" {
		return nil, fmt.Errorf("%w: record %d: duplicate part %d", ErrBadLine, p.ID, p.I)
	}
	a.parts[p.I] = p.Z
	a.have++
	if a.have < a.n {
		return nil, nil
	}
	delete(d.pending, p.ID)
	z, err := base64.StdEncoding.DecodeString(strings.Join(a.parts, ""))
	if err != nil {
		return nil, fmt.Errorf("%w: record %d: base64: %v", ErrBadLine, p.ID, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("%w: record %d: gzip: %v", ErrBadLine, p.ID, err)
	}
	js, err := io.ReadAll(io.LimitReader(zr, MaxRecord+1))
	if err != nil {
		return nil, fmt.Errorf("%w: record %d: gzip: %v", ErrBadLine, p.ID, err)
	}
	if len(js) > MaxRecord {
		return nil, fmt.Errorf("%w: record %d larger than %d bytes", ErrBadLine, p.ID, MaxRecord)
	}
	return d.finish(js)
}

func (d *Decoder) finish(js []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(js, &r); err != nil {
		return nil, fmt.Errorf("%w: record: %v", ErrBadLine, err)
	}
	if r.Type == "" {
		return nil, fmt.Errorf("%w: record without type", ErrBadLine)
	}
	if r.Type == TypeBoot {
		d.boot++
		// Part ids restart with every agent; drop leftovers of a boot
		// that ended mid-record.
		d.pending = nil
	}
	r.Boot = d.boot
	return &r, nil
}

// Incomplete reports how many records have parts outstanding.
func (d *Decoder) Incomplete() int { return len(d.pending) }
