package prices

import (
	"fmt"
	"strings"
)

// ParseUSD parses a non-negative decimal USD amount ("500", "0.1", "2.5e-3")
// exactly into nano-USD (1e-9 USD), refusing anything finer than a nano-USD
// or too large for an int64. It never goes through a float.
func ParseUSD(s string) (int64, error) { return parseScaled(s, 9) }

// parseScaled parses a non-negative decimal string ("2.50", "1e-6",
// "0.000003") exactly into an integer number of 10^-scale units, refusing
// anything that would need more precision than scale digits or overflow.
func parseScaled(s string, scale int) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("%q: must not be negative", orig)
	}
	s = strings.TrimPrefix(s, "+")
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := atoiSigned(s[i+1:])
		if err != nil {
			return 0, fmt.Errorf("%q: bad exponent", orig)
		}
		exp = e
		s = s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	if digits == "" {
		return 0, fmt.Errorf("%q: not a number", orig)
	}
	exp -= len(frac)
	// value = digits × 10^exp; we want digits × 10^(exp+scale).
	shift := exp + scale
	digits = strings.TrimLeft(digits, "0")
	for shift < 0 {
		if digits == "" {
			return 0, nil
		}
		if digits[len(digits)-1] != '0' {
			return 0, fmt.Errorf("%q: more than %d decimal places", orig, scale)
		}
		digits = digits[:len(digits)-1]
		shift++
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q: not a decimal number", orig)
		}
		if v > (1<<63-1-int64(c-'0'))/10 {
			return 0, fmt.Errorf("%q: too large", orig)
		}
		v = v*10 + int64(c-'0')
	}
	for ; shift > 0; shift-- {
		if v > (1<<63-1)/10 {
			return 0, fmt.Errorf("%q: too large", orig)
		}
		v *= 10
	}
	return v, nil
}

func atoiSigned(s string) (int, error) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || len(s) > 4 {
		return 0, fmt.Errorf("bad exponent")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad exponent")
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// formatScaled renders v 10^-scale units as a decimal string without
// trailing zeros ("2.5", "0.000125", "10").
func formatScaled(v int64, scale int) string {
	s := fmt.Sprintf("%0*d", scale+1, v)
	intPart, frac := s[:len(s)-scale], strings.TrimRight(s[len(s)-scale:], "0")
	if frac == "" {
		return intPart
	}
	return intPart + "." + frac
}
