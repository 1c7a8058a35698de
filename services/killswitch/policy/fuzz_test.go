package policy

import (
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullFile))
	f.Add([]byte("budgets:\n- {subject: team=*, period: day, limit_usd: 1e-9, thresholds: [1, 99]}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("defaults: &d {timezone: UTC}\nbudgets: [*d, *d]\nloops: *d\n"))
	at := time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in []byte) {
		pol, err := Parse(in, nil)
		if err != nil {
			return
		}
		for i := range pol.Budgets {
			b := &pol.Budgets[i]
			if b.LimitNanoUSD <= 0 && b.LimitTokens <= 0 || b.Name == "" || len(b.Keys) == 0 || !b.Period.Valid() {
				t.Fatalf("budgets[%d] accepted but invalid: %+v", i, b)
			}
			for j := 1; j < len(b.Thresholds); j++ {
				if b.Thresholds[j] <= b.Thresholds[j-1] {
					t.Fatalf("budgets[%d] thresholds not ascending: %v", i, b.Thresholds)
				}
			}
			if start, end := b.PeriodAt(at); at.Before(start) || !at.Before(end) {
				t.Fatalf("budgets[%d] PeriodAt(%s) = [%s, %s)", i, at, start, end)
			}
		}
	})
}
