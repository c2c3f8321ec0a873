package appraise

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file matches keylime exclude patterns. It implements the part of
// regular-expression syntax that Go's RE2 and Python's re agree on and that
// path patterns use:
//
//	literals, escaped punctuation (\. \/ \+ ...), \t \n \r \f \v \a \xHH
//	.  (any character but newline)   ^ $  (start and end of the path)
//	[abc] [a-z] [^...] with \d \w \s inside, \d \D \w \W \s \S (ASCII)
//	(...) (?:...)  a|b   * + ? {n} {n,} {n,m} (n, m <= 1000) and their lazy
//	forms, which match the same paths
//
// Anything else (flags, named groups, lookaround, backreferences, \b, \p{..},
// nested repetition, Python's {,n}) is refused as malformed, so a policy
// does not silently mean something other than what its author wrote. Where
// accepted syntax differs between the two, RE2's meaning holds: \d \w \s are
// ASCII (Python's are Unicode) and $ is only the end of the path (Python's
// also matches before a final newline). Matching is a Thompson NFA
// simulation over runes: time linear in path length times pattern size, no
// backtracking. Go's regexp package is not used because it links the Unicode
// tables and costs the static loader about 250 KB, 6% of it (DESIGN.md
// section 7 caps the size); the tests compare this matcher with regexp.

var errPattern = errors.New("unsupported or invalid pattern")

const (
	maxRepeat    = 1000  // RE2's bound on {n,m}
	maxPatternOp = 20000 // bound on compiled instructions
)

type opcode uint8

const (
	opClass opcode = iota // consume one rune in ranges (negated if neg)
	opSplit               // continue at x and y
	opJmp                 // continue at x
	opBegin               // assert start of input
	opEnd                 // assert end of input
	opMatch
)

type inst struct {
	op     opcode
	x, y   int
	ranges []rune // pairs lo, hi (inclusive)
	neg    bool
}

// pattern is a compiled exclude, matched at the start of a path.
type pattern struct {
	src  string
	prog []inst
	// prefix is the literal text every match starts with, the runes of
	// prog[:start]: matching checks it with strings.HasPrefix and runs the
	// NFA from start.
	prefix string
	start  int
}

func (p *pattern) String() string { return p.src }

// node is the parse tree.
type node struct {
	kind     byte // 'c' class, 'e' empty, '.' cat, '|' alt, 'r' repeat, '^', '$'
	ranges   []rune
	neg      bool
	subs     []*node
	min, max int  // repeat; max -1 = unbounded
	counted  bool // repeat written {n,m}
}

type parser struct {
	s   string
	pos int
}

func compilePattern(src string) (*pattern, error) {
	if !utf8.ValidString(src) {
		return nil, fmt.Errorf("%w: %q: %w: invalid UTF-8", ErrMalformed, src, errPattern)
	}
	p := &parser{s: src}
	n, err := p.alt(0)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrMalformed, src, err)
	}
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("%w: %q: unexpected ) at offset %d", ErrMalformed, src, p.pos)
	}
	c := &compiler{}
	c.emit(n)
	if c.err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrMalformed, src, c.err)
	}
	c.prog = append(c.prog, inst{op: opMatch})
	pat := &pattern{src: src, prog: c.prog}
	pat.literalPrefix()
	return pat, nil
}

// literalPrefix finds the leading single-rune instructions that no jump
// targets (the compiler never jumps backwards into its first atoms, but
// this is checked rather than assumed).
func (p *pattern) literalPrefix() {
	k := 0
	var b []byte
	for ; k < len(p.prog); k++ {
		in := &p.prog[k]
		if in.op != opClass || in.neg || len(in.ranges) != 2 || in.ranges[0] != in.ranges[1] || in.ranges[0] == utf8.RuneError {
			break
		}
		b = utf8.AppendRune(b, in.ranges[0])
	}
	for i := range p.prog {
		if in := &p.prog[i]; (in.op == opSplit || in.op == opJmp) && (in.x < k || (in.op == opSplit && in.y < k)) {
			return
		}
	}
	p.prefix, p.start = string(b), k
}

func (p *parser) fail(format string, a ...any) error {
	return fmt.Errorf("%w: "+format+" at offset %d", append([]any{errPattern}, append(a, p.pos)...)...)
}

func (p *parser) alt(depth int) (*node, error) {
	if depth > 100 {
		return nil, p.fail("groups nested too deeply")
	}
	var alts []*node
	for {
		c, err := p.concat(depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, c)
		if p.pos < len(p.s) && p.s[p.pos] == '|' {
			p.pos++
			continue
		}
		break
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &node{kind: '|', subs: alts}, nil
}

func (p *parser) concat(depth int) (*node, error) {
	var items []*node
	for p.pos < len(p.s) && p.s[p.pos] != '|' && p.s[p.pos] != ')' {
		a, err := p.atom(depth)
		if err != nil {
			return nil, err
		}
		a, err = p.quantifiers(a)
		if err != nil {
			return nil, err
		}
		items = append(items, a)
	}
	switch len(items) {
	case 0:
		return &node{kind: 'e'}, nil
	case 1:
		return items[0], nil
	}
	return &node{kind: '.', subs: items}, nil
}

// quantifiers applies at most one repetition operator (plus its lazy '?').
func (p *parser) quantifiers(a *node) (*node, error) {
	if p.pos >= len(p.s) {
		return a, nil
	}
	min, max, counted := 0, 0, false
	switch p.s[p.pos] {
	case '*':
		min, max = 0, -1
		p.pos++
	case '+':
		min, max = 1, -1
		p.pos++
	case '?':
		min, max = 0, 1
		p.pos++
	case '{':
		lo, hi, n, ok := parseBraces(p.s[p.pos:])
		if !ok {
			if pythonOnlyBraces(p.s[p.pos:]) {
				return nil, p.fail("{,n} (a repetition in Python, a literal in RE2)")
			}
			return a, nil // a literal '{', as in RE2 and Python
		}
		if lo > maxRepeat || hi > maxRepeat || (hi >= 0 && hi < lo) {
			return nil, p.fail("bad repetition {%d,%d}", lo, hi)
		}
		min, max, counted = lo, hi, true
		p.pos += n
	default:
		return a, nil
	}
	if p.pos < len(p.s) && p.s[p.pos] == '?' {
		p.pos++ // lazy: same set of matching paths
	}
	if p.pos < len(p.s) {
		switch c := p.s[p.pos]; c {
		case '*', '+', '?':
			return nil, p.fail("nested repetition")
		case '{':
			if _, _, _, ok := parseBraces(p.s[p.pos:]); ok {
				return nil, p.fail("nested repetition")
			}
		}
	}
	r := &node{kind: 'r', subs: []*node{a}, min: min, max: max, counted: counted}
	if counted && (min >= 2 || max >= 2) && !repeatFits(r, maxRepeat) {
		return nil, p.fail("nested repetition counts exceed %d", maxRepeat)
	}
	return r, nil
}

// repeatFits applies RE2's bound on nested counted repetition: the product
// of the counts ({n,m} counts m, {n,} counts n) along any path is at most n.
func repeatFits(x *node, n int) bool {
	if x.kind == 'r' && x.counted {
		m := x.max
		if m == 0 {
			return true
		}
		if m < 0 {
			m = x.min
		}
		if m > n {
			return false
		}
		if m > 0 {
			n /= m
		}
	}
	for _, s := range x.subs {
		if !repeatFits(s, n) {
			return false
		}
	}
	return true
}

// parseBraces reads {n}, {n,} or {n,m}; ok is false when s does not start
// with one (RE2 then takes '{' literally).
func parseBraces(s string) (lo, hi, n int, ok bool) {
	i := 1
	num := func() (int, bool) {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		// RE2 takes leading zeros ({01}) as not a repetition.
		if i == j || (i-j > 1 && s[j] == '0') {
			return 0, false
		}
		if i-j > 8 {
			return maxRepeat + 1, true // too large either way
		}
		v, err := strconv.Atoi(s[j:i])
		return v, err == nil
	}
	lo, ok = num()
	if !ok || i >= len(s) {
		return 0, 0, 0, false
	}
	hi = lo
	if s[i] == ',' {
		i++
		if i < len(s) && s[i] == '}' {
			hi = -1
		} else if hi, ok = num(); !ok {
			return 0, 0, 0, false
		}
	}
	if i >= len(s) || s[i] != '}' {
		return 0, 0, 0, false
	}
	return lo, hi, i + 1, true
}

// pythonOnlyBraces reports whether s starts with {,n}: Python repeats 0 to
// n times, RE2 reads the characters literally, so the pattern is refused.
func pythonOnlyBraces(s string) bool {
	i := 2
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return len(s) > 2 && s[1] == ',' && i > 2 && i < len(s) && s[i] == '}'
}

var (
	digitRanges = []rune{'0', '9'}
	wordRanges  = []rune{'0', '9', 'A', 'Z', '_', '_', 'a', 'z'}
	spaceRanges = []rune{'\t', '\n', '\f', '\r', ' ', ' '}
	anyButNL    = []rune{'\n', '\n'} // negated
)

func (p *parser) atom(depth int) (*node, error) {
	c := p.s[p.pos]
	switch c {
	case '(':
		p.pos++
		if p.pos < len(p.s) && p.s[p.pos] == '?' {
			if p.pos+1 < len(p.s) && p.s[p.pos+1] == ':' {
				p.pos += 2
			} else {
				return nil, p.fail("group flags, names and lookaround")
			}
		}
		n, err := p.alt(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.s) || p.s[p.pos] != ')' {
			return nil, p.fail("missing )")
		}
		p.pos++
		return n, nil
	case '[':
		return p.class()
	case '.':
		p.pos++
		return &node{kind: 'c', ranges: anyButNL, neg: true}, nil
	case '^':
		p.pos++
		return &node{kind: '^'}, nil
	case '$':
		p.pos++
		return &node{kind: '$'}, nil
	case '*', '+', '?':
		return nil, p.fail("missing argument to repetition")
	case '{':
		if _, _, _, ok := parseBraces(p.s[p.pos:]); ok || pythonOnlyBraces(p.s[p.pos:]) {
			return nil, p.fail("missing argument to repetition")
		}
	case '\\':
		r, ranges, neg, err := p.escape(false)
		if err != nil {
			return nil, err
		}
		if ranges != nil {
			return &node{kind: 'c', ranges: ranges, neg: neg}, nil
		}
		return &node{kind: 'c', ranges: []rune{r, r}}, nil
	}
	r, size := utf8.DecodeRuneInString(p.s[p.pos:])
	p.pos += size
	return &node{kind: 'c', ranges: []rune{r, r}}, nil
}

// escape reads a backslash escape: a single rune, or a Perl class (ranges,
// negated or not). Negated Perl classes are refused inside brackets.
func (p *parser) escape(inClass bool) (r rune, ranges []rune, neg bool, err error) {
	p.pos++ // backslash
	if p.pos >= len(p.s) {
		return 0, nil, false, p.fail("trailing backslash")
	}
	c := p.s[p.pos]
	p.pos++
	switch c {
	case 'd', 'w', 's', 'D', 'W', 'S':
		if inClass && c <= 'Z' {
			return 0, nil, false, p.fail(`\%c inside []`, c)
		}
		switch c | 0x20 {
		case 'd':
			ranges = digitRanges
		case 'w':
			ranges = wordRanges
		default:
			ranges = spaceRanges
		}
		return 0, ranges, c <= 'Z', nil
	case 't':
		return '\t', nil, false, nil
	case 'n':
		return '\n', nil, false, nil
	case 'r':
		return '\r', nil, false, nil
	case 'f':
		return '\f', nil, false, nil
	case 'v':
		return '\v', nil, false, nil
	case 'a':
		return '\a', nil, false, nil
	case 'x':
		if p.pos+2 <= len(p.s) {
			if v, err := strconv.ParseUint(p.s[p.pos:p.pos+2], 16, 8); err == nil {
				p.pos += 2
				return rune(v), nil, false, nil
			}
		}
		return 0, nil, false, p.fail(`\x needs two hex digits`)
	}
	if c < utf8.RuneSelf && !isAlnum(c) {
		return rune(c), nil, false, nil // escaped punctuation
	}
	return 0, nil, false, p.fail(`escape \%c`, c)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func (p *parser) class() (*node, error) {
	p.pos++ // [
	n := &node{kind: 'c'}
	if p.pos < len(p.s) && p.s[p.pos] == '^' {
		n.neg = true
		p.pos++
	}
	first := true
	for {
		if p.pos >= len(p.s) {
			return nil, p.fail("missing ]")
		}
		c := p.s[p.pos]
		if c == ']' && !first {
			p.pos++
			break
		}
		first = false
		if c == '[' && p.pos+1 < len(p.s) && p.s[p.pos+1] == ':' {
			return nil, p.fail("POSIX classes")
		}
		lo, ranges, err := p.classRune()
		if err != nil {
			return nil, err
		}
		if ranges != nil {
			if p.pos+1 < len(p.s) && p.s[p.pos] == '-' && p.s[p.pos+1] != ']' {
				return nil, p.fail("bad range in []")
			}
			n.ranges = append(n.ranges, ranges...)
			continue
		}
		hi := lo
		if p.pos+1 < len(p.s) && p.s[p.pos] == '-' && p.s[p.pos+1] != ']' {
			p.pos++
			var r2 []rune
			hi, r2, err = p.classRune()
			if err != nil {
				return nil, err
			}
			if r2 != nil || hi < lo {
				return nil, p.fail("bad range in []")
			}
		}
		n.ranges = append(n.ranges, lo, hi)
	}
	// Negated classes match newline as in RE2; nothing else to adjust.
	return n, nil
}

func (p *parser) classRune() (rune, []rune, error) {
	if p.s[p.pos] == '\\' {
		r, ranges, _, err := p.escape(true)
		return r, ranges, err
	}
	r, size := utf8.DecodeRuneInString(p.s[p.pos:])
	p.pos += size
	return r, nil, nil
}

type compiler struct {
	prog []inst
	err  error
}

func (c *compiler) add(i inst) int {
	if len(c.prog) >= maxPatternOp {
		if c.err == nil {
			c.err = fmt.Errorf("%w: pattern too large", errPattern)
		}
		return len(c.prog)
	}
	c.prog = append(c.prog, i)
	return len(c.prog) - 1
}

// emit appends code for n that falls through to the next instruction.
func (c *compiler) emit(n *node) {
	if c.err != nil {
		return
	}
	switch n.kind {
	case 'c':
		c.add(inst{op: opClass, ranges: n.ranges, neg: n.neg})
	case 'e':
	case '^':
		c.add(inst{op: opBegin})
	case '$':
		c.add(inst{op: opEnd})
	case '.':
		for _, s := range n.subs {
			c.emit(s)
		}
	case '|':
		// split L1, next; L1: sub0; jmp end; next: split ... ; last sub
		var jmps []int
		for i, s := range n.subs {
			if i == len(n.subs)-1 {
				c.emit(s)
				break
			}
			sp := c.add(inst{op: opSplit})
			c.emit(s)
			jmps = append(jmps, c.add(inst{op: opJmp}))
			c.patch(sp, sp+1, len(c.prog))
		}
		for _, j := range jmps {
			c.patch(j, len(c.prog), 0)
		}
	case 'r':
		sub := n.subs[0]
		for i := 0; i < n.min; i++ {
			c.emit(sub)
		}
		switch {
		case n.max < 0:
			// L: split body, out; body; jmp L
			sp := c.add(inst{op: opSplit})
			c.emit(sub)
			j := c.add(inst{op: opJmp})
			c.patch(j, sp, 0)
			c.patch(sp, sp+1, len(c.prog))
		default:
			var sps []int
			for i := n.min; i < n.max; i++ {
				sps = append(sps, c.add(inst{op: opSplit}))
				c.emit(sub)
			}
			for _, sp := range sps {
				c.patch(sp, sp+1, len(c.prog))
			}
		}
	}
}

func (c *compiler) patch(at, x, y int) {
	if c.err != nil || at >= len(c.prog) {
		return
	}
	c.prog[at].x, c.prog[at].y = x, y
}

// matchPrefix reports whether the pattern matches a prefix of s (keylime's
// re.match).
func (p *pattern) matchPrefix(s string) bool {
	if !strings.HasPrefix(s, p.prefix) {
		return false
	}
	n := len(p.prog)
	cur, next := make([]int, 0, n), make([]int, 0, n)
	mark := make([]int, n) // generation a pc was last added in
	gen := 0
	var add func(list []int, pc, pos int) ([]int, bool)
	add = func(list []int, pc, pos int) ([]int, bool) {
		if mark[pc] == gen {
			return list, false
		}
		mark[pc] = gen
		switch in := &p.prog[pc]; in.op {
		case opMatch:
			return list, true
		case opJmp:
			return add(list, in.x, pos)
		case opSplit:
			list, m := add(list, in.x, pos)
			if m {
				return list, true
			}
			return add(list, in.y, pos)
		case opBegin:
			if pos == 0 {
				return add(list, pc+1, pos)
			}
			return list, false
		case opEnd:
			if pos == len(s) {
				return add(list, pc+1, pos)
			}
			return list, false
		default:
			return append(list, pc), false
		}
	}
	gen++
	cur, matched := add(cur, p.start, len(p.prefix))
	for pos := len(p.prefix); !matched && len(cur) > 0 && pos < len(s); {
		r, size := utf8.DecodeRuneInString(s[pos:])
		pos += size
		gen++
		next = next[:0]
		for _, pc := range cur {
			if in := &p.prog[pc]; in.matches(r) {
				var m bool
				if next, m = add(next, pc+1, pos); m {
					matched = true
					break
				}
			}
		}
		cur, next = next, cur
	}
	return matched
}

func (in *inst) matches(r rune) bool {
	found := false
	for i := 0; i+1 < len(in.ranges); i += 2 {
		if in.ranges[i] <= r && r <= in.ranges[i+1] {
			found = true
			break
		}
	}
	return found != in.neg
}
