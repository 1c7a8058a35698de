package killswitch_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/killswitch"
	"github.com/burnrate/burnrate/services/killswitch/alert"
	"github.com/burnrate/burnrate/services/meter"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, harness.Need{Kafka: true}, &env) }

// clock is the killswitch's injected time.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.set(t); return c }
func usd(dollars float64) int64      { return int64(dollars * 1e9) }
func hourOf(t time.Time) time.Time   { return t.UTC().Truncate(time.Hour) }
func rfc(t time.Time) string         { return t.UTC().Format(time.RFC3339) }
func quote(s string) string          { return `"` + s + `"` }
func decodeVerdict(b []byte) events.Verdict {
	v, _ := events.DecodeVerdict(b)
	return v
}

type fixture struct {
	kcfg    kclient.Config
	names   ktopics.Names
	cl      *kgo.Client
	dir     string
	webhook string // alerts go here when set

	mu       sync.Mutex
	verdicts []events.Verdict
	events   []events.BudgetEvent
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{kcfg: env.KafkaConfig(t), dir: t.TempDir()}
	f.names = ktopics.WithPrefix(f.kcfg.TopicPrefix)
	cl, err := kclient.New(f.kcfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.cl = cl
	if _, err := ktopics.Ensure(context.Background(), kadm.NewClient(cl), f.kcfg.TopicPrefix, ktopics.Catalog()); err != nil {
		t.Fatal(err)
	}
	// Follow what the killswitch writes, as the ingress and the sink do.
	rd, err := kclient.New(f.kcfg, "test-reader", kgo.ConsumeTopics(f.names.Verdicts(), f.names.BudgetEvents()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; rd.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := rd.PollFetches(ctx)
			f.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				switch r.Topic {
				case f.names.Verdicts():
					f.verdicts = append(f.verdicts, decodeVerdict(r.Value))
				case f.names.BudgetEvents():
					if e, err := events.DecodeBudgetEvent(r.Value); err == nil {
						f.events = append(f.events, e)
					}
				}
			})
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *fixture) policies(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(f.dir, "policies.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs a killswitch until the test ends (or stop is called).
func (f *fixture) start(t *testing.T, policies string, now func() time.Time, admin bool) (stop func(), adminAddr string) {
	t.Helper()
	cfg := killswitch.DefaultConfig()
	cfg.PoliciesFile, cfg.SessionTimeout, cfg.AdminListen = policies, 6*time.Second, ""
	cfg.ReconcileInterval, cfg.LeaseQuiet = 0, 200*time.Millisecond
	if f.webhook != "" {
		cfg.Alerts.Webhooks = []alert.Webhook{{Name: "test", URL: f.webhook, MinSeverity: "warning"}}
	}
	addr := make(chan string, 1)
	if admin {
		cfg.AdminListen = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- killswitch.Run(ctx, cfg, killswitch.Deps{Kafka: f.kcfg, Log: zaptest.NewLogger(t), Now: now,
			Getenv:      func(string) string { return "s3cret" },
			SubjectKeys: meter.SubjectKeys(), Combinations: [][]string{{"team", "model"}},
			OnAdminListen: func(a string) { addr <- a }})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("killswitch.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	if admin {
		select {
		case adminAddr = <-addr:
		case err := <-done:
			t.Fatalf("killswitch exited: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("admin API did not start")
		}
	}
	return stop, adminAddr
}

func (f *fixture) spend(t *testing.T, subject string, nano int64, window time.Time, run *events.RunStats) {
	t.Helper()
	s := events.Spend{Schema: events.SchemaSpend, Subject: subject, WindowStart: window.Truncate(time.Minute),
		WindowEnd: window.Truncate(time.Minute).Add(time.Minute), DeltaNanoUSD: nano, DeltaTokens: 100, Events: 1,
		Run: run, ProducedAt: time.Now().UTC()}
	f.produce(t, f.names.Spend(), subject, &s)
}

func (f *fixture) produce(t *testing.T, topic, key string, e events.Event) {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// waitVerdict waits for a verdict on subject that ok accepts.
func (f *fixture) waitVerdict(t *testing.T, subject string, ok func(events.Verdict) bool) events.Verdict {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for _, v := range f.verdicts {
			if v.Subject == subject && ok(v) {
				f.mu.Unlock()
				return v
			}
		}
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Fatalf("no such verdict for %s in 30 s; verdicts so far: %+v", subject, f.verdicts)
	return events.Verdict{}
}

func (f *fixture) waitEvent(t *testing.T, subject string, kind events.BudgetEventKind, pct int) events.BudgetEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for _, e := range f.events {
			if e.Subject == subject && e.Kind == kind && e.ThresholdPct == pct {
				f.mu.Unlock()
				return e
			}
		}
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event (threshold %d) for %s in 30 s", kind, pct, subject)
	return events.BudgetEvent{}
}

func (f *fixture) count(kind events.BudgetEventKind, subject string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.events {
		if e.Kind == kind && e.Subject == subject {
			n++
		}
	}
	return n
}

func action(a events.Action) func(events.Verdict) bool {
	return func(v events.Verdict) bool { return v.Action == a }
}

// TestBudgetThresholdsLeaseBlockAndRollover drives one hourly budget with
// spend records: thresholds fire once each, a lease appears near the
// limit, a block at it, and when the injected clock passes the period end
// the block is lifted without a restart.
func TestBudgetThresholdsLeaseBlockAndRollover(t *testing.T) {
	f := setup(t)
	var hooks sync.Map // alert kind → body
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert.Alert
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &a) == nil {
			hooks.Store(a.Kind+fmt.Sprint(a.ThresholdPct), a)
		}
	}))
	defer srv.Close()
	f.webhook = srv.URL
	start := hourOf(time.Now())
	clk := newClock(start.Add(10 * time.Minute))
	pol := f.policies(t, fmt.Sprintf(`
budgets:
  - {name: a-hourly, subject: team=a, period: custom, start: %s, length: 1h, limit_usd: "5", thresholds: [50, 80], lease_below_pct: 20, lease_horizon: 1ms}
`, quote(rfc(start))))
	f.start(t, pol, clk.now, false)

	at := clk.now()
	f.spend(t, "team=a", usd(2), at, nil)
	f.spend(t, "team=a", usd(1.5), at, nil)
	e := f.waitEvent(t, "team=a", events.BudgetThreshold, 50)
	if e.SpentNanoUSD < usd(2.5) || e.Budget != "a-hourly" || e.PeriodEnd == nil || !e.PeriodEnd.Equal(start.Add(time.Hour)) {
		t.Errorf("threshold event %+v", e)
	}
	f.spend(t, "team=a", usd(0.6), at, nil) // $4.10: $0.90 left, under 20 % of $5
	f.waitEvent(t, "team=a", events.BudgetThreshold, 80)
	lease := f.waitVerdict(t, "team=a", action(events.ActionLease))
	if lease.Lease.RemainingNanoUSD != usd(0.9) || lease.Lease.Instances != 1 || lease.Lease.PerInstanceNanoUSD != usd(0.9) {
		t.Errorf("lease %+v", lease.Lease)
	}
	f.spend(t, "team=a", usd(1), at, nil) // $5.10
	block := f.waitVerdict(t, "team=a", action(events.ActionBlock))
	if block.SpentNanoUSD != usd(5.1) || block.LimitNanoUSD != usd(5) || !block.ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Errorf("block %+v", block)
	}
	f.waitEvent(t, "team=a", events.BudgetExhausted, 0)

	clk.set(start.Add(time.Hour + time.Second)) // the period rolls over
	lift := f.waitVerdict(t, "team=a", action(events.ActionAllow))
	if !lift.IssuedAt.After(block.IssuedAt) {
		t.Errorf("allow %+v issued before the block", lift)
	}
	f.waitEvent(t, "team=a", events.BudgetReset, 0)
	if n := f.count(events.BudgetThreshold, "team=a"); n != 2 {
		t.Errorf("%d threshold events, want 2 (50 and 80, once each)", n)
	}
	// The webhook got the warnings and the exhaustion (not the info reset).
	for _, k := range []string{"threshold50", "threshold80", "exhausted0"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if v, ok := hooks.Load(k); ok {
				if a := v.(alert.Alert); a.Subject != "team=a" || a.Budget != "a-hourly" || a.ID == "" {
					t.Errorf("alert %+v", a)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("webhook never got the %s alert", k)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, ok := hooks.Load("period_reset0"); ok {
		t.Error("an info alert passed min_severity warning")
	}
}

// TestLoopRuleBlocksTheRunOnly: a run over max_repeats is blocked for
// block_for; another run of the same team is not.
func TestLoopRuleBlocksTheRunOnly(t *testing.T) {
	f := setup(t)
	clk := newClock(time.Now())
	pol := f.policies(t, "loops: {max_repeats: 10, max_calls_per_minute: 1000, block_for: 10m}\n")
	f.start(t, pol, clk.now, false)
	at := clk.now()
	run := func(repeats int64) *events.RunStats {
		return &events.RunStats{Calls: repeats, MaxRepeats: repeats, CallsLastMin: repeats, FirstAt: at.Add(-time.Second), LastAt: at, RepeatedPrompt: "ab12"}
	}
	f.spend(t, "agent_run=ok-run", usd(0.01), at, run(10))
	f.spend(t, "agent_run=loop-run", usd(0.01), at, run(11))
	v := f.waitVerdict(t, "agent_run=loop-run", action(events.ActionBlock))
	if !v.ExpiresAt.Equal(v.IssuedAt.Add(10*time.Minute)) || !strings.Contains(v.Reason, "same prompt 11 times") {
		t.Errorf("loop verdict %+v", v)
	}
	f.waitEvent(t, "agent_run=loop-run", events.BudgetLoopBreak, 0)
	f.spend(t, "agent_run=loop-run", usd(0.01), at, run(12)) // already blocked: no second verdict
	f.spend(t, "agent_run=sentinel", usd(0.01), at, run(50))
	f.waitVerdict(t, "agent_run=sentinel", action(events.ActionBlock))
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.verdicts {
		if v.Subject == "agent_run=ok-run" {
			t.Errorf("run under the rule got %+v", v)
		}
		if v.Subject == "agent_run=loop-run" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d verdicts for the looping run, want 1", n)
	}
}

// TestLeaseFromTheStartSplitsAcrossLiveIngress: lease_below_pct 100 leases
// before any spend, split across the ingress instances with a live
// heartbeat (an expired one does not count).
func TestLeaseFromTheStartSplitsAcrossLiveIngress(t *testing.T) {
	f := setup(t)
	now := time.Now().UTC()
	for i, exp := range []time.Time{now.Add(time.Hour), now.Add(time.Hour), now.Add(-time.Minute)} {
		in := events.Instance{Schema: events.SchemaInstance, Instance: fmt.Sprint("ingress-", i), Role: "ingress",
			StartedAt: now.Add(-2 * time.Hour), HeartbeatAt: exp.Add(-15 * time.Second), ExpiresAt: exp}
		f.produce(t, f.names.Instances(), in.Instance, &in)
	}
	pol := f.policies(t, `budgets: [{subject: team=b, period: day, limit_usd: "10", lease_below_pct: 100}]`+"\n")
	f.start(t, pol, time.Now, false)
	v := f.waitVerdict(t, "team=b", action(events.ActionLease))
	if v.Lease.RemainingNanoUSD != usd(10) || v.Lease.Instances != 2 || v.Lease.PerInstanceNanoUSD != usd(5) {
		t.Errorf("lease %+v, want $10 split across 2 live instances", v.Lease)
	}
}

// TestRestartRestoresBudgetsAndAdminAPI: spend counted before a restart is
// neither forgotten nor counted twice; manual kill and lift are audited.
func TestRestartRestoresBudgetsAndAdminAPI(t *testing.T) {
	f := setup(t)
	pol := f.policies(t, `budgets: [{name: c-daily, subject: team=c, period: day, limit_usd: "5"}]`+"\n")
	stop, _ := f.start(t, pol, time.Now, false)
	f.spend(t, "team=c", usd(3), time.Now(), nil)
	f.waitEvent(t, "team=c", events.BudgetThreshold, 50)
	stop()

	_, addr := f.start(t, pol, time.Now, true)
	f.spend(t, "team=c", usd(2.5), time.Now(), nil)
	v := f.waitVerdict(t, "team=c", action(events.ActionBlock))
	if v.SpentNanoUSD != usd(5.5) {
		t.Errorf("spent %d after the restart, want %d (3 before + 2.5 after)", v.SpentNanoUSD, usd(5.5))
	}
	if n := f.count(events.BudgetThreshold, "team=c"); n != 3 {
		t.Errorf("%d threshold events, want 3 (50, 80, 95 once each across the restart)", n)
	}

	call := func(method, path, token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	if code, _ := call("GET", "/v1/budgets", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	code, out := call("GET", "/v1/budgets", "s3cret", "")
	bs, _ := out["budgets"].([]any)
	if code != 200 || len(bs) != 1 {
		t.Fatalf("budgets: %d %v", code, out)
	}
	if b := bs[0].(map[string]any); b["spent_nano_usd"].(float64) != float64(usd(5.5)) || b["verdict"] != "block" || b["percent"].(float64) != 110 {
		t.Errorf("budget %v", b)
	}
	if code, out := call("POST", "/v1/verdicts/kill", "s3cret", `{"subject":"team=d","ttl":"forever","reason":"x"}`); code != 400 {
		t.Errorf("bad ttl: %d %v", code, out)
	}
	if code, out := call("POST", "/v1/verdicts/kill", "s3cret", `{"subject":"team=d","ttl":"2h","reason":"runaway batch job","actor":"ops-amy"}`); code != 200 {
		t.Fatalf("kill: %d %v", code, out)
	}
	k := f.waitVerdict(t, "team=d", action(events.ActionBlock))
	if k.IssuedBy != "admin:ops-amy" || k.ExpiresAt.Sub(k.IssuedAt) != 2*time.Hour {
		t.Errorf("manual kill %+v", k)
	}
	if e := f.waitEvent(t, "team=d", events.BudgetManualKill, 0); e.Actor != "admin:ops-amy" || !strings.Contains(e.Reason, "runaway batch job") {
		t.Errorf("audit event %+v", e)
	}
	if code, out := call("POST", "/v1/verdicts/lift", "s3cret", `{"subject":"team=d","reason":"job fixed","actor":"ops-amy"}`); code != 200 {
		t.Fatalf("lift: %d %v", code, out)
	}
	f.waitVerdict(t, "team=d", action(events.ActionAllow))
	f.waitEvent(t, "team=d", events.BudgetManualLift, 0)
}
