package ingress

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/services/mockupstream"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, harness.Need{Kafka: true}, &env) }

// live is an ingress running in-process against the real broker.
type live struct {
	url    string
	kcfg   kclient.Config
	names  ktopics.Names
	cancel context.CancelFunc
	done   chan error
	cl     *kgo.Client
}

func startLive(t *testing.T, mutate func(*Config)) *live {
	t.Helper()
	kcfg := env.KafkaConfig(t)
	cl, err := kclient.New(kcfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx := context.Background()
	if _, err := ktopics.Ensure(ctx, kadm.NewClient(cl), kcfg.TopicPrefix, ktopics.Catalog()); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(mockupstream.Handler(mockupstream.Config{}))
	t.Cleanup(up.Close)
	cfg := testConfig(up.URL)
	cfg.Spool.Dir = filepath.Join(t.TempDir(), "spool")
	if mutate != nil {
		mutate(&cfg)
	}
	cat, _ := prices.Load("")
	l := &live{kcfg: kcfg, names: ktopics.WithPrefix(kcfg.TopicPrefix), done: make(chan error, 1), cl: cl}
	addr := make(chan string, 1)
	rctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	go func() {
		l.done <- Run(rctx, cfg, Deps{Kafka: kcfg, Pricer: prices.NewPricer(cat, nil), Log: zap.NewNop(), Now: time.Now,
			Getenv: testEnv, OnListen: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		l.url = "http://" + a
	case err := <-l.done:
		t.Fatalf("ingress did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("ingress did not start in 30s")
	}
	t.Cleanup(l.stop)
	return l
}

func (l *live) stop() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel = nil
	}
}

func (l *live) call(t testing.TB, token, body string, headers ...string) int {
	req, _ := http.NewRequest(http.MethodPost, l.url+"/v1/chat/completions", stringsReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("call: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// usageEvents reads usage.v1 from the start until want events or timeout.
func (l *live) usageEvents(t *testing.T, want int, timeout time.Duration) []events.Usage {
	t.Helper()
	cl, err := kclient.New(l.kcfg, "reader", kgo.ConsumeTopics(l.names.Usage()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []events.Usage
	deadline := time.Now().Add(timeout)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			u, err := events.DecodeUsage(r.Value)
			if err != nil {
				t.Errorf("bad record: %v", err)
				return
			}
			out = append(out, u)
		})
	}
	// Anything beyond want would be a duplicate: look a little longer.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
		u, _ := events.DecodeUsage(r.Value)
		out = append(out, u)
	})
	cancel()
	return out
}

func TestLiveNCallsGiveNEvents(t *testing.T) {
	l := startLive(t, nil)
	const n = 200
	for i := 0; i < n; i++ {
		token := tokenPayments
		if i%4 == 0 {
			token = tokenDev
		}
		if code := l.call(t, token, chat("gpt-4o-mini", ""), HeaderCustomer, fmt.Sprintf("cust-%d", i%3), HeaderAgentRun, fmt.Sprintf("call-%d", i)); code != 200 {
			t.Fatalf("call %d: status %d", i, code)
		}
	}
	evs := l.usageEvents(t, n, 30*time.Second)
	if len(evs) != n {
		t.Fatalf("%d usage events for %d calls", len(evs), n)
	}
	cat, _ := prices.Load("")
	ids, runs := map[string]bool{}, map[string]bool{}
	var devCalls int
	for _, ev := range evs {
		if ids[ev.ID] {
			t.Errorf("duplicate id %s", ev.ID)
		}
		ids[ev.ID] = true
		runs[ev.Attribution.AgentRunID] = true
		if ev.Attribution.Team == "research" {
			devCalls++
			if ev.Attribution.AgentRunID != "" || ev.Attribution.Customer != "" {
				t.Errorf("the dev key does not allow attribution headers: %+v", ev.Attribution)
			}
		} else if ev.Attribution.Team != "payments" || ev.Attribution.Customer == "" {
			t.Errorf("attribution %+v", ev.Attribution)
		}
		if want := cat.Price(prices.Call{Provider: "openai", Model: "gpt-4o-mini"}, ev.Tokens); ev.Cost.TotalNanoUSD != want.TotalNanoUSD || ev.Cost.TotalNanoUSD == 0 {
			t.Errorf("cost %d, want %d", ev.Cost.TotalNanoUSD, want.TotalNanoUSD)
		}
	}
	if devCalls != n/4 || len(runs) != n-n/4+1 {
		t.Errorf("%d dev calls, %d distinct runs", devCalls, len(runs))
	}
}

func produceVerdict(t *testing.T, l *live, v events.Verdict) time.Time {
	t.Helper()
	b, err := events.Encode(&v)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cl.ProduceSync(context.Background(), &kgo.Record{Topic: l.names.Verdicts(), Key: []byte(v.Subject), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// A verdict written to verdicts.v1 blocks the next call; the time from the
// produce acknowledgement to the first 429 is logged (goal: 100 ms).
func TestLiveVerdictBlocksNextCall(t *testing.T) {
	l := startLive(t, nil)
	if code := l.call(t, tokenPayments, chat("gpt-4o-mini", "")); code != 200 {
		t.Fatalf("before the verdict: %d", code)
	}
	acked := produceVerdict(t, l, verdict("team=payments", events.ActionBlock))
	deadline := acked.Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l.call(t, tokenPayments, chat("gpt-4o-mini", "")) == http.StatusTooManyRequests {
			t.Logf("verdict to first 429: %s", time.Since(acked).Round(time.Millisecond))
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("the block verdict never took effect")
}

// With a lease of R nano-USD for the team and 200 concurrent callers, the
// calls let through never reserve more than R.
func TestLiveLeaseBoundsOvershoot(t *testing.T) {
	l := startLive(t, nil)
	body := chat("gpt-4o", `,"max_tokens":1000`)
	cat, _ := prices.Load("")
	var probe callRequest
	probe, _ = parseCall([]byte(body))
	worst := cat.Price(prices.Call{Provider: "openai", Model: "gpt-4o"}, events.Tokens{Input: probe.estimatedPromptTokens(), Output: 1000}).TotalNanoUSD
	const fits = 37
	remaining := worst*fits + worst/2
	produceVerdict(t, l, verdict("team=payments", events.ActionLease, func(v *events.Verdict) {
		v.Lease = &events.Lease{RemainingNanoUSD: remaining, Instances: 1, PerInstanceNanoUSD: remaining}
	}))
	// Wait until the lease is in the cache: a /v1/check sees it.
	time.Sleep(500 * time.Millisecond)
	var ok, blocked atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch l.call(t, tokenPayments, body) {
			case 200:
				ok.Add(1)
			case 429:
				blocked.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("lease of %d nano-USD, worst case %d per call: %d let through, %d blocked", remaining, worst, ok.Load(), blocked.Load())
	if ok.Load() < fits || ok.Load()+blocked.Load() != 200 {
		t.Errorf("%d calls let through (the share covers at least %d worst cases), %d blocked", ok.Load(), fits, blocked.Load())
	}
	// What was let through never costs more than the lease: each call
	// reserves its worst case and gives back the difference afterwards.
	var spent int64
	for _, ev := range l.usageEvents(t, 200, 30*time.Second) {
		if ev.Status == events.StatusOK {
			spent += ev.Cost.TotalNanoUSD
		}
	}
	t.Logf("spent %d nano-USD of a %d lease", spent, remaining)
	if spent > remaining {
		t.Errorf("overshoot: spent %d nano-USD of a %d lease", spent, remaining)
	}
}

// The broker is stopped for 20 s under steady traffic: the gateway keeps
// answering, events spool and are replayed, none lost and none duplicated.
func TestLiveBrokerOutageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: runs in make test, skipped with -short")
	}
	l := startLive(t, nil)
	var sent atomic.Int64
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond) // 50 calls/s
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if code := l.call(t, tokenPayments, chat("gpt-4o-mini", ""), HeaderAgentRun, fmt.Sprintf("outage-%d", i)); code == 200 {
				sent.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}()
	time.Sleep(3 * time.Second)
	env.Kafka.Stop()
	t.Logf("broker stopped after %d calls", sent.Load())
	time.Sleep(20 * time.Second)
	duringOutage := sent.Load()
	if err := env.Kafka.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker back after %d calls", duringOutage)
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d calls failed during the outage; the gateway must keep answering", failed.Load())
	}
	n := int(sent.Load())
	evs := l.usageEvents(t, n, 60*time.Second)
	ids, runs := map[string]int{}, map[string]int{}
	for _, ev := range evs {
		ids[ev.ID]++
		runs[ev.Attribution.AgentRunID]++
	}
	for id, c := range ids {
		if c > 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
	if len(evs) != n || len(runs) != n {
		t.Errorf("%d calls answered, %d events (%d distinct calls) in Kafka", n, len(evs), len(runs))
	}
	t.Logf("%d calls, %d events, %d distinct ids", n, len(evs), len(ids))
}
