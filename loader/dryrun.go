package loader

import (
	"crypto"
	"fmt"
	"github.com/gokexec/gokexec/kexec"
	"strings"
)

// DryRun is a Host that reads every fact from the Host it wraps and acts
// on nothing: kexec_load, kexec_file_load, unload, reboot and mounting
// securityfs are recorded in Acts, never made. The TPM's PCRs are read
// from the wrapped host's TPM, but extends are recorded and applied to
// the values read only in memory, so a dry finalize runs its self-check
// exactly as a real one would and leaves the TPM as it was.
//
// Run Load, Finalize, Exec, Unload, LoadCrash and UnloadCrash over a
// DryRun to see what they would do; a Loaded's State must then not be
// saved (nothing was loaded).
type DryRun struct {
	Host
	// Acts are what would have been done, in order.
	Acts []Act
	// loaded and crash overlay the kernel's kexec_loaded state after a
	// recorded load or unload.
	loaded, crash *bool
}

// Act is one recorded act.
type Act struct {
	Op     string // kexec_load, kexec_file_load, unload, reboot, mount, TPM2_PCR_Extend
	Detail string
}

func (a Act) String() string { return a.Op + ": " + a.Detail }

// NewDryRun wraps h.
func NewDryRun(h Host) *DryRun { return &DryRun{Host: h} }

// isDryRun says whether h records its acts instead of making them.
func isDryRun(h Host) bool {
	_, ok := h.(*DryRun)
	return ok
}

func (d *DryRun) record(op, format string, args ...any) {
	d.Acts = append(d.Acts, Act{Op: op, Detail: fmt.Sprintf(format, args...)})
}

func (d *DryRun) setLoaded(crash, v bool) {
	if crash {
		d.crash = &v
	} else {
		d.loaded = &v
	}
}

// KexecLoaded answers from the recorded acts, else from the wrapped host.
func (d *DryRun) KexecLoaded(crash bool) (bool, error) {
	if p := d.loaded; !crash && p != nil {
		return *p, nil
	}
	if p := d.crash; crash && p != nil {
		return *p, nil
	}
	return d.Host.KexecLoaded(crash)
}

// KexecLoad records the request.
func (d *DryRun) KexecLoad(r LoadRequest) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s entry %#x", r.Arch, r.Entry)
	if r.Crash {
		b.WriteString(" (crash kernel)")
	}
	for _, s := range r.Segments {
		fmt.Fprintf(&b, "; %s mem %#x memsz %#x bufsz %#x", s.Name, s.Mem, s.Memsz, len(s.Buf))
	}
	d.record("kexec_load", "%s", b.String())
	d.setLoaded(r.Crash, true)
	return nil
}

// KexecFileLoad records the request.
func (d *DryRun) KexecFileLoad(r FileLoadRequest) error {
	desc := func(in kexec.FileInput) string {
		if in.Sealed || in.Path == "" {
			return fmt.Sprintf("%s (%d bytes, as a sealed memfd)", in.Name, len(in.Data))
		}
		return fmt.Sprintf("%s (%d bytes, the file if unchanged)", in.Path, len(in.Data))
	}
	s := "kernel " + desc(r.Kernel)
	if r.Initrd != nil {
		s += ", initrd " + desc(*r.Initrd)
	}
	s += fmt.Sprintf(", command line %q", r.Cmdline)
	if r.Crash {
		s += " (crash kernel)"
	}
	d.record("kexec_file_load", "%s", s)
	d.setLoaded(r.Crash, true)
	return nil
}

// Unload records the unload.
func (d *DryRun) Unload(crash bool) error {
	what := "the loaded kernel"
	if crash {
		what = "the crash kernel"
	}
	d.record("unload", "%s", what)
	d.setLoaded(crash, false)
	return nil
}

// Reboot records the reboot (and returns nil, which a real one never does).
func (d *DryRun) Reboot() error {
	d.record("reboot", "into the loaded kernel (reboot(LINUX_REBOOT_CMD_KEXEC))")
	return nil
}

// MountSecurityfs records the mount.
func (d *DryRun) MountSecurityfs() error {
	d.record("mount", "securityfs at /sys/kernel/security")
	return nil
}

// OpenTPM opens the wrapped host's TPM for reading; extends are recorded
// and simulated.
func (d *DryRun) OpenTPM() (TPM, string, error) {
	t, dev, err := d.Host.OpenTPM()
	if err != nil || t == nil {
		return t, dev, err
	}
	return &simTPM{under: t, d: d, ext: map[uint32][]map[crypto.Hash][]byte{}}, dev, nil
}

// simTPM reads a real TPM and keeps extends in memory.
type simTPM struct {
	under TPM
	d     *DryRun
	ext   map[uint32][]map[crypto.Hash][]byte
}

func (s *simTPM) ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error) {
	v, err := s.under.ReadPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	for _, pcr := range pcrs {
		for _, ds := range s.ext[pcr] {
			for bank, vals := range v {
				cur, ok := vals[pcr]
				if !ok || ds[bank] == nil {
					continue
				}
				h := bank.New()
				h.Write(cur)
				h.Write(ds[bank])
				vals[pcr] = h.Sum(nil)
			}
		}
	}
	return v, nil
}

func (s *simTPM) Extend(pcr uint32, digests map[crypto.Hash][]byte) error {
	s.ext[pcr] = append(s.ext[pcr], digests)
	s.d.record("TPM2_PCR_Extend", "PCR %d in %d banks", pcr, len(digests))
	return nil
}

func (s *simTPM) Close() error { return s.under.Close() }
