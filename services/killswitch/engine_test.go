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
