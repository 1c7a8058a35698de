package prices

import "testing"

func TestParseScaled(t *testing.T) {
	f := func(in string, scale int, want int64, ok bool) {
		t.Helper()
		got, err := parseScaled(in, scale)
		if (err == nil) != ok || got != want {
			t.Errorf("parseScaled(%q, %d) = %d, %v; want %d, ok=%v", in, scale, got, err, want, ok)
		}
	}
	f("2.50", 9, 2_500_000_000, true)
	f("0.075", 9, 75_000_000, true)
	f("2.5e-06", 15, 2_500_000_000, true)
	f("3e-7", 15, 300_000_000, true)
	f("0.000000000000001", 15, 1, true)
	f("0.0000000000000015", 15, 0, false) // needs more precision than femto-USD
	f("1.50000000000000000", 9, 1_500_000_000, true)
	f("10", 9, 10_000_000_000, true)
	f("0", 9, 0, true)
	f("-1", 9, 0, false)
	f("abc", 9, 0, false)
	f("", 9, 0, false)
	f("1e30", 9, 0, false)
	f("1.2.3", 9, 0, false)
}

func TestFormatScaled(t *testing.T) {
	f := func(v int64, scale int, want string) {
		t.Helper()
		if got := formatScaled(v, scale); got != want {
			t.Errorf("formatScaled(%d, %d) = %q, want %q", v, scale, got, want)
		}
	}
	f(2_500_000_000, 9, "2.5")
	f(125_000_000, 9, "0.125")
	f(10_000_000_000, 9, "10")
	f(0, 9, "0")
	f(1, 9, "0.000000001")
}
