package verdict

import (
	"errors"
	"testing"
)

func TestParseManifest(t *testing.T) {
	good := `{"schema":"gokexec/imalog-manifest/1","machines":[{"name":"a","list":"a/l","pcrs":["sha256,a/p"],"ak_restricted":true}]}`
	m, err := ParseManifest([]byte(good))
	if err != nil || len(m.Machines) != 1 || !m.Machines[0].AKRestricted {
		t.Fatalf("%v %+v", err, m)
	}
	for _, bad := range []string{
		`{"schema":"gokexec/imalog-manifest/2","machines":[]}`,
		`{"schema":"gokexec/imalog-manifest/1","machines":[{"name":"a"}]}`,
		`{"schema":"gokexec/imalog-manifest/1","machines":[{"name":"a","list":"x"},{"name":"a","list":"y"}]}`,
		`{"schema":"gokexec/imalog-manifest/1","machines":[],"extra":1}`,
		`{"schema":"gokexec/imalog-manifest/1","machines":[{"name":"a","list":"x","surprise":true}]}`,
		`not json`,
	} {
		if _, err := ParseManifest([]byte(bad)); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
