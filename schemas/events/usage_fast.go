package events

import (
	"bytes"
	"time"
	"unicode/utf8"
)

// decodeUsageFast decodes the shape producers write — known keys, strings
// without escapes, integers without fraction or exponent, RFC 3339 times —
// straight into *u, about three times faster than the reflective decoder
// (the sink and the meter decode every usage event). Anything else (an
// unknown key, an escape, a null, a number it does not read exactly) makes
// it report false, and the caller decodes b with the JSON library, which
// then decides. FuzzDecodeUsageFast holds it to that: whatever it accepts,
// the JSON library decodes to the same value.
func decodeUsageFast(b []byte, u *Usage, in *interner) bool {
	s := scanner{b: b, in: in}
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "schema":
			return s.intern(&u.Schema)
		case "id":
			return s.str(&u.ID)
		case "occurred_at":
			return s.time(&u.OccurredAt)
		case "received_at":
			return s.time(&u.ReceivedAt)
		case "attribution":
			return s.attribution(&u.Attribution)
		case "provider":
			return s.intern(&u.Provider)
		case "requested_model":
			return s.intern(&u.RequestedModel)
		case "served_model":
			return s.intern(&u.ServedModel)
		case "route":
			return s.intern(&u.Route)
		case "tokens":
			return s.tokens(&u.Tokens)
		case "cost":
			return s.cost(&u.Cost)
		case "latency_ms":
			return s.int(&u.LatencyMS)
		case "ttft_ms":
			return s.int(&u.TTFTMS)
		case "status":
			var v string
			ok := s.intern(&v)
			u.Status = Status(v)
			return ok
		case "stream":
			return s.bool(&u.Stream)
		case "prompt_fingerprint":
			return s.str(&u.PromptFingerprint)
		case "error":
			return s.str(&u.Error)
		}
		return false
	})
	if !ok {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *scanner) attribution(a *Attribution) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "org":
			return s.intern(&a.Org)
		case "team":
			return s.intern(&a.Team)
		case "app":
			return s.intern(&a.App)
		case "env":
			return s.intern(&a.Env)
		case "user":
			return s.intern(&a.User)
		case "customer":
			return s.intern(&a.Customer)
		case "feature":
			return s.intern(&a.Feature)
		case "virtual_key_id":
			return s.intern(&a.VirtualKeyID)
		case "agent_run_id":
			return s.intern(&a.AgentRunID)
		case "agent_step":
			var v int64
			ok := s.int(&v)
			a.AgentStep = int(v)
			return ok
		case "tags":
			if a.Tags == nil {
				a.Tags = make(Tags, 4)
			}
			return s.object(func(k []byte) bool {
				var v string
				ok := s.intern(&v)
				a.Tags[s.in.get(k)] = v
				return ok
			})
		}
		return false
	})
}

func (s *scanner) tokens(t *Tokens) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "input":
			return s.int(&t.Input)
		case "cached_input":
			return s.int(&t.CachedInput)
		case "cache_write_5m":
			return s.int(&t.CacheWrite5m)
		case "cache_write_1h":
			return s.int(&t.CacheWrite1h)
		case "output":
			return s.int(&t.Output)
		case "reasoning":
			return s.int(&t.Reasoning)
		}
		return false
	})
}

func (s *scanner) cost(c *Cost) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "total_nano_usd":
			return s.int(&c.TotalNanoUSD)
		case "price_version":
			return s.intern(&c.PriceVersion)
		case "estimated":
			return s.bool(&c.Estimated)
		case "unpriced":
			return s.bool(&c.Unpriced)
		}
		return false
	})
}

// scanner reads the plain subset of JSON decodeUsageFast accepts. Every
// method reports false on anything outside it.
type scanner struct {
	b  []byte
	i  int
	in *interner
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with the
// scanner at the value. The key aliases the input: field copies it if it
// keeps it.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.peek('{') {
		return false
	}
	if s.peek('}') {
		return true
	}
	for {
		s.ws()
		k, ok := s.raw()
		if !ok || !s.peek(':') {
			return false
		}
		s.ws()
		if !field(k) {
			return false
		}
		if s.peek(',') {
			continue
		}
		return s.peek('}')
	}
}

// raw reads a string without escapes or control characters that is valid
// UTF-8, returning its bytes.
func (s *scanner) raw() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	for j < len(s.b) && plain[s.b[j]] {
		j++
	}
	if j == len(s.b) {
		return nil, false
	}
	if s.b[j] != '"' {
		if s.b[j] < utf8.RuneSelf {
			return nil, false // an escape or a control character
		}
		end := bytes.IndexByte(s.b[j:], '"')
		if end < 0 {
			return nil, false
		}
		j += end
		v := s.b[start:j]
		if bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) || hasControl(v) {
			return nil, false
		}
	}
	s.i = j + 1
	return s.b[start:j], true
}

// plain marks the bytes a string can hold as they are: printable ASCII
// other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func hasControl(v []byte) bool {
	for _, c := range v {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func (s *scanner) str(dst *string) bool {
	v, ok := s.raw()
	if ok {
		*dst = string(v)
	}
	return ok
}

// intern is str for values that repeat from event to event (attribution,
// models, price versions): with an interner they allocate once.
func (s *scanner) intern(dst *string) bool {
	v, ok := s.raw()
	if ok {
		*dst = s.in.get(v)
	}
	return ok
}

// maxInterned bounds an interner; past it, it starts over.
const maxInterned = 1 << 14

// interner hands out one string per distinct value. A nil interner
// allocates every time.
type interner struct{ m map[string]string }

func (in *interner) get(v []byte) string {
	if in == nil {
		return string(v)
	}
	if s, ok := in.m[string(v)]; ok { // no allocation for the lookup
		return s
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]string, 256)
	}
	s := string(v)
	in.m[s] = s
	return s
}

// int reads -?(0|[1-9][0-9]*) of at most 18 digits, so it cannot overflow.
func (s *scanner) int(dst *int64) bool {
	j := s.i
	neg := j < len(s.b) && s.b[j] == '-'
	if neg {
		j++
	}
	start := j
	var n int64
	for j < len(s.b) && '0' <= s.b[j] && s.b[j] <= '9' {
		n = n*10 + int64(s.b[j]-'0')
		j++
	}
	digits := j - start
	if digits == 0 || digits > 18 || (digits > 1 && s.b[start] == '0') {
		return false
	}
	if j < len(s.b) && (s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E') {
		return false
	}
	if neg {
		n = -n
	}
	*dst = n
	s.i = j
	return true
}

func (s *scanner) bool(dst *bool) bool {
	switch {
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		*dst = true
		s.i += 4
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		*dst = false
		s.i += 5
	default:
		return false
	}
	return true
}

// time reads YYYY-MM-DDTHH:MM:SS[.fraction]Z, the form producers write,
// without time.Parse's generality (it is a tenth of the decoding time).
func (s *scanner) time(dst *time.Time) bool {
	v, ok := s.raw()
	if !ok {
		return false
	}
	t, ok := plainUTC(v)
	if ok {
		*dst = t
	}
	return ok
}

// plainUTC reads YYYY-MM-DDTHH:MM:SS[.d{1,9}]Z with every field in range;
// anything else reports false.
func plainUTC(v []byte) (time.Time, bool) {
	const shape = "dddd-dd-ddTdd:dd:dd"
	if len(v) < len(shape)+1 || len(v) > len(shape)+11 || v[len(v)-1] != 'Z' {
		return time.Time{}, false
	}
	for i := 0; i < len(shape); i++ {
		if shape[i] == 'd' && (v[i] < '0' || v[i] > '9') || shape[i] != 'd' && v[i] != shape[i] {
			return time.Time{}, false
		}
	}
	num := func(i, n int) int {
		x := 0
		for _, c := range v[i : i+n] {
			x = x*10 + int(c-'0')
		}
		return x
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	ns := 0
	if frac := v[len(shape) : len(v)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 {
			return time.Time{}, false
		}
		scale := 100_000_000
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			ns += int(c-'0') * scale
			scale /= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
