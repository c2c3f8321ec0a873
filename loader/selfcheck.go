package loader

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/gokexec/gokexec/ima"
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
// es reproduces the quoted PCRs. One pass tries each bank's uniform
// methods together (its own hash, and SHA-1 padded for banks other than
// SHA-1) — one hash of each entry per bank, the replay's floor; only a
// bank that neither reproduces (a list carried across kernels that hashed
// it differently) is searched for a method per boot.
func planBanks(es []ima.Entry, quoted ima.PCRValues) ([]bankPlan, error) {
	var banks []crypto.Hash
	for b := range quoted {
		banks = append(banks, b)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	var runs []ima.BankMethod
	for _, b := range banks {
		runs = append(runs, ima.BankMethod{Bank: b, Method: ima.MethodPerBank})
		if b != crypto.SHA1 {
			runs = append(runs, ima.BankMethod{Bank: b, Method: ima.MethodSHA1Padded})
		}
	}
	got := ima.ReplayAll(es, runs)
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
			return nil, fmt.Errorf("%w: bank %s: no choice of extend method per boot reproduces the quoted PCRs over %d entries and %d boots",
				ErrSelfCheck, ima.HashName(b), len(es), boots)
		}
		out = append(out, bankPlan{b, ms})
	}
	return out, nil
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
