package killswitch

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/killswitch/alert"
	"github.com/burnrate/burnrate/services/killswitch/policy"
	"github.com/burnrate/burnrate/streams/kstage"
	"github.com/burnrate/burnrate/streams/ktopics"
)

func TestPercent(t *testing.T) {
	f := func(spent, limit, spentTok, limitTok int64, want int) {
		t.Helper()
		st := events.BudgetState{SpentNanoUSD: spent, LimitNanoUSD: limit, SpentTokens: spentTok, LimitTokens: limitTok}
		if got := percent(&st); got != want {
			t.Errorf("percent(%d/%d $, %d/%d tok) = %d, want %d", spent, limit, spentTok, limitTok, got, want)
		}
	}
	f(0, 5e9, 0, 0, 0)
	f(4_999_999_999, 5e9, 0, 0, 99) // a nano short is not exhausted
	f(5e9, 5e9, 0, 0, 100)
	f(5_500_000_000, 5e9, 0, 0, 110)
	f(1, 5e9, 900, 1000, 90) // tokens further along
	f(1, 0, 1000, 1000, 100)
	f(0, 0, 0, 0, 0)
}

func TestBurnRate(t *testing.T) {
	var b burnRate
	at := time.Unix(1_800_000_000, 0)
	if b.perSecond(at, 5*time.Second) != 0 {
		t.Fatal("empty burn rate is not 0")
	}
	for i := 0; i < 10; i++ {
		b.add(at.Add(time.Duration(i)*time.Second), 1e9) // $1 a second for 10 s
	}
	now := at.Add(9*time.Second + 500*time.Millisecond)
	if got := b.perSecond(now, 5*time.Second); got != 1e9 {
		t.Errorf("5 s rate %v, want 1e9", got)
	}
	// After a minute of silence the short rate is 0 again.
	if got := b.perSecond(now.Add(time.Minute), 5*time.Second); got != 0 {
		t.Errorf("rate after a quiet minute %v", got)
	}
}

func TestKeyChecker(t *testing.T) {
	check := keyChecker([]string{"team", "model"}, [][]string{{"team", "model"}})
	for _, ok := range [][]string{{"team"}, {"agent_run"}, {"team", "model"}} {
		if err := check(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	if err := check([]string{"model", "team"}); err == nil || !strings.Contains(err.Error(), "meter.combinations") {
		t.Errorf("reversed combination: %v", err)
	}
	if err := check([]string{"feature"}); err == nil {
		t.Error("feature accepted")
	}
}

func TestSubjectFilter(t *testing.T) {
	where, args, ok := subjectFilter("team=a,model=gpt-4o")
	if !ok || where != "team = ? AND if(served_model != '', served_model, requested_model) = ?" || fmt.Sprint(args) != "[a gpt-4o]" {
		t.Errorf("%q %v %v", where, args, ok)
	}
	if where, args, ok := subjectFilter("tag.region=eu"); !ok || where != "tag_values[indexOf(tag_keys, ?)] = ?" || fmt.Sprint(args) != "[region eu]" {
		t.Errorf("tag: %q %v %v", where, args, ok)
	}
	if _, _, ok := subjectFilter("gpu=x"); ok {
		t.Error("unknown key accepted")
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	c := DefaultConfig()
	c.FlushInterval, c.SessionTimeout, c.AdminListen = 0, time.Second, "nope"
	c.Alerts.Webhooks = []alert.Webhook{{URL: "ftp://x"}}
	err := c.Validate()
	for _, want := range []string{"flush_interval:", "session_timeout:", "admin_listen:", "alerts.webhooks[0].url"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// BenchmarkSpend is the killswitch's per-record work: decode a spend.v1
// record, find its budgets (1,000 exact budgets plus a wildcard), add it to
// the period's state, and every 200 records (a flush interval at 4,000
// records/s) judge every budget and encode the changelog, verdicts and
// budget events. Kafka I/O is not included.
func BenchmarkSpend(b *testing.B) {
	names := ktopics.WithPrefix("bench.")
	var yaml strings.Builder
	yaml.WriteString("budgets:\n  - {subject: \"app=*\", period: day, limit_usd: \"1000000\"}\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&yaml, "  - {subject: team=t%d, period: month, limit_usd: \"100\", lease_below_pct: 100}\n", i)
	}
	pol, err := policy.Parse([]byte(yaml.String()), nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	e := newEngine(&cfg, names, zap.NewNop(), newMetrics(nil), "bench", func() time.Time { return now }, func(alert.Alert) {})
	e.pol, e.nSpend, e.live = &pol, 1, func() int { return 2 }
	e.Restore(kstage.TP{Topic: names.Spend()}, nil)
	recs := make([]*kgo.Record, 2000)
	for i := range recs {
		subject := fmt.Sprintf("team=t%d", i%1000)
		if i%2 == 1 {
			subject = fmt.Sprintf("app=a%d", i%50)
		}
		s := events.Spend{Schema: events.SchemaSpend, Subject: subject, WindowStart: now.Truncate(time.Minute),
			WindowEnd: now.Truncate(time.Minute).Add(time.Minute), DeltaNanoUSD: 1_000_000, DeltaTokens: 100, Events: 1, ProducedAt: now}
		recs[i] = record(names.Spend(), subject, &s)
	}
	b.ReportAllocs()
	b.ResetTimer()
	out := 0
	for i := 0; i < b.N; i++ {
		e.Process(recs[i%len(recs)], now)
		if i%200 == 199 {
			out += len(e.Flush(now))
			e.Committed(true)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	_ = out
}

// TestExamplePoliciesParse keeps deploy/policies.example.yaml valid against
// the meter's default subjects.
func TestExamplePoliciesParse(t *testing.T) {
	p, err := policy.Load("../../deploy/policies.example.yaml", keyChecker([]string{"key", "team", "app", "user", "customer", "model", "env"}, [][]string{{"team", "model"}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Budgets) != 5 || !p.Loops.Enabled() {
		t.Errorf("%d budgets, loops %+v", len(p.Budgets), p.Loops)
	}
}

// testEngine is an engine on one spend partition with a frozen clock,
// collecting what it would commit.
type testEngine struct {
	e      *engine
	names  ktopics.Names
	now    time.Time
	alerts []alert.Alert
}

func newTestEngine(t *testing.T, yaml string, at time.Time) *testEngine {
	t.Helper()
	te := &testEngine{names: ktopics.WithPrefix("t."), now: at}
	pol, err := policy.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	te.e = newEngine(&cfg, te.names, zap.NewNop(), newMetrics(nil), "test", func() time.Time { return te.now }, func(a alert.Alert) { te.alerts = append(te.alerts, a) })
	te.e.pol, te.e.nSpend = &pol, 1
	te.e.Restore(kstage.TP{Topic: te.names.Spend()}, nil)
	return te
}

func (te *testEngine) spend(subject string, nano int64) {
	s := events.Spend{Schema: events.SchemaSpend, Subject: subject, WindowStart: te.now.Truncate(time.Minute),
		WindowEnd: te.now.Truncate(time.Minute).Add(time.Minute), DeltaNanoUSD: nano, DeltaTokens: 1, Events: 1, ProducedAt: te.now}
	te.e.Process(record(te.names.Spend(), subject, &s), te.now)
}

// flush commits and returns the verdicts and budget events written.
func (te *testEngine) flush() (verdicts []events.Verdict, evs []events.BudgetEvent) {
	for _, r := range te.e.Flush(te.now) {
		switch r.Topic {
		case te.names.Verdicts():
			v, _ := events.DecodeVerdict(r.Value)
			verdicts = append(verdicts, v)
		case te.names.BudgetEvents():
			e, _ := events.DecodeBudgetEvent(r.Value)
			evs = append(evs, e)
		}
	}
	te.e.Committed(true)
	return verdicts, evs
}

func TestForecastAlertsOncePerPeriod(t *testing.T) {
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	te := newTestEngine(t, `budgets: [{name: f, subject: team=f, period: day, limit_usd: "100", thresholds: []}]`, at)
	forecasts := 0
	for i := 0; i < 90; i++ { // $0.05 a second for 90 s: $4.5 spent, $4,320 projected for the day
		te.now = at.Add(time.Duration(i) * time.Second)
		te.spend("team=f", 50_000_000)
		_, evs := te.flush()
		for _, e := range evs {
			if e.Kind == events.BudgetForecast {
				forecasts++
				if e.ForecastNanoUSD <= 100e9 || e.SpentNanoUSD >= 100e9 {
					t.Errorf("forecast event %+v", e)
				}
			}
		}
	}
	if forecasts != 1 {
		t.Errorf("%d forecast events, want 1", forecasts)
	}
	if len(te.alerts) != 1 || te.alerts[0].Kind != alert.KindForecast {
		t.Errorf("alerts %+v", te.alerts)
	}
}

func TestReloadRaisingTheLimitLiftsTheBlock(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	te := newTestEngine(t, `budgets: [{name: r, subject: team=r, period: day, limit_usd: "5", lease_below_pct: 0, lease_horizon: 1ms}]`, at)
	te.spend("team=r", 6e9)
	vs, _ := te.flush()
	if len(vs) != 1 || vs[0].Action != events.ActionBlock {
		t.Fatalf("verdicts %+v, want one block", vs)
	}
	pol, err := policy.Parse([]byte(`budgets: [{name: r, subject: team=r, period: day, limit_usd: "50", lease_below_pct: 0, lease_horizon: 1ms}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	te.e.setPolicies(&pol)
	te.now = te.now.Add(time.Second)
	vs, _ = te.flush()
	if len(vs) != 1 || vs[0].Action != events.ActionAllow {
		t.Fatalf("after raising the limit: %+v, want one allow", vs)
	}
	// Alerts wait for the commit; an aborted transaction sends none.
	te.spend("team=r", 50e9)
	te.e.Flush(te.now)
	n := len(te.alerts)
	te.e.Committed(false)
	if len(te.alerts) != n {
		t.Error("alerts sent for an aborted transaction")
	}
}
