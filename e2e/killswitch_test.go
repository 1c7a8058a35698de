package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/services/ingress"
)

// ksRig runs every service as its own process — mock-upstream, ingress,
// meter, killswitch and sink — against the real broker and ClickHouse.
type ksRig struct {
	*sinkRig
	ingressURL, adminURL string
	metricsURL           string // the killswitch's
	cfg                  string
	killswitch           *serviceProc
	client               *http.Client
}

const (
	ksTeams     = 20 // budgets leased from the start: the acceptance runs
	ksUnleased  = 5  // budgets without a standing lease: the verdict path alone
	ksAdmin     = "e2e-admin-token"
	ksCallNano  = 10_000_000 // every call costs exactly $0.01: 64 output tokens at $156.25/M
	ksLimitNano = 5_000_000_000
)

func ksToken(team string) string { return "tok-" + team }

func startKillswitchRig(t *testing.T) *ksRig {
	t.Helper()
	r := &ksRig{sinkRig: newSinkRig(t, "  group: ks-sink\n")}
	dir := t.TempDir()
	mockPort, _ := localch.FreePort()
	ingPort, _ := localch.FreePort()
	adminPort, _ := localch.FreePort()
	metricsPort, _ := localch.FreePort()
	r.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	r.ingressURL, r.adminURL = fmt.Sprintf("http://127.0.0.1:%d", ingPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	startProc(t, nil, "mock-upstream", "--listen", fmt.Sprintf("127.0.0.1:%d", mockPort))

	prices := filepath.Join(dir, "prices.yaml")
	write(t, prices, `version: "e2e.1"
effective: "2026-01-01"
models:
  - {provider: openai, model: e2e-cent, input: "0", cached_input: "0", output: "156.25"}
`)
	var budgets, keys strings.Builder
	for i := 1; i <= ksTeams; i++ {
		team := fmt.Sprintf("t%02d", i)
		fmt.Fprintf(&budgets, "  - {name: %s-daily, subject: team=%s, period: day, limit_usd: \"5\", lease_below_pct: 100}\n", team, team)
		fmt.Fprintf(&keys, "    - {id: vk_%s, sha256: %s, team: %s, app: burst, env: test}\n", team, ingress.HashKey(ksToken(team)), team)
	}
	for i := 1; i <= ksUnleased; i++ {
		team := fmt.Sprintf("v%02d", i)
		fmt.Fprintf(&budgets, "  - {name: %s-daily, subject: team=%s, period: day, limit_usd: \"5\", lease_below_pct: 0, lease_horizon: 1ms}\n", team, team)
		fmt.Fprintf(&keys, "    - {id: vk_%s, sha256: %s, team: %s, app: verdict-path, env: test}\n", team, ingress.HashKey(ksToken(team)), team)
	}
	fmt.Fprintf(&keys, "    - {id: vk_agents, sha256: %s, team: agents, app: planner, env: test, attribution_headers: true}\n", ingress.HashKey(ksToken("agents")))
	policies := filepath.Join(dir, "policies.yaml")
	write(t, policies, "budgets:\n"+budgets.String()+"loops: {max_repeats: 20, block_for: 5m}\n")

	r.cfg = filepath.Join(dir, "burnrate.yaml")
	write(t, r.cfg, fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %q
clickhouse:
  addr: [%s]
  database: %s
metrics:
  listen: ""
log:
  level: warn
prices:
  override_file: %q
ingress:
  listen: "127.0.0.1:%d"
  fail_open: false
  heartbeat_interval: 1s
  spool: {dir: %q}
  keys:
%s  routes:
    - {model: e2e-cent, provider: openai, base_url: "http://127.0.0.1:%d/v1", api_key_env: E2E_UPSTREAM_KEY}
sink:
  group: ks-sink
  batch_interval: 200ms
meter:
  group: ks-meter
killswitch:
  group: ks-killswitch
  policies_file: %q
  admin_listen: "127.0.0.1:%d"
  flush_interval: 50ms
  reconcile_interval: 2s
`, strings.Join(r.kcfg.Brokers, ", "), r.kcfg.TopicPrefix, strings.Join(r.chcfg.Addr, ", "), r.chcfg.Database, prices,
		ingPort, filepath.Join(dir, "spool"), keys.String(), mockPort, policies, adminPort))

	startService(t, r.cfg, "sink")
	startService(t, r.cfg, "meter")
	r.killswitch = r.startKillswitch(t)
	startProc(t, []string{"E2E_UPSTREAM_KEY=sk-mock"}, "ingress", "--config", r.cfg)
	waitHTTP(t, r.ingressURL+"/healthz")
	r.client = defaultClient()
	t.Cleanup(r.client.CloseIdleConnections)
	// Every team's budget is leased before its first call.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out struct {
			Verdicts []struct{ Subject, Action string } `json:"verdicts"`
		}
		if err := r.admin("GET", "/v1/verdicts", nil, &out); err == nil {
			leases := 0
			for _, v := range out.Verdicts {
				if v.Action == "lease" {
					leases++
				}
			}
			if leases == ksTeams {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d budgets were not leased within 60 s", ksTeams)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the ingress reads the leases from verdicts.v1
	return r
}

func defaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxConnsPerHost: 200}, Timeout: 30 * time.Second}
}

func (r *ksRig) startKillswitch(t *testing.T) *serviceProc {
	t.Helper()
	envs := []string{"BURNRATE_ADMIN_TOKEN=" + ksAdmin, "BURNRATE_METRICS_LISTEN=" + strings.TrimSuffix(strings.TrimPrefix(r.metricsURL, "http://"), "/metrics")}
	s := &serviceProc{t: t, cfg: r.cfg, p: startProc(t, envs, "killswitch", "--config", r.cfg), done: make(chan error, 1)}
	go func() { s.done <- s.p.cmd.Wait() }()
	return s
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *ksRig) admin(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.adminURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+ksAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// call makes one chat completion as team (and agent run, when set) and
// returns the status code.
func (r *ksRig) call(team, run, prompt string) int {
	return r.callAs(ksToken(team), "e2e-cent", run, prompt)
}

// callAs makes one chat completion with a bearer token and model.
func (r *ksRig) callAs(token, model, run, prompt string) int {
	body := fmt.Sprintf(`{"model":%q,"max_tokens":64,"messages":[{"role":"user","content":%q}]}`, model, prompt)
	req, _ := http.NewRequest("POST", r.ingressURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if run != "" {
		req.Header.Set("X-Burnrate-Agent-Run", run)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// burst is one run of the budget scenario.
type burst struct {
	sent, ok, blocked, other int64
	first429                 time.Time // when the client got its first 429
}

// drive sends rate calls a second for team from workers concurrent
// clients, open loop, until a second after the first 429 (or limit).
func (r *ksRig) drive(team string, rate, workers int, limit time.Duration, during func()) *burst {
	b := &burst{}
	var mu sync.Mutex
	ticks := make(chan struct{}, rate)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ticks {
				code := r.call(team, "", "how much is left?")
				atomic.AddInt64(&b.sent, 1)
				switch code {
				case 200:
					atomic.AddInt64(&b.ok, 1)
				case 429:
					atomic.AddInt64(&b.blocked, 1)
					mu.Lock()
					if b.first429.IsZero() {
						b.first429 = time.Now()
						go func() {
							time.Sleep(time.Second)
							cancel()
						}()
					}
					mu.Unlock()
				default:
					atomic.AddInt64(&b.other, 1)
				}
			}
		}()
	}
	if during != nil {
		go during()
	}
	interval := time.Second / time.Duration(rate)
	next := time.Now()
loop:
	for {
		next = next.Add(interval)
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(time.Until(next)):
		}
		select {
		case ticks <- struct{}{}:
		default: // every worker busy: the call is dropped, not queued
		}
	}
	close(ticks)
	wg.Wait()
	return b
}

// TestKillswitchEndToEnd is the kill-switch's acceptance test with every
// service a real process: 20 teams each with a $5 daily budget are driven
// at 500 req/s by 100 concurrent clients with $0.01 calls; each is
// blocked with at most $5.05 in ClickHouse, including the run during which
// the killswitch is SIGKILLed and restarted; its totals then equal
// ClickHouse's (nothing forgotten, nothing counted twice). A runaway agent
// is cut off while another run of its team keeps working. The time from a
// budget being spent to the first 429, and from a loop rule being crossed
// to the run's first 429, are reported (goal: p99 ≤ 1 s).
func TestKillswitchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end kill-switch scenario (about 2 minutes)")
	}
	r := startKillswitchRig(t)
	runs := make([]*burst, ksTeams+1)
	for i := 1; i <= ksTeams; i++ {
		team := fmt.Sprintf("t%02d", i)
		var during func()
		if i == ksTeams/2 {
			during = func() { // SIGKILL the killswitch mid-run and start a new one
				time.Sleep(300 * time.Millisecond)
				r.killswitch.kill()
				r.killswitch = r.startKillswitch(t)
			}
		}
		runs[i] = r.drive(team, 500, 100, 20*time.Second, during)
		if runs[i].first429.IsZero() {
			t.Fatalf("%s: no 429 after %d calls (%d ok, %d other)", team, runs[i].sent, runs[i].ok, runs[i].other)
		}
		if runs[i].other > 0 {
			t.Errorf("%s: %d calls failed with neither 200 nor 429", team, runs[i].other)
		}
	}

	// Every call is one usage event in ClickHouse (the blocked ones too).
	var total int64
	for i := 1; i <= ksTeams; i++ {
		total += runs[i].sent
	}
	r.waitUsage(t, "app = 'burst'", total)

	var delays []time.Duration
	over := 0
	chSpend := map[string]int64{}
	for i := 1; i <= ksTeams; i++ {
		team := fmt.Sprintf("t%02d", i)
		costs, times := r.okCalls(t, team)
		var sum int64
		spentAt := time.Time{} // when the budget could no longer pay for a call
		for k, c := range costs {
			sum += c
			if spentAt.IsZero() && sum > ksLimitNano-ksCallNano {
				spentAt = times[k]
			}
		}
		chSpend["team="+team] = sum
		if sum > ksLimitNano+ksCallNano*5 {
			t.Errorf("%s: $%.4f in ClickHouse, want ≤ $5.05", team, float64(sum)/1e9)
		}
		if sum > ksLimitNano {
			over++
		}
		if spentAt.IsZero() {
			t.Errorf("%s: only $%.4f spent, the budget was never used up (%d calls, %d blocked)", team, float64(sum)/1e9, runs[i].sent, runs[i].blocked)
			continue
		}
		delays = append(delays, runs[i].first429.Sub(spentAt))
		t.Logf("%s: %d calls, %d ok, %d blocked; $%.4f in ClickHouse; first 429 %s after the budget was spent", team,
			runs[i].sent, runs[i].ok, runs[i].blocked, float64(sum)/1e9, runs[i].first429.Sub(spentAt).Round(time.Millisecond))
	}
	slices.Sort(delays)
	if len(delays) > 0 {
		t.Logf("budget spent → first 429 over %d runs: p50 %s, p99 %s, max %s (negative: the lease refused the call before the last affordable one had finished); %d of %d runs spent over $5",
			len(delays), pct(delays, 50), pct(delays, 99), delays[len(delays)-1].Round(time.Millisecond), over, ksTeams)
	}

	// Without a standing lease the block comes from the verdict path alone
	// (meter flush → spend.v1 → killswitch → verdicts.v1 → ingress), and
	// the spend in flight meanwhile overshoots: reported, not bounded.
	var verdictDelays []time.Duration
	for i := 1; i <= ksUnleased; i++ {
		team := fmt.Sprintf("v%02d", i)
		b := r.drive(team, 500, 100, 20*time.Second, nil)
		if b.first429.IsZero() {
			t.Fatalf("%s: never blocked after %d calls", team, b.sent)
		}
		r.waitUsage(t, "team = '"+team+"'", b.sent)
		costs, times := r.okCalls(t, team)
		var sum int64
		var overAt time.Time
		for k, c := range costs {
			if sum += c; overAt.IsZero() && sum > ksLimitNano {
				overAt = times[k]
			}
		}
		chSpend["team="+team] = sum
		if overAt.IsZero() {
			t.Errorf("%s: blocked at $%.4f, before the limit, without a lease", team, float64(sum)/1e9)
			continue
		}
		verdictDelays = append(verdictDelays, b.first429.Sub(overAt))
		t.Logf("%s (no lease): first over-budget call → first 429 %s; $%.2f in ClickHouse", team, b.first429.Sub(overAt).Round(time.Millisecond), float64(sum)/1e9)
	}
	slices.Sort(verdictDelays)
	if len(verdictDelays) > 0 {
		t.Logf("verdict path, first over-budget call → first 429 over %d runs: p50 %s, p99 %s", len(verdictDelays), pct(verdictDelays, 50), pct(verdictDelays, 99))
	}

	// The killswitch, killed once, holds exactly ClickHouse's totals.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out struct {
			Budgets []struct {
				Subject string `json:"subject"`
				Spent   int64  `json:"spent_nano_usd"`
			} `json:"budgets"`
		}
		mismatch := ""
		if err := r.admin("GET", "/v1/budgets", nil, &out); err != nil {
			mismatch = err.Error()
		} else if len(out.Budgets) != ksTeams+ksUnleased {
			mismatch = fmt.Sprintf("%d budgets, want %d", len(out.Budgets), ksTeams+ksUnleased)
		} else {
			for _, b := range out.Budgets {
				if b.Spent != chSpend[b.Subject] {
					mismatch = fmt.Sprintf("%s: killswitch %d, ClickHouse %d", b.Subject, b.Spent, chSpend[b.Subject])
					break
				}
			}
		}
		if mismatch == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killswitch totals differ from ClickHouse after 60 s: %s", mismatch)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Reconciliation with ClickHouse finds no drift once everything landed.
	deadline = time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, r.metricsURL)
		if m[`burnrate_killswitch_reconciliations_total{result="ok"}`] > 0 && m[`burnrate_killswitch_reconcile_drift_nano_usd{budget="t01-daily"}`] == 0 &&
			m[`burnrate_killswitch_reconcile_drift_nano_usd{budget="v05-daily"}`] == 0 {
			if _, ok := m[`burnrate_killswitch_reconcile_drift_nano_usd{budget="t20-daily"}`]; ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drift-free reconciliation in 30 s: %v", m)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The CLIs on the admin API.
	cli := []string{"BURNRATE_ADMIN_URL=" + r.adminURL, "BURNRATE_ADMIN_TOKEN=" + ksAdmin}
	if out, err := burnrate(t, cli, "budgets"); err != nil || !strings.Contains(out, "t07-daily") || !strings.Contains(out, "$5.00") {
		t.Errorf("burnrate budgets: %v\n%s", err, out)
	}
	if out, err := burnrate(t, cli, "verdicts", "kill", "team=t03", "--ttl", "30m", "--reason", "e2e drill", "--actor", "e2e"); err != nil || !strings.Contains(out, "team=t03 block until") {
		t.Errorf("burnrate verdicts kill: %v\n%s", err, out)
	}
	if out, err := burnrate(t, cli, "verdicts"); err != nil || !strings.Contains(out, "admin:e2e") || !strings.Contains(out, "e2e drill") {
		t.Errorf("burnrate verdicts: %v\n%s", err, out)
	}
	if out, err := burnrate(t, cli, "verdicts", "lift", "team=t03", "--reason", "drill over"); err != nil || !strings.Contains(out, "team=t03 allow") {
		t.Errorf("burnrate verdicts lift: %v\n%s", err, out)
	}
	if out, err := burnrate(t, []string{"BURNRATE_ADMIN_URL=" + r.adminURL, "BURNRATE_ADMIN_TOKEN=wrong"}, "budgets"); err == nil || !strings.Contains(out, "unauthorized") {
		t.Errorf("wrong token: %v\n%s", err, out)
	}

	// A runaway agent: the same prompt 20 times a second. Its run is cut off
	// after max_repeats (20); another run of the team keeps working.
	var crossed, cut time.Time
	var okAfter, failedAfter atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the well-behaved run: 5 calls a second, new prompts
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			code := r.call("agents", "run-ok", fmt.Sprintf("step %d of a sane plan", i))
			if !cut.IsZero() {
				if code == 200 {
					okAfter.Add(1)
				} else {
					failedAfter.Add(1)
				}
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	for n := 1; n <= 400; n++ {
		<-tick.C
		sent := time.Now()
		code := r.call("agents", "run-loop", "retry the same thing")
		if n == 21 {
			crossed = sent
		}
		if code == 429 {
			cut = time.Now()
			break
		}
	}
	tick.Stop()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if cut.IsZero() {
		t.Fatal("the looping run was never blocked")
	}
	if code := r.call("agents", "run-loop", "retry the same thing"); code != 429 {
		t.Errorf("looping run after the block: %d, want 429", code)
	}
	if okAfter.Load() == 0 || failedAfter.Load() > 0 {
		t.Errorf("the other run of the team after the block: %d ok, %d failed", okAfter.Load(), failedAfter.Load())
	}
	t.Logf("runaway agent: rule crossed at call 21, first 429 %s later; the other run: %d calls ok after", cut.Sub(crossed).Round(time.Millisecond), okAfter.Load())
}

// waitUsage waits until ClickHouse holds want usage events matching where.
func (r *ksRig) waitUsage(t *testing.T, where string, want int64) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var n uint64
		r.query(t, fmt.Sprintf("SELECT count() FROM %s.usage_events WHERE %s", r.chcfg.Database, where), &n)
		if int64(n) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d usage events (%s) reached ClickHouse", n, want, where)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// okCalls returns the cost and start of every served call of team, in
// order.
func (r *ksRig) okCalls(t *testing.T, team string) (costs []int64, times []time.Time) {
	t.Helper()
	rows, err := r.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT toInt64(cost_nano_usd), toUnixTimestamp(occurred_at), occurred_at_nanos FROM %s.usage_events WHERE team = ? AND status = 'ok' ORDER BY occurred_at, occurred_at_nanos", r.chcfg.Database), team)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c int64
		var sec, ns uint32
		if err := rows.Scan(&c, &sec, &ns); err != nil {
			t.Fatal(err)
		}
		costs, times = append(costs, c), append(times, time.Unix(int64(sec), int64(ns)))
	}
	return costs, times
}

// scrape reads a Prometheus text endpoint into series → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	resp, err := http.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(i, len(sorted))-1)].Round(time.Millisecond)
}
