package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fixture exporter serves 8 H100s (services/gpuagent/testdata/exporter/
// v2-k8s.prom): GPUs 0–2 and 5 in namespace ml-train, 3, 4 and 6 in
// ml-serve, 7 unallocated; 5 and 6 are idle (GR engine active 0.03, 0.01).
const (
	gpuSamples = 60 // 10 minutes of event time at 10 s
	// One H100 80GB HBM3 for 10 s at $2.99/h: 2.99e9 × 10,000 / 3.6e6 =
	// 8,305,555.56 nano-USD, rounded half up.
	h100TenSeconds = 8_305_556
)

// idleTenSeconds is the idle part of those 10 s, by hand: cost × (1 − GR
// engine active), rounded; all of it for the unallocated GPU 7.
var idleTenSeconds = [8]int64{
	415_278,   // 0: 8,305,556 × 0.05 = 415,277.8
	830_556,   // 1: × 0.10 = 830,555.6
	1_245_833, // 2: × 0.15 = 1,245,833.4
	2_491_667, // 3: × 0.30 = 2,491,666.8
	3_322_222, // 4: × 0.40 = 3,322,222.4
	8_056_389, // 5: × 0.97 = 8,056,389.32
	8_222_500, // 6: × 0.99 = 8,222,500.44
	8_305_556, // 7: unallocated, all idle
}

// TestGPUAgentCostsAndIdleAnomalies runs `burnrate gpu-agent` on this
// machine (no GPU, no DCGM, no NVML) with dcgm first: it reports both
// libraries unavailable and falls back to dcgm-exporter, a fixture serving 8
// GPUs for exactly 10 minutes of event time. ClickHouse then holds the
// GPU-hours, cost and idle cost per team computed by hand above, and the
// meter raised one idle anomaly per idle GPU (5, 6, 7) and none for the
// busy ones.
func TestGPUAgentCostsAndIdleAnomalies(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("..", "services", "gpuagent", "testdata", "exporter", "v2-k8s.prom"))
	if err != nil {
		t.Fatal(err)
	}
	// One probe by the agent, then one scrape per sample; then the exporter
	// goes away, so exactly gpuSamples intervals are sampled.
	var mu sync.Mutex
	served := 0
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if served == gpuSamples+1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			go srv.CloseClientConnections()
			return
		}
		served++
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(fixture)
	}))
	defer srv.Close()

	r := newSinkRig(t, `  group: gpu-sink
  batch_interval: 200ms
meter:
  group: gpu-meter
  gpu_spend: true
  anomaly:
    gpu_idle_minutes: 5
gpu_agent:
  source: dcgm
  fallback: [nvml, dcgm-exporter]
  exporter_url: "`+srv.URL+`/metrics"
  interval: 10s
  time_scale: 50
  retry_interval: 1h
  attribution:
    - {namespace: ml-train, team: research, app: training}
    - {namespace: ml-serve, team: search, app: serving}
`)
	startService(t, r.cfgFile, "sink")
	startService(t, r.cfgFile, "meter")
	agent := startService(t, r.cfgFile, "gpu-agent")

	want := 8 * gpuSamples
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n uint64
		r.query(t, fmt.Sprintf("SELECT count() FROM %s.gpu_samples", r.chcfg.Database), &n)
		if n == uint64(want) {
			break
		}
		if n > uint64(want) || time.Now().After(deadline) {
			t.Fatalf("%d GPU samples in ClickHouse, want %d; agent logs:\n%s", n, want, tailString(agent.p.logs.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs := agent.p.logs.String()
	for _, s := range []string{"DCGM source unavailable", "NVML source unavailable"} {
		if !strings.Contains(logs, s) {
			t.Errorf("agent logs do not say %q:\n%s", s, tailString(logs, 3000))
		}
	}
	var fromExporter uint64
	r.query(t, fmt.Sprintf("SELECT count() FROM %s.gpu_samples WHERE source = 'dcgm-exporter' AND node = 'gpu-node-1'", r.chcfg.Database), &fromExporter)
	if fromExporter != uint64(want) {
		t.Errorf("%d of %d samples from dcgm-exporter on gpu-node-1", fromExporter, want)
	}
	if agent.exited() {
		t.Errorf("the agent exited; logs:\n%s", tailString(logs, 3000))
	}

	type teamWant struct {
		gpus []int
		app  string
	}
	teamCost := map[string]int64{}
	for team, tw := range map[string]teamWant{"research": {[]int{0, 1, 2, 5}, "training"}, "search": {[]int{3, 4, 6}, "serving"}, "__idle__": {[]int{7}, ""}} {
		var wantCost, wantIdle int64
		for _, g := range tw.gpus {
			wantCost += gpuSamples * h100TenSeconds
			wantIdle += gpuSamples * idleTenSeconds[g]
		}
		teamCost["team="+team] = wantCost
		wantMS := uint64(len(tw.gpus) * gpuSamples * 10_000)
		var ms uint64
		var cost, idle int64
		var apps string
		r.query(t, fmt.Sprintf("SELECT sum(toUInt64(interval_ms)), toInt64(sum(cost_nano_usd)), toInt64(sum(idle_cost_nano_usd)), arrayStringConcat(groupUniqArray(app), ',') FROM %s.gpu_samples WHERE team = '%s'", r.chcfg.Database, team), &ms, &cost, &idle, &apps)
		if ms != wantMS || cost != wantCost || idle != wantIdle || apps != tw.app {
			t.Errorf("%s: %.4f GPU-hours, cost %d, idle %d, apps %q; want %.4f GPU-hours, cost %d, idle %d, app %q",
				team, float64(ms)/3.6e6, cost, idle, apps, float64(wantMS)/3.6e6, wantCost, wantIdle, tw.app)
		}
		// The hourly rollup agrees with the raw samples (an INSERT writes
		// its views after the raw part: wait for it).
		var rollCost, rollIdle int64
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			r.query(t, fmt.Sprintf("SELECT toInt64(sum(cost_nano_usd)), toInt64(sum(idle_cost_nano_usd)) FROM %s.gpu_hour WHERE team = '%s'", r.chcfg.Database, team), &rollCost, &rollIdle)
			if rollCost == wantCost && rollIdle == wantIdle || time.Now().After(deadline) {
				break
			}
		}
		if rollCost != wantCost || rollIdle != wantIdle {
			t.Errorf("%s: gpu_hour cost %d idle %d, want %d and %d", team, rollCost, rollIdle, wantCost, wantIdle)
		}
		t.Logf("%s: %.4f GPU-hours, $%.6f, of which idle $%.6f", team, float64(ms)/3.6e6, float64(cost)/1e9, float64(idle)/1e9)
	}

	// With meter.gpu_spend the GPU cost counts toward team budgets: spend.v1
	// holds it per team, as it holds token spend.
	deadline = time.Now().Add(30 * time.Second)
	for {
		spend := r.readSpend(t)
		ok := true
		for subject, cost := range teamCost {
			if spend[subject][0] != cost {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spend.v1 per team %v, want the GPU cost %v", spend, teamCost)
		}
	}

	// One idle anomaly per idle GPU, none for the busy ones.
	deadline = time.Now().Add(60 * time.Second)
	for {
		rows, err := r.ch.Query(t.Context(), fmt.Sprintf("SELECT subject, count() FROM %s.anomalies WHERE metric = 'gpu_idle_fraction' GROUP BY subject ORDER BY subject", r.chcfg.Database))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for rows.Next() {
			var s string
			var n uint64
			if err := rows.Scan(&s, &n); err != nil {
				t.Fatal(err)
			}
			got[s] = n
		}
		rows.Close()
		want := map[string]uint64{}
		for _, g := range []int{5, 6, 7} {
			want[fmt.Sprintf("gpu=GPU-7d3e1c52-9b0a-4f6e-8c21-5a4b3c2d1e0%d", g)] = 1
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle anomalies %v, want %v", got, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
