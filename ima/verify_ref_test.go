package ima

// verifyReference is Verify as it was before the chunked, parallel
// implementation (commit a84c2e9): one goroutine per bank, hash.Hash
// digests. Tests compare the two on lists that span many chunks.

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"sync"
)

// bankRun is one bank replayed with one method while tracking, after each
// entry, whether every checked PCR equals its quoted value.
type refBankRun struct {
	method  Method
	matches []bool // matches[k]: prefix of k entries reproduces the quote
	final   map[uint32][]byte
}

func refRunBank(entries []Entry, bank crypto.Hash, method Method, check map[uint32][]byte, sha1s [][20]byte) refBankRun {
	x := newExtender(bank, method, sha1s)
	st := newPCRState(bank.Size())
	mism := 0
	for p, q := range check {
		if !bytes.Equal(st.get(p), q) {
			mism++
		}
	}
	r := refBankRun{method: method, matches: make([]bool, len(entries)+1)}
	r.matches[0] = mism == 0
	for i := range entries {
		e := &entries[i]
		q, ok := check[e.PCR]
		if ok {
			old := st.get(e.PCR)
			was := bytes.Equal(old, q)
			nv := x.extend(old, x.digest(i, e))
			st.set(e.PCR, nv)
			now := bytes.Equal(nv, q)
			if was && !now {
				mism++
			} else if !was && now {
				mism--
			}
		}
		r.matches[i+1] = mism == 0
	}
	r.final = st.values()
	return r
}

// Verify finds the longest prefix of entries that reproduces every quoted
// PCR the list uses, in every quoted bank. Each bank is replayed with its own
// hash first; the padded SHA-1 method is tried for a bank only when its own
// hash reproduces no non-empty prefix (a kernel uses one method per bank, and
// the methods coincide only on violations). Banks replay in parallel. Quoted PCRs the list never extends (firmware PCRs) are not compared.
// The result is consistent when that prefix holds at least one entry (or the
// list is empty), every quoted bank checks at least one PCR, and no entry in
// the prefix carries a stored SHA-1 digest that differs from its data.
func verifyReference(entries []Entry, quoted PCRValues) VerifyResult {
	res := VerifyResult{Entries: len(entries), Prefix: -1}
	if len(quoted) == 0 {
		res.Problems = append(res.Problems, "no quoted PCR values")
		return res
	}
	used := usedPCRs(entries)
	banks := make([]crypto.Hash, 0, len(quoted))
	for b := range quoted {
		banks = append(banks, b)
	}
	slices.SortFunc(banks, func(a, b crypto.Hash) int { return cmp.Or(bankSize(a)-bankSize(b), int(a)-int(b)) })

	// SHA-1 template digests serve the SHA-1 bank, every padded method and
	// the stored-digest check; they are computed once, while the other banks
	// replay their own hashes.
	sha1s := make([][20]byte, len(entries))
	sha1Done := make(chan struct{})
	var mismatches []int
	go func() {
		defer close(sha1Done)
		h := sha1.New()
		for i := range entries {
			e := &entries[i]
			if e.Violation() {
				continue
			}
			h.Reset()
			writeTemplateInput(h, e)
			h.Sum(sha1s[i][:0])
			if sha1s[i] != e.TemplateDigest {
				mismatches = append(mismatches, i)
			}
		}
	}()

	type job struct {
		bank  crypto.Hash
		check map[uint32][]byte
		runs  []refBankRun
	}
	jobs := make([]*job, len(banks))
	var wg sync.WaitGroup
	for bi, b := range banks {
		j := &job{bank: b, check: map[uint32][]byte{}}
		jobs[bi] = j
		br := BankResult{Bank: HashName(b), Hash: b, OwnPrefix: -1, Quoted: map[uint32]string{}}
		if err := checkBank(b); err != nil {
			res.Problems = append(res.Problems, err.Error())
			res.Banks = append(res.Banks, br)
			continue
		}
		for _, p := range used {
			q, ok := quoted[b][p]
			if !ok {
				br.Unverified = append(br.Unverified, p)
				continue
			}
			if len(q) != b.Size() {
				res.Problems = append(res.Problems, "bank "+br.Bank+": PCR value of wrong size")
				continue
			}
			j.check[p] = q
			br.PCRs = append(br.PCRs, p)
			br.Quoted[p] = hex.EncodeToString(q)
		}
		res.Banks = append(res.Banks, br)
		if len(j.check) == 0 {
			res.Problems = append(res.Problems, "bank "+br.Bank+": quotes none of the PCRs the list uses")
			continue
		}
		// Phase 1: every bank with its own hash.
		j.runs = make([]refBankRun, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b == crypto.SHA1 {
				<-sha1Done
			}
			j.runs[0] = refRunBank(entries, b, MethodPerBank, j.check, sha1s)
		}()
	}
	wg.Wait()
	<-sha1Done
	res.DigestMismatches = mismatches

	// Phase 2: the padded SHA-1 method, only for banks whose own hash
	// reproduces no non-empty prefix. A kernel uses one method per bank, and
	// the two methods yield the same digests only for violations, so a bank
	// that matches with its own hash somewhere cannot match longer padded.
	for _, j := range jobs {
		if len(j.runs) != 1 || j.bank == crypto.SHA1 || slices.Contains(j.runs[0].matches[1:], true) {
			continue
		}
		j.runs = append(j.runs, refBankRun{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.runs[1] = refRunBank(entries, j.bank, MethodSHA1Padded, j.check, sha1s)
		}()
	}
	wg.Wait()

	for bi, j := range jobs {
		br := &res.Banks[bi]
		if len(j.runs) == 0 {
			continue
		}
		br.Replayed = hexMap(j.runs[0].final)
		if len(j.runs) > 1 {
			br.ReplayedP = hexMap(j.runs[1].final)
		}
		for k := len(entries); k >= 0; k-- {
			for _, r := range j.runs {
				if r.matches[k] {
					br.OwnPrefix = k
					m := r.method
					br.OwnMethod = &m
					break
				}
			}
			if br.OwnPrefix >= 0 {
				break
			}
		}
	}

	if len(res.Problems) == 0 {
		for k := len(entries); k >= 0 && res.Prefix < 0; k-- {
			all := true
			for _, j := range jobs {
				any := false
				for _, r := range j.runs {
					any = any || r.matches[k]
				}
				if !any {
					all = false
					break
				}
			}
			if all {
				res.Prefix = k
			}
		}
	}
	if res.Prefix >= 0 {
		for bi, j := range jobs {
			br := &res.Banks[bi]
			for _, r := range j.runs {
				if r.matches[res.Prefix] {
					br.Methods = append(br.Methods, r.method)
				}
			}
			if len(br.Methods) > 0 {
				m := br.Methods[0]
				br.Method = &m
			}
		}
	}
	res.Consistent = len(res.Problems) == 0 && res.Prefix >= 0 && (res.Prefix > 0 || len(entries) == 0)
	if res.Prefix == 0 && len(entries) > 0 {
		res.Problems = append(res.Problems, "only the empty prefix matches the quoted PCRs")
	}
	for _, i := range res.DigestMismatches {
		if i < res.Prefix {
			res.Consistent = false
			res.Problems = append(res.Problems, "an entry in the matched prefix has a stored template digest that differs from its data")
			break
		}
	}
	return res
}
