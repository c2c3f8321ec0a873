package proto

import (
	"encoding/json"
	"fmt"
)

// ScenarioPath is where the host puts the scenario inside the initramfs.
const ScenarioPath = "/scenario.json"

// Scenario is what the guest agent runs: a step per boot, selected by
// gkt.step=NAME on the kernel command line.
type Scenario struct {
	Steps map[string]Step `json:"steps"`
}

// Step is the list of actions of one boot.
type Step struct {
	// DeadlineSec bounds the whole step inside the guest: when it passes,
	// the agent reports an error and powers off. Zero means 120 s.
	DeadlineSec int      `json:"deadline_sec,omitempty"`
	Actions     []Action `json:"actions"`
}

// Action is one thing the agent does. Exactly one of the fields that name an
// action (Policy, MeasureFiles, Violation, AddKey, Report, Run, File,
// RepackInitrd, Exec, WriteFile) is set; Validate checks it.
type Action struct {
	// Policy is written, whole, to /sys/kernel/security/ima/policy.
	Policy string `json:"policy,omitempty"`
	// MeasureFiles creates that many distinct small files in Dir
	// (default /tmp/m), owned by Owner (uid and gid, default 0), and reads
	// each once.
	MeasureFiles int    `json:"measure_files,omitempty"`
	Dir          string `json:"dir,omitempty"`
	Owner        int    `json:"owner,omitempty"`
	// Violation opens a file in Dir (default /tmp/v) for writing, keeps it
	// open and reads it through a second descriptor: an IMA open-writers
	// violation if a rule measures the read. The file is owned by Owner.
	Violation bool `json:"violation,omitempty"`
	// AddKey generates a self-signed X.509 certificate and adds it to a new
	// keyring with add_key("asymmetric"), which a KEY_CHECK rule measures.
	AddKey bool `json:"add_key,omitempty"`
	// Report sends, in this order, any of "pcrs", "list" (binary list),
	// "ascii" (ASCII list), "boot".
	Report []string `json:"report,omitempty"`
	// Run runs Argv and reports a "cmd" record. With ExpectExit set, any
	// other exit status is an error that stops the step.
	Run        []string `json:"run,omitempty"`
	ExpectExit *int     `json:"expect_exit,omitempty"`
	// File reports the guest file at this path as a "file" record: its
	// first Limit bytes when Limit > 0 (for /proc/vmcore, which is as large
	// as the crashed kernel's RAM).
	File  string `json:"file,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// RepackInitrd writes a newc cpio of the running root file system
	// (without the contents of /proc, /sys, /dev, /run and /tmp) to this path.
	RepackInitrd string `json:"repack_initrd,omitempty"`
	// Exec runs a command that is expected not to return (kexec -e). If it
	// returns, the agent reports an error with its output.
	Exec []string `json:"exec,omitempty"`
	// WriteFile writes Data to this guest path (mode 0644).
	WriteFile string `json:"write_file,omitempty"`
	Data      []byte `json:"data,omitempty"`
}

// Kind names the action ("policy", "measure_files", ...), or "" if none or
// more than one is set.
func (a *Action) Kind() string {
	kinds := []struct {
		set  bool
		name string
	}{
		{a.Policy != "", "policy"},
		{a.MeasureFiles != 0, "measure_files"},
		{a.Violation, "violation"},
		{a.AddKey, "add_key"},
		{len(a.Report) > 0, "report"},
		{len(a.Run) > 0, "run"},
		{a.File != "", "file"},
		{a.RepackInitrd != "", "repack_initrd"},
		{len(a.Exec) > 0, "exec"},
		{a.WriteFile != "", "write_file"},
	}
	k := ""
	for _, c := range kinds {
		if c.set {
			if k != "" {
				return ""
			}
			k = c.name
		}
	}
	return k
}

// Validate checks that every step's actions are well formed.
func (s *Scenario) Validate() error {
	if len(s.Steps) == 0 {
		return fmt.Errorf("proto: scenario has no steps")
	}
	for name, st := range s.Steps {
		for i := range st.Actions {
			a := &st.Actions[i]
			if a.Kind() == "" {
				return fmt.Errorf("proto: step %q action %d: exactly one action field must be set", name, i)
			}
			if a.Limit < 0 || (a.Limit > 0 && a.File == "") {
				return fmt.Errorf("proto: step %q action %d: limit %d goes with file", name, i, a.Limit)
			}
			if a.MeasureFiles < 0 || a.MeasureFiles > 100000 {
				return fmt.Errorf("proto: step %q action %d: measure_files %d out of range", name, i, a.MeasureFiles)
			}
			for _, r := range a.Report {
				switch r {
				case "pcrs", "list", "ascii", "boot":
				default:
					return fmt.Errorf("proto: step %q action %d: unknown report %q", name, i, r)
				}
			}
		}
	}
	return nil
}

// ParseScenario decodes and validates a scenario.
func ParseScenario(b []byte) (*Scenario, error) {
	var s Scenario
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("proto: scenario: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
