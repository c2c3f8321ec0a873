package sha256ni

import (
	"crypto/sha256"
	"math/big"
	"math/rand/v2"
	"testing"
)

// The round constants are the first 32 bits of the fractional parts of
// the cube roots of the first 64 primes: floor(cbrt(p * 2^96)) mod 2^32,
// by integer cube root.
func TestRoundConstants(t *testing.T) {
	var primes []int64
	for n := int64(2); len(primes) < len(k); n++ {
		prime := true
		for _, q := range primes {
			if n%q == 0 {
				prime = false
				break
			}
		}
		if prime {
			primes = append(primes, n)
		}
	}
	for i, p := range primes {
		x := new(big.Int).Lsh(big.NewInt(p), 96)
		lo, hi := big.NewInt(0), new(big.Int).Lsh(big.NewInt(1), 40)
		// Largest r with r^3 <= x, by bisection.
		for new(big.Int).Sub(hi, lo).Cmp(big.NewInt(1)) > 0 {
			mid := new(big.Int).Add(lo, hi)
			mid.Rsh(mid, 1)
			if new(big.Int).Exp(mid, big.NewInt(3), nil).Cmp(x) <= 0 {
				lo = mid
			} else {
				hi = mid
			}
		}
		if want := uint32(lo.Uint64()); k[i] != want {
			t.Errorf("k[%d] = %#08x, want %#08x", i, k[i], want)
		}
	}
}

func TestAccelerated(t *testing.T) {
	t.Logf("SHA extensions in use: %v", Accelerated())
}

// Every length up to five blocks, and random long ones, against
// crypto/sha256, with the SHA extensions and without.
func TestSum256MatchesStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<16)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	lengths := make([]int, 0, 400)
	for n := 0; n <= 5*64+1; n++ {
		lengths = append(lengths, n)
	}
	for range 50 {
		lengths = append(lengths, rng.IntN(len(buf)))
	}
	lengths = append(lengths, len(buf))
	for _, accel := range []bool{true, false} {
		if accel && !Accelerated() {
			continue
		}
		t.Run(map[bool]string{true: "shani", false: "generic"}[accel], func(t *testing.T) {
			defer func(u bool) { setAccelerated(u) }(Accelerated())
			setAccelerated(accel)
			for _, n := range lengths {
				// Unaligned starts as well.
				for _, off := range []int{0, 1, 7} {
					if off+n > len(buf) {
						continue
					}
					p := buf[off : off+n]
					if got, want := Sum256(p), sha256.Sum256(p); got != want {
						t.Fatalf("length %d at offset %d: %x, want %x", n, off, got, want)
					}
				}
			}
		})
	}
}

// Sum256x2 equals two Sum256 for every pair of lengths up to three blocks
// (alike and not), with the SHA extensions and without.
func TestSum256x2(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 512)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for _, accel := range []bool{true, false} {
		if accel && !Accelerated() {
			continue
		}
		func() {
			defer func(u bool) { setAccelerated(u) }(Accelerated())
			setAccelerated(accel)
			for na := 0; na <= 3*64; na++ {
				for nb := 0; nb <= 3*64; nb++ {
					a, b := buf[:na], buf[256+3:256+3+nb]
					da, db := Sum256x2(a, b)
					if da != sha256.Sum256(a) || db != sha256.Sum256(b) {
						t.Fatalf("accelerated %v, lengths %d and %d: wrong digest", accel, na, nb)
					}
				}
			}
		}()
	}
}

// Known answers (FIPS 180-2 appendix B examples).
func TestSum256KnownAnswers(t *testing.T) {
	for in, want := range map[string]string{
		"":    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
	} {
		got := Sum256([]byte(in))
		if h := hexString(got[:]); h != want {
			t.Errorf("%q: %s, want %s", in, h, want)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func FuzzSum256x2(f *testing.F) {
	f.Add([]byte("abc"), []byte("abd"))
	f.Add(make([]byte, 104), make([]byte, 100))
	f.Add(make([]byte, 64), make([]byte, 200))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		da, db := Sum256x2(a, b)
		if da != sha256.Sum256(a) || db != sha256.Sum256(b) {
			t.Fatalf("lengths %d and %d: wrong digest", len(a), len(b))
		}
	})
}

func FuzzSum256(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("abc"))
	f.Add(make([]byte, 55))
	f.Add(make([]byte, 56))
	f.Add(make([]byte, 119))
	f.Add(make([]byte, 120))
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := Sum256(p), sha256.Sum256(p); got != want {
			t.Fatalf("length %d: %x, want %x", len(p), got, want)
		}
	})
}

var sink [Size]byte

func benchSum(b *testing.B, n int, f func([]byte) [Size]byte) {
	p := make([]byte, n)
	b.SetBytes(int64(n))
	for b.Loop() {
		sink = f(p)
	}
}

func BenchmarkSum256(b *testing.B) {
	for _, n := range []int{40, 64, 104, 200, 4096} {
		b.Run(itoa(n)+"/sha256ni", func(b *testing.B) { benchSum(b, n, Sum256) })
		b.Run(itoa(n)+"/crypto", func(b *testing.B) { benchSum(b, n, sha256.Sum256) })
	}
}

func BenchmarkSum256x2(b *testing.B) {
	for _, n := range []int{64, 104, 200} {
		pa, pb := make([]byte, n), make([]byte, n)
		b.Run(itoa(n)+"/x2", func(b *testing.B) {
			b.SetBytes(int64(2 * n))
			for b.Loop() {
				sink, sink = Sum256x2(pa, pb)
			}
		})
		b.Run(itoa(n)+"/two", func(b *testing.B) {
			b.SetBytes(int64(2 * n))
			for b.Loop() {
				sink = Sum256(pa)
				sink = Sum256(pb)
			}
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
