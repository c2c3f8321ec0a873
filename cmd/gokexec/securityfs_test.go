package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Finding (issue 24, left open) "a dry run on a host whose securityfs is
// unmounted records the mount and then cannot read the list", at the
// command: gokexec -l --dry-run does not mount, says it would mount and
// read the list, plans the rest and marks the hand-over's size as an
// estimate; the same line without --dry-run mounts, says so and reads.
func TestDryRunSecurityfsUnmounted(t *testing.T) {
	k := kernelFile(t)
	m := newFakeMachine(t)
	m.h.List = []byte{}
	m.h.Unmounted = true
	code, out, errs := m.run("-l", k, "--dry-run")
	if code != 0 || m.h.Mounts != 0 || m.trace().acted() {
		t.Fatalf("dry run: exit %d, %d mounts, %s\n%s%s", code, m.h.Mounts, m.trace(), out, errs)
	}
	if all := out + errs; !strings.Contains(all, "would mount it at /sys/kernel/security") || !strings.Contains(all, "an estimate: the running kernel's list was not read") {
		t.Fatalf("the dry run does not say it would mount securityfs and read the list:\n%s%s", out, errs)
	}
	code, out, errs = m.run("-l", k, "--dry-run", "--json")
	var p struct {
		IMA *struct {
			ListUnread bool `json:"list_unread"`
		} `json:"ima"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.IMA == nil || !p.IMA.ListUnread || m.h.Mounts != 0 {
		t.Fatalf("dry run --json: exit %d, ima %+v, %d mounts\n%s%s", code, p.IMA, m.h.Mounts, out, errs)
	}
	code, out, errs = m.run("-l", k)
	if code != 0 || m.h.Mounts != 1 || !strings.Contains(errs, "mounted it at /sys/kernel/security") {
		t.Fatalf("real load: exit %d, %d mounts\n%s%s", code, m.h.Mounts, out, errs)
	}
}
