package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gokexec/gokexec/qemu/proto"
)

// Boots returns the number of boots that reported (count of "boot" records).
func (r *Result) Boots() int {
	n := 0
	for i := range r.Records {
		if r.Records[i].Boot > n {
			n = r.Records[i].Boot
		}
	}
	return n
}

// Boot returns the records of boot n (1-based), in order.
func (r *Result) Boot(n int) []proto.Record {
	var out []proto.Record
	for _, rec := range r.Records {
		if rec.Boot == n {
			out = append(out, rec)
		}
	}
	return out
}

// Find returns the records of boot n with the given type (and, if name is
// not empty, that Name), in order.
func (r *Result) Find(n int, typ, name string) []proto.Record {
	var out []proto.Record
	for _, rec := range r.Boot(n) {
		if rec.Type == typ && (name == "" || rec.Name == name) {
			out = append(out, rec)
		}
	}
	return out
}

// BootInfo returns boot n's "boot" record, or nil.
func (r *Result) BootInfo(n int) *proto.Record {
	if b := r.Find(n, proto.TypeBoot, ""); len(b) > 0 {
		return &b[0]
	}
	return nil
}

// PCRs returns the last PCR report of boot n: bank -> 24 lowercase hex values.
func (r *Result) PCRs(n int) map[string][]string {
	p := r.Find(n, proto.TypePCRs, "")
	if len(p) == 0 {
		return nil
	}
	return p[len(p)-1].PCRs
}

// List returns the last reported list of boot n named name
// ("binary_runtime_measurements" or "ascii_runtime_measurements").
func (r *Result) List(n int, name string) []byte {
	l := r.Find(n, proto.TypeList, name)
	if len(l) == 0 {
		return nil
	}
	return l[len(l)-1].Data
}

// Done reports whether the last record is "done".
func (r *Result) Done() bool {
	return len(r.Records) > 0 && r.Records[len(r.Records)-1].Type == proto.TypeDone
}

// Errors returns the messages of all "error" records, prefixed with boot and step.
func (r *Result) Errors() []string {
	var out []string
	for _, rec := range r.Records {
		if rec.Type == proto.TypeError {
			out = append(out, fmt.Sprintf("boot %d step %q action %d: %s", rec.Boot, rec.Step, rec.Action, rec.Error))
		}
	}
	return out
}

// FormatPCRs renders 24 hex PCR values in evmctl's --pcrs format:
// "PCR-NN: xx xx ...\n" per PCR.
func FormatPCRs(vals []string) string {
	var b strings.Builder
	for i, v := range vals {
		fmt.Fprintf(&b, "PCR-%02d:", i)
		for j := 0; j+2 <= len(v); j += 2 {
			b.WriteString(" " + strings.ToUpper(v[j:j+2]))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// WriteArtifacts writes records.jsonl and, per boot, boot-N/ with
// info.txt, pcr-<bank>.txt (evmctl format), the lists and reported files;
// a second report of the same kind in one boot gets a ".2" suffix and so on.
func (r *Result) WriteArtifacts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("qemu: artifacts: %w", err)
	}
	var jl strings.Builder
	for i, rec := range r.Records {
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("qemu: artifacts: %w", err)
		}
		fmt.Fprintf(&jl, "{\"arrived_ms\":%d,\"record\":%s}\n", r.Arrived[i].Milliseconds(), b)
	}
	if err := os.WriteFile(filepath.Join(dir, "records.jsonl"), []byte(jl.String()), 0o644); err != nil {
		return fmt.Errorf("qemu: artifacts: %w", err)
	}
	seen := map[string]int{}
	write := func(boot int, name string, data []byte) error {
		bd := filepath.Join(dir, fmt.Sprintf("boot-%d", boot))
		if err := os.MkdirAll(bd, 0o755); err != nil {
			return err
		}
		key := fmt.Sprintf("%d/%s", boot, name)
		seen[key]++
		if k := seen[key]; k > 1 {
			name = fmt.Sprintf("%s.%d", name, k)
		}
		return os.WriteFile(filepath.Join(bd, name), data, 0o644)
	}
	for _, rec := range r.Records {
		var err error
		switch rec.Type {
		case proto.TypeBoot:
			err = write(rec.Boot, "info.txt", fmt.Appendf(nil, "step: %s\nrelease: %s\ncmdline: %s\n", rec.Step, rec.Release, rec.Cmdline))
		case proto.TypePCRs:
			banks := make([]string, 0, len(rec.PCRs))
			for b := range rec.PCRs {
				banks = append(banks, b)
			}
			sort.Strings(banks)
			for _, b := range banks {
				if err = write(rec.Boot, "pcr-"+b+".txt", []byte(FormatPCRs(rec.PCRs[b]))); err != nil {
					break
				}
			}
		case proto.TypeList:
			err = write(rec.Boot, filepath.Base(rec.Name), rec.Data)
		case proto.TypeFile:
			err = write(rec.Boot, "file-"+strings.ReplaceAll(strings.TrimPrefix(rec.Name, "/"), "/", "_"), rec.Data)
		case proto.TypeCmd:
			name := "cmd"
			if len(rec.Argv) > 0 {
				name = "cmd-" + filepath.Base(rec.Argv[0])
			}
			err = write(rec.Boot, name+".txt", fmt.Appendf(nil, "argv: %q\nexit: %d\n%s", rec.Argv, rec.Exit, rec.Output))
		}
		if err != nil {
			return fmt.Errorf("qemu: artifacts: %w", err)
		}
	}
	return nil
}
