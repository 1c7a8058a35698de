package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/services/ingress"
	"github.com/burnrate/burnrate/services/loadgen"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

const benchToken = "sk-br-bench"

// proc is a burnrate subprocess.
type proc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func startProc(tb testing.TB, envs []string, args ...string) *proc {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), envs...)
	p := &proc{cmd: cmd, logs: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	})
	return p
}

// peakRSS is the process's high-water resident set (VmHWM) in MB.
func (p *proc) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func waitHTTP(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s did not come up", url)
}

type benchRig struct {
	mockURL, ingressURL, metricsURL string
	ingress                         *proc
	kcfg                            kclient.Config
}

// startBenchRig runs mock-upstream and ingress as their own processes
// against the real broker, with one key and one route.
func startBenchRig(b *testing.B) *benchRig {
	b.Helper()
	kcfg := env.KafkaConfig(b)
	cl, err := kclient.New(kcfg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if _, err := ktopics.Ensure(context.Background(), kadm.NewClient(cl), kcfg.TopicPrefix, ktopics.Catalog()); err != nil {
		b.Fatal(err)
	}
	mockPort, _ := localch.FreePort()
	ingPort, _ := localch.FreePort()
	metricsPort, _ := localch.FreePort()
	r := &benchRig{mockURL: fmt.Sprintf("http://127.0.0.1:%d", mockPort), ingressURL: fmt.Sprintf("http://127.0.0.1:%d", ingPort),
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), kcfg: kcfg}
	startProc(b, nil, "mock-upstream", "--listen", fmt.Sprintf("127.0.0.1:%d", mockPort))
	dir := b.TempDir()
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic_prefix: %q
log:
  level: warn
metrics:
  listen: "127.0.0.1:%d"
ingress:
  listen: "127.0.0.1:%d"
  spool: {dir: %q}
  keys:
    - {id: vk_bench, sha256: %s, team: bench, app: loadgen, env: test, attribution_headers: true}
  routes:
    - {model: gpt-4o-mini, provider: openai, base_url: "%s/v1", api_key_env: BENCH_UPSTREAM_KEY}
`, kcfg.Brokers[0], kcfg.TopicPrefix, metricsPort, ingPort, filepath.Join(dir, "spool"), ingress.HashKey(benchToken), r.mockURL)
	path := filepath.Join(dir, "burnrate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	r.ingress = startProc(b, []string{"BENCH_UPSTREAM_KEY=sk-mock"}, "ingress", "--config", path)
	waitHTTP(b, r.mockURL+"/v1/models")
	waitHTTP(b, r.ingressURL+"/healthz")
	return r
}

func load(b *testing.B, target string, stream bool, rate int, d time.Duration) loadgen.Result {
	b.Helper()
	cfg := loadgen.Config{Target: target + "/v1/chat/completions", Rate: rate, Duration: d, Stream: stream, Model: "gpt-4o-mini",
		Key: benchToken, MaxInflight: 2000}
	res, err := loadgen.Run(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// BenchmarkIngressAddedLatency compares the ingress with calling the mock
// upstream directly at 2,000 req/s, non-streaming and streaming, and reports
// the added p50/p99 and the ingress's peak RSS. One iteration is one run of
// each; use -benchtime=1x.
func BenchmarkIngressAddedLatency(b *testing.B) {
	r := startBenchRig(b)
	const rate = 2000
	d := 10 * time.Second
	if s := os.Getenv("BURNRATE_BENCH_SECONDS"); s != "" {
		n, _ := strconv.Atoi(s)
		d = time.Duration(n) * time.Second
	}
	for i := 0; i < b.N; i++ {
		for _, stream := range []bool{false, true} {
			before := r.addedHistogram(b)
			name := "plain"
			if stream {
				name = "stream"
			}
			load(b, r.ingressURL, stream, rate, 2*time.Second) // warm up both paths
			direct := load(b, r.mockURL, stream, rate, d)
			via := load(b, r.ingressURL, stream, rate, d)
			// Added latency from each request's actual send (the generator's
			// own scheduling lag is left out); from-schedule figures are logged.
			b.ReportMetric(float64(via.Service.P50-direct.Service.P50)/1e3, name+"-added-p50-µs")
			b.ReportMetric(float64(via.Service.P99-direct.Service.P99)/1e3, name+"-added-p99-µs")
			b.ReportMetric(via.AchievedRate, name+"-ingress-req/s")
			// The ingress's own view: burnrate_ingress_added_latency_seconds
			// (handler time minus upstream time), for the calls of this run.
			own := r.addedHistogram(b).minus(before)
			b.ReportMetric(own.quantile(0.5)*1e6, name+"-own-added-p50-µs")
			b.ReportMetric(own.quantile(0.99)*1e6, name+"-own-added-p99-µs")
			b.ReportMetric(float64(via.Errors), name+"-ingress-errors")
			b.Logf("%s: service latency direct p50 %s p99 %s | via ingress p50 %s p99 %s; from schedule direct p50 %s p99 %s | via p50 %s p99 %s | %0.f req/s, %d errors",
				name, direct.Service.P50, direct.Service.P99, via.Service.P50, via.Service.P99,
				direct.Latency.P50, direct.Latency.P99, via.Latency.P50, via.Latency.P99, via.AchievedRate, via.Errors)
		}
	}
	b.ReportMetric(r.ingress.peakRSS(), "ingress-peak-RSS-MB")
}

// BenchmarkCollectorIntoKafka posts NDJSON batches of raw provider usage to
// /v1/usage from 4 clients and reports events/s until Kafka holds them all.
func BenchmarkCollectorIntoKafka(b *testing.B) {
	r := startBenchRig(b)
	const batch = 1000
	var body bytes.Buffer
	for i := 0; i < batch; i++ {
		fmt.Fprintf(&body, `{"provider":"openai","model":"gpt-4o-mini","usage":{"prompt_tokens":%d,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":0}},"attribution":{"user":"u%d","feature":"bulk"}}`+"\n", 100+i%50, i%20)
	}
	payload := body.Bytes()
	total := 200
	if s := os.Getenv("BURNRATE_BENCH_BATCHES"); s != "" {
		total, _ = strconv.Atoi(s)
	}
	cl, err := kclient.New(r.kcfg, "bench-reader")
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := ktopics.WithPrefix(r.kcfg.TopicPrefix).Usage()
	end := func() int64 {
		offs, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			return -1
		}
		var n int64
		offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	post := func() error {
		req, _ := http.NewRequest(http.MethodPost, r.ingressURL+"/v1/usage", bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+benchToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := post(); err != nil { // warm up
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		start0 := end()
		t0 := time.Now()
		work := make(chan struct{}, total)
		for j := 0; j < total; j++ {
			work <- struct{}{}
		}
		close(work)
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			go func() {
				for range work {
					if err := post(); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for w := 0; w < 4; w++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		want := start0 + int64(total*batch)
		for end() < want {
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("only %d of %d events reached Kafka", end()-start0, total*batch)
			}
			time.Sleep(20 * time.Millisecond)
		}
		el := time.Since(t0)
		b.ReportMetric(float64(total*batch)/el.Seconds(), "events/s")
		b.Logf("%d events into Kafka in %s", total*batch, el.Round(time.Millisecond))
	}
	b.ReportMetric(r.ingress.peakRSS(), "ingress-peak-RSS-MB")
}

// histogram is a scraped Prometheus histogram: cumulative counts by bound.
type histogram struct {
	bounds []float64
	counts []float64
}

func (r *benchRig) addedHistogram(b *testing.B) histogram {
	b.Helper()
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `burnrate_ingress_added_latency_seconds_bucket{endpoint="chat_completions",le="`) {
			continue
		}
		rest := strings.TrimPrefix(line, `burnrate_ingress_added_latency_seconds_bucket{endpoint="chat_completions",le="`)
		le, count, _ := strings.Cut(rest, `"} `)
		bound, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err = 1e9, nil
		}
		c, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err != nil || err2 != nil {
			continue
		}
		h.bounds = append(h.bounds, bound)
		h.counts = append(h.counts, c)
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(o.counts) {
			out.counts[i] -= o.counts[i]
		}
	}
	return out
}

// quantile interpolates linearly inside the bucket, as histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 || h.counts[len(h.counts)-1] == 0 {
		return 0
	}
	rank := q * h.counts[len(h.counts)-1]
	lower, prev := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if c == prev {
				return h.bounds[i]
			}
			return lower + (h.bounds[i]-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = h.bounds[i], c
	}
	return h.bounds[len(h.bounds)-1]
}
