package loader

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/plan"
)

// The self-check must accept a log that crossed kernels hashing a bank
// differently (Debian 6.1 extends sha384 SHA-1-padded, 6.12 with sha384):
// each bank gets a method per boot (ima.BootMethods), and the loader's own
// entries are extended with the running kernel's, the last boot's, method.

// bankPlan is how one bank replays: a method per boot.
type bankPlan struct {
	bank    crypto.Hash
	methods []ima.Method
}

// planBanks finds, for every quoted bank, methods with which the whole of
// es reproduces the quoted PCRs, and checks es for the hand-over. One pass
// replays every bank with its own hash (what kernels do for the banks
// whose hash they have) and, with the SHA-1 digests it computes, checks
// that a restoring kernel restores every entry unchanged and encodes the
// list (ima.ReplayKexec): each entry's template data is hashed once per
// bank, the replay's floor. Only a bank that does not reproduce is
// replayed again SHA-1 padded (a kernel without that hash), and only one
// that neither reproduces (a list carried across kernels that hashed it
// differently) is searched for a method per boot.
//
// list, if not nil, is the binary list es were parsed from: the hand-over
// takes its bytes rather than encoding es again.
func planBanks(es []ima.Entry, quoted ima.PCRValues, list []byte) ([]bankPlan, *ima.KexecList, error) {
	var banks []crypto.Hash
	for b := range quoted {
		banks = append(banks, b)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	var runs []ima.BankMethod
	for _, b := range banks {
		runs = append(runs, ima.BankMethod{Bank: b, Method: ima.MethodPerBank})
	}
	got, kl, err := ima.ReplayKexec(list, es, binary.LittleEndian, runs)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", plan.ErrIMAList, err)
	}
	var padded []ima.BankMethod
	for i, b := range banks {
		if b != crypto.SHA1 && !reproduces(got[i], quoted[b]) {
			padded = append(padded, ima.BankMethod{Bank: b, Method: ima.MethodSHA1Padded})
		}
	}
	if len(padded) > 0 {
		runs = append(runs, padded...)
		got = append(got, ima.ReplayAll(es, padded)...)
	}
	boots := len(ima.BootStarts(es, binary.LittleEndian))
	var out []bankPlan
	for _, b := range banks {
		found := false
		for i, r := range runs {
			if r.Bank != b || !reproduces(got[i], quoted[b]) {
				continue
			}
			ms := make([]ima.Method, max(boots, 1))
			for j := range ms {
				ms[j] = r.Method
			}
			out, found = append(out, bankPlan{b, ms}), true
			break
		}
		if found {
			continue
		}
		ms, ok := ima.BootMethods(es, binary.LittleEndian, b, quoted[b])
		if !ok {
			return nil, nil, fmt.Errorf("%w: bank %s: no choice of extend method per boot reproduces the quoted PCRs over %d entries and %d boots",
				ErrSelfCheck, ima.HashName(b), len(es), boots)
		}
		out = append(out, bankPlan{b, ms})
	}
	return out, kl, nil
}

// reproduces reports whether every PCR a replay gave is quoted with that
// value.
func reproduces(got, quoted map[uint32][]byte) bool {
	if got == nil {
		return false
	}
	for p, v := range got {
		if q, ok := quoted[p]; !ok || !bytes.Equal(q, v) {
			return false
		}
	}
	return true
}

// current returns the running kernel's method for each bank.
func current(plans []bankPlan) map[crypto.Hash]ima.Method {
	out := map[crypto.Hash]ima.Method{}
	for _, p := range plans {
		out[p.bank] = p.methods[len(p.methods)-1]
	}
	return out
}

func describePlans(plans []bankPlan) []string {
	var out []string
	for _, p := range plans {
		names := make([]string, len(p.methods))
		for i, m := range p.methods {
			names[i] = m.String()
		}
		out = append(out, ima.HashName(p.bank)+":"+strings.Join(names, ","))
	}
	return out
}
