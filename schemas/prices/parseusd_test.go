package prices

import "testing"

func TestParseUSD(t *testing.T) {
	f := func(in string, want int64, ok bool) {
		t.Helper()
		got, err := ParseUSD(in)
		if (err == nil) != ok || got != want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d, ok=%v", in, got, err, want, ok)
		}
	}
	f("500", 500_000_000_000, true)
	f("0.1", 100_000_000, true)
	f("1e-9", 1, true)
	f("1e-10", 0, false)
	f("abc", 0, false)
	f("-5", 0, false)
}
