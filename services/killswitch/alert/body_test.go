package alert

import (
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

func TestJSONBody(t *testing.T) {
	f := func(a Alert, want string) {
		t.Helper()
		b, err := (&hook{}).body(a)
		if err != nil {
			t.Fatal(err)
		}
		var got, wantMap map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(want), &wantMap); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, wantMap) {
			t.Fatalf("body\n%s\nwant\n%s", b, want)
		}
	}
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	f(Alert{
		ID: "0b6f7e0a-1c9e-4f3e-9d59-6e2f8a3c1d20", Kind: KindThreshold, Severity: "warning",
		Subject: "team=payments", Budget: "payments-monthly",
		Title: "payments at 80 % of its monthly budget", Text: "Spent $800.00 of $1,000.00.",
		LimitNanoUSD: 1_000e9, SpentNanoUSD: 800e9, ForecastNanoUSD: 1_200e9, ThresholdPct: 80,
		PeriodEnd: at.AddDate(0, 1, 0), OccurredAt: at,
	}, `{
		"id": "0b6f7e0a-1c9e-4f3e-9d59-6e2f8a3c1d20", "kind": "threshold", "severity": "warning",
		"subject": "team=payments", "budget": "payments-monthly",
		"title": "payments at 80 % of its monthly budget", "text": "Spent $800.00 of $1,000.00.",
		"limit_nano_usd": 1000000000000, "spent_nano_usd": 800000000000, "forecast_nano_usd": 1200000000000,
		"threshold_pct": 80, "period_end": "2026-04-14T15:09:26Z", "occurred_at": "2026-03-14T15:09:26Z"
	}`)
	// Empty optional fields are left out, the zero period end included.
	f(Alert{
		ID: "id-2", Kind: KindManualKill, Severity: "critical", Subject: "agent_run=r-1",
		Title: "run r-1 killed", Text: "Killed by alice.", OccurredAt: at,
	}, `{
		"id": "id-2", "kind": "manual_kill", "severity": "critical", "subject": "agent_run=r-1",
		"title": "run r-1 killed", "text": "Killed by alice.", "occurred_at": "2026-03-14T15:09:26Z"
	}`)
}

func TestSlackBody(t *testing.T) {
	f := func(a Alert, want string) {
		t.Helper()
		b, err := (&hook{slack: true}).body(a)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, map[string]any{"text": want}) {
			t.Fatalf("body %s, want text %q", b, want)
		}
	}
	f(Alert{Severity: "critical", Title: "payments budget exhausted", Text: "Requests are blocked until 1 April."},
		":rotating_light: *payments budget exhausted*\nRequests are blocked until 1 April.")
	f(Alert{Severity: "warning", Title: "payments at 80 %"}, ":warning: *payments at 80 %*")
	f(Alert{Severity: "info", Title: "kill lifted", Text: "a < b & c > d"}, ":information_source: *kill lifted*\na &lt; b &amp; c &gt; d")
	f(Alert{Severity: "bogus", Title: "t"}, ":rotating_light: *t*")
}
