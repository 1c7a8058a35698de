package policy

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

const fullFile = `
defaults:
  timezone: Europe/Berlin
  thresholds: [50, 90]
  lease_horizon: 30s
  lease_below_pct: 5
budgets:
  - name: payments-monthly
    subject: team=payments
    period: month
    limit_usd: "500"
    action: downgrade
    downgrade_to: gpt-4o-mini
  - subject: team=*
    period: week
    week_start: sunday
    timezone: UTC
    limit_usd: 0.1
    limit_tokens: 1_000_000
    thresholds: []
    action: throttle
    throttle_per_min: 60
    lease_horizon: 0s
    lease_below_pct: 100
  - subject: team=search,model=gpt-4o
    period: custom
    start: 2026-11-01T00:00:00+01:00
    length: 72h
    limit_usd: 5
    thresholds: [80]
    action: alert
loops:
  max_calls_per_minute: 120
  max_repeats: 20
  max_steps: 200
  max_run_cost_usd: "5"
  max_run_duration: 30m
`

func TestParseFull(t *testing.T) {
	pol, err := Parse([]byte(fullFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Budget{{
		Name: "payments-monthly", Subject: "team=payments", Keys: []string{"team"},
		Period: events.PeriodMonth, WeekStart: time.Monday,
		LimitNanoUSD: 500_000_000_000, Thresholds: []int{50, 90},
		Action: ActionDowngrade, DowngradeTo: "gpt-4o-mini", LeaseHorizon: 30 * time.Second, LeaseBelowPct: 5,
	}, {
		Name: "team=*/week", Subject: "team=*", Keys: []string{"team"}, Wildcard: true,
		Period: events.PeriodWeek, WeekStart: time.Sunday,
		LimitNanoUSD: 100_000_000, LimitTokens: 1_000_000, Thresholds: []int{},
		Action: ActionThrottle, ThrottlePerMin: 60, LeaseHorizon: 0, LeaseBelowPct: 100,
	}, {
		Name: "team=search,model=gpt-4o/custom", Subject: "team=search,model=gpt-4o", Keys: []string{"team", "model"},
		Period: events.PeriodCustom, WeekStart: time.Monday,
		Start: time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), Length: 72 * time.Hour,
		LimitNanoUSD: 5_000_000_000, Thresholds: []int{80},
		Action: ActionAlert, LeaseHorizon: 30 * time.Second, LeaseBelowPct: 5,
	}}
	zones := []string{"Europe/Berlin", "UTC", "Europe/Berlin"}
	if len(pol.Budgets) != len(want) {
		t.Fatalf("got %d budgets, want %d", len(pol.Budgets), len(want))
	}
	for i := range want {
		got := pol.Budgets[i]
		if got.Location.String() != zones[i] {
			t.Errorf("budgets[%d].Location = %v, want %s", i, got.Location, zones[i])
		}
		got.Location = nil
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("budgets[%d]:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	wantLoops := LoopRules{
		MaxCallsPerMinute: 120, MaxRepeats: 20, MaxSteps: 200,
		MaxRunCostNanoUSD: 5_000_000_000, MaxRunDuration: 30 * time.Minute, BlockFor: 15 * time.Minute,
	}
	if pol.Loops != wantLoops || !pol.Loops.Enabled() {
		t.Errorf("loops = %+v, want %+v", pol.Loops, wantLoops)
	}
	if len(pol.Version) != 12 || strings.Trim(pol.Version, "0123456789abcdef") != "" {
		t.Errorf("version %q: want 12 hex chars", pol.Version)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing yet\n", "---\n", "budgets: []\n", "budgets:\nloops:\n"} {
		pol, err := Parse([]byte(in), nil)
		if err != nil || len(pol.Budgets) != 0 || pol.Loops.Enabled() || pol.Loops.BlockFor != 15*time.Minute {
			t.Errorf("Parse(%q) = %+v, %v; want no policies", in, pol, err)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	pol, err := Parse([]byte("budgets:\n- {subject: app=chat, period: day, limit_tokens: 1000}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := pol.Budgets[0]
	if b.Location != time.UTC || !slices.Equal(b.Thresholds, []int{50, 80, 95}) || b.Action != ActionBlock ||
		b.LeaseHorizon != 10*time.Second || b.LeaseBelowPct != 10 || b.Name != "app=chat/day" {
		t.Errorf("built-in defaults not applied: %+v", b)
	}
}

func TestParseLimitUSD(t *testing.T) {
	f := func(value string, want int64, wantErr string) {
		t.Helper()
		pol, err := Parse([]byte("budgets:\n- subject: team=a\n  period: day\n  limit_usd: "+value+"\n"), nil)
		if wantErr != "" {
			if err == nil || err.Error() != wantErr {
				t.Errorf("limit_usd: %s: got error %v, want %q", value, err, wantErr)
			}
			return
		}
		if err != nil || pol.Budgets[0].LimitNanoUSD != want {
			t.Errorf("limit_usd: %s: got %+v, %v; want %d", value, pol.Budgets, err, want)
		}
	}
	f(`"0.1"`, 100_000_000, "")
	f(`0.1`, 100_000_000, "")
	f(`5`, 5_000_000_000, "")
	f(`"500.000000001"`, 500_000_000_001, "")
	f(`1e-10`, 0, `budgets[0].limit_usd: "1e-10": more than 9 decimal places (line 4)`)
	f(`"abc"`, 0, `budgets[0].limit_usd: "abc": not a decimal number (line 4)`)
	f(`-1`, 0, `budgets[0].limit_usd: "-1": must not be negative (line 4)`)
	f(`true`, 0, `budgets[0].limit_usd: want a decimal number of USD (line 4)`)
}

func TestParseErrors(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		_, err := Parse([]byte(in), nil)
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", in, want)
			return
		}
		got := strings.Split(err.Error(), "\n")
		if !slices.Equal(got, want) {
			t.Errorf("Parse(%q):\n got %q\nwant %q", in, got, want)
		}
	}
	ok := "  subject: team=a\n  period: day\n  limit_usd: 1\n"

	f("budgets:\n- subject: team=a\n  period: day\n  limt_usd: 1\n",
		"budgets[0].limt_usd: unknown key (line 4)",
		"budgets[0]: one of limit_usd, limit_tokens must be > 0 (line 2)")
	f("budgets:\n-"+ok[1:]+"  timezone: Mars/Base\n", `budgets[0].timezone: unknown time zone "Mars/Base" (line 5)`)
	f("budgets:\n-"+ok[1:]+"- name: x\n"+ok+"- name: team=a/day\n"+ok+"- name: x\n"+ok,
		`budgets[2].name: "team=a/day" already used by budgets[0] (line 9)`,
		`budgets[3].name: "x" already used by budgets[1] (line 13)`)
	f("loops:\n  block_for: 0s\n", "loops.block_for: must be > 0 (line 2)")
	f("loops:\n  max_steps: -1\n  max_run_cost_usd: x\n  max_run_duration: 5\n",
		"loops.max_steps: must be >= 0 (line 2)",
		`loops.max_run_cost_usd: "x": not a decimal number (line 3)`,
		`loops.max_run_duration: "5": want a duration like 10s or 15m (line 4)`)
	f("budgets:\n- period: day\n  limit_usd: 1\n", "budgets[0].subject: required (line 2)")
	f("budgets:\n- subject: team=a\n  limit_usd: 1\n  period: day\n  period: week\n", "budgets[0].period: repeated key, first at line 4 (line 5)")
	f("budgets:\n- subject: team=a\n  period: year\n  limit_usd: 1\n", `budgets[0].period: "year": want day, week, month or custom (line 3)`)
	f("budgets: {a: 1}\n", "budgets: want a list of budgets (line 1)")
	f("budgets:\n- team=a\n", "budgets[0]: want a mapping of keys to values (line 2)")
	f("- 1\n", "want a mapping with defaults, budgets and loops (line 1)")
	f("budget: []\n", "budget: unknown key (line 1)")
	f("a: [\n", "yaml: line 1: did not find expected node content")
	f("---\nbudgets: []\n---\nloops: {}\n", "line 3: only one YAML document is allowed")

	// Subject syntax.
	subject := func(s, problem string) {
		t.Helper()
		f("budgets:\n- subject: '"+s+"'\n  period: day\n  limit_usd: 1\n", `budgets[0].subject: "`+s+`": `+problem+" (line 2)")
	}
	subject("team=", "empty value for team")
	subject("team", `missing '=' in "team"`)
	subject("=a", `bad key ""`)
	subject("team=a,team=b", "key team given twice")
	subject("team=*,model=x", `"*" only for a single key, not in a combination`)
	subject("team=a=b", "'=' in the value of team")
	subject("team=a,", `missing '=' in ""`)
	f("budgets:\n- subject: ''\n  period: day\n  limit_usd: 1\n", "budgets[0].subject: must not be empty (line 2)")

	// Thresholds, actions and period-specific keys.
	f("defaults:\n  thresholds: [50, 50, 100]\n  lease_below_pct: 101\n",
		"defaults.thresholds[1]: must be above 50 (ascending) (line 2)",
		"defaults.thresholds[2]: must be 1..99 (line 2)",
		"defaults.lease_below_pct: must be 0..100 (line 3)")
	f("budgets:\n-"+ok[1:]+"  thresholds: 50\n", "budgets[0].thresholds: want a list of percentages, e.g. [50, 80, 95] (line 5)")
	f("budgets:\n-"+ok[1:]+"  action: downgrade\n", "budgets[0].downgrade_to: required for action downgrade (line 5)")
	f("budgets:\n-"+ok[1:]+"  action: throttle\n  throttle_per_min: 0\n", "budgets[0].throttle_per_min: must be > 0 (line 6)")
	f("budgets:\n-"+ok[1:]+"  action: throttle\n", "budgets[0].throttle_per_min: required for action throttle (line 5)")
	f("budgets:\n-"+ok[1:]+"  downgrade_to: m\n  throttle_per_min: 5\n",
		"budgets[0].downgrade_to: only for action downgrade (line 5)",
		"budgets[0].throttle_per_min: only for action throttle (line 6)")
	f("budgets:\n-"+ok[1:]+"  action: stop\n", `budgets[0].action: "stop": want block, downgrade, throttle or alert (line 5)`)
	f("budgets:\n-"+ok[1:]+"  week_start: monday\n  length: 1h\n",
		"budgets[0].week_start: only for period week (line 5)",
		"budgets[0].length: only for period custom (line 6)")
	f("budgets:\n- subject: team=a\n  period: custom\n  limit_usd: 1\n  start: 2026-11-01\n",
		`budgets[0].start: "2026-11-01": want an RFC 3339 time like 2026-11-01T00:00:00Z (line 5)`,
		"budgets[0].length: required for period custom (line 3)")
	f("budgets:\n- subject: team=a\n  period: week\n  week_start: funday\n  limit_tokens: 1.5\n",
		`budgets[0].week_start: "funday": want a day of the week, e.g. monday (line 4)`,
		`budgets[0].limit_tokens: "1.5": want a whole number (line 5)`)
	f("defaults: &d\n  timezone: UTC\nbudgets:\n- <<: *d\n"+ok,
		"budgets[0].<<: merge keys are not supported (use defaults) (line 4)")
}

func TestParseCheckKeys(t *testing.T) {
	published := func(keys []string) error {
		if slices.Equal(keys, []string{"team"}) || slices.Equal(keys, []string{"team", "model"}) {
			return nil
		}
		return errors.New("the meter publishes no spend for " + strings.Join(keys, "+"))
	}
	in := "budgets:\n- {subject: team=*, period: day, limit_usd: 1}\n- {subject: 'team=a,model=b', period: day, limit_usd: 1}\n" +
		"- {subject: 'model=b,team=a', period: day, limit_usd: 1}\n"
	_, err := Parse([]byte(in), published)
	want := "budgets[2].subject: the meter publishes no spend for model+team (line 4)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestLoad(t *testing.T) {
	path := t.TempDir() + "/policies.yaml"
	if _, err := Load(path, nil); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("missing file: got %v, want an error starting with the path", err)
	}
	writeFile(t, path, "budgets:\n- {subject: team=a, period: day}\nloops: {block_for: 0s}\n")
	_, err := Load(path, nil)
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if !strings.HasPrefix(line, path+": ") {
			t.Errorf("error line %q does not start with the path", line)
		}
	}
}

func TestMatchesFind(t *testing.T) {
	pol, err := Parse([]byte(`budgets:
- {name: all-teams, subject: team=*, period: month, limit_usd: 100}
- {name: payments, subject: team=payments, period: month, limit_usd: 10}
- {name: payments-4o, subject: "team=payments,model=gpt-4o", period: day, limit_usd: 1}
- {name: models, subject: model=*, period: day, limit_usd: 1}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := func(subject string, want ...string) {
		t.Helper()
		var got []string
		for _, b := range pol.Find(subject) {
			got = append(got, b.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Find(%q) = %q, want %q", subject, got, want)
		}
	}
	f("team=payments", "payments", "all-teams")
	f("team=search", "all-teams")
	f("team=payments,model=gpt-4o", "payments-4o")
	f("model=gpt-4o", "models")
	f("team=")
	f("teams=payments")
	f("user=ann")
	if b := pol.Budgets[0]; b.Matches("team=a,model=b") || !b.Matches("team=a") {
		t.Error("wildcard matches a combination or misses a single key")
	}
}
