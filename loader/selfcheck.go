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
// es reproduces the quoted PCRs.
func planBanks(es []ima.Entry, quoted ima.PCRValues) ([]bankPlan, error) {
	var banks []crypto.Hash
	for b := range quoted {
		banks = append(banks, b)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	var out []bankPlan
	for _, b := range banks {
		ms, ok := ima.BootMethods(es, binary.LittleEndian, b, quoted[b])
		if !ok {
			return nil, fmt.Errorf("%w: bank %s: no choice of extend method per boot reproduces the quoted PCRs over %d entries and %d boots",
				ErrSelfCheck, ima.HashName(b), len(es), len(ima.BootStarts(es, binary.LittleEndian)))
		}
		out = append(out, bankPlan{b, ms})
	}
	return out, nil
}

// current returns the running kernel's method for each bank.
func current(plans []bankPlan) map[crypto.Hash]ima.Method {
	out := map[crypto.Hash]ima.Method{}
	for _, p := range plans {
		out[p.bank] = p.methods[len(p.methods)-1]
	}
	return out
}

// replaysWith checks es (the same boots the plans were made for, with more
// entries in the last) against quoted.
func replaysWith(es []ima.Entry, quoted ima.PCRValues, plans []bankPlan) bool {
	for _, p := range plans {
		got := ima.ReplayBootMethods(es, binary.LittleEndian, p.bank, p.methods)
		if got == nil {
			return false
		}
		for pcr, v := range got {
			if q, ok := quoted[p.bank][pcr]; !ok || !bytes.Equal(q, v) {
				return false
			}
		}
	}
	return true
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
