// Package loadgen is an open-loop, fixed-rate HTTP load generator for the
// gateway's benchmarks: requests leave on schedule whatever the responses
// do, so slow responses cannot hide latency (no coordinated omission).
//
// It is for loopback and test targets only; every run is bounded in count
// and time and stops by itself.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/encoding/json"
)

// Config of one run.
type Config struct {
	Target      string // full URL, e.g. http://127.0.0.1:8080/v1/chat/completions
	Rate        int    // requests per second
	Duration    time.Duration
	Stream      bool
	Model       string
	Key         string
	Headers     map[string]string
	MaxInflight int
	// Drain bounds the wait for responses after the last send.
	Drain time.Duration
	JSON  bool
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("target: %q is not an http(s) URL", c.Target))
	}
	if c.Rate <= 0 || c.Rate > 100_000 {
		errs = append(errs, fmt.Errorf("rate: %d is not between 1 and 100000", c.Rate))
	}
	if c.Duration <= 0 || c.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("duration: %s is not between 0 and 1h", c.Duration))
	}
	if c.MaxInflight < 0 {
		errs = append(errs, errors.New("max-inflight: must be >= 0"))
	}
	return errors.Join(errs...)
}

// Percentiles of a latency sample.
type Percentiles struct {
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Result of a run. Latency is measured from each request's scheduled send
// time (what a caller waiting on the schedule sees); Service from the moment
// it actually left.
type Result struct {
	Target       string         `json:"target"`
	Rate         int            `json:"rate"`
	Duration     time.Duration  `json:"duration"`
	Sent         int            `json:"sent"`
	OK           int            `json:"ok"`
	Errors       int            `json:"errors"`
	ErrorsByKind map[string]int `json:"errors_by_kind,omitempty"`
	AchievedRate float64        `json:"achieved_rate"`
	Latency      Percentiles    `json:"latency"`
	Service      Percentiles    `json:"service_latency"`
	TTFB         *Percentiles   `json:"ttfb,omitempty"`
}

// ParseFlags reads `burnrate loadgen` flags.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("burnrate loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := Config{Headers: map[string]string{}}
	fs.StringVar(&c.Target, "target", "", "base URL (…/v1/chat/completions is added when the path is empty) or full URL")
	fs.IntVar(&c.Rate, "rate", 100, "requests per second (open loop)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send")
	fs.BoolVar(&c.Stream, "stream", false, "send streaming chat requests and read the whole SSE body")
	fs.StringVar(&c.Model, "model", "gpt-4o-mini", "model of the chat request")
	fs.StringVar(&c.Key, "key", "", "bearer token")
	fs.IntVar(&c.MaxInflight, "max-inflight", 2000, "cap on requests in flight (beyond it a send counts as an error)")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "wait this long for responses after the last send")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON")
	fs.Func("header", "extra header 'K: V' (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return fmt.Errorf("header %q is not 'K: V'", s)
		}
		c.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if u, err := url.Parse(c.Target); err == nil && (u.Path == "" || u.Path == "/") {
		c.Target = strings.TrimRight(c.Target, "/") + "/v1/chat/completions"
	}
	return c, c.Validate()
}

type sample struct {
	latency, service, ttfb time.Duration
	kind                   string // "" for success
}

// Run sends Rate×Duration requests on schedule and reports.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 2000
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.Model == "" {
		cfg.Model = "gpt-4o-mini"
	}
	body := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Give me one sentence about spending wisely on AI."}],"max_tokens":64%s}`,
		cfg.Model, map[bool]string{true: `,"stream":true`, false: ""}[cfg.Stream]))
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: cfg.MaxInflight, MaxIdleConnsPerHost: cfg.MaxInflight,
		IdleConnTimeout: 30 * time.Second, DisableCompression: true}, Timeout: cfg.Duration + cfg.Drain}
	defer client.CloseIdleConnections()

	n := int(float64(cfg.Rate) * cfg.Duration.Seconds())
	samples := make([]sample, n)
	var inflight atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	sent := 0
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			n = i
			break
		}
		sent++
		if inflight.Load() >= int64(cfg.MaxInflight) {
			samples[i] = sample{kind: "max_inflight"}
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			defer inflight.Add(-1)
			samples[i] = do(ctx, client, cfg, body, due)
		}(i, due)
	}
	elapsedSend := time.Since(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Drain):
	}
	res := summarise(cfg, samples[:sent], elapsedSend)
	if out != nil {
		if cfg.JSON {
			b, _ := json.MarshalIndent(res, "", "  ")
			fmt.Fprintln(out, string(b))
		} else {
			res.Print(out)
		}
	}
	return res, nil
}

func do(ctx context.Context, client *http.Client, cfg Config, body []byte, due time.Time) sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Target, bytes.NewReader(body))
	if err != nil {
		return sample{kind: "request"}
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.Key != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Key)
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	sentAt := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return sample{kind: "transport", latency: time.Since(due), service: time.Since(sentAt)}
	}
	var ttfb time.Duration
	if cfg.Stream {
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadByte(); err == nil {
			ttfb = time.Since(sentAt)
		}
		io.Copy(io.Discard, br)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	s := sample{latency: time.Since(due), service: time.Since(sentAt), ttfb: ttfb}
	if resp.StatusCode >= 400 {
		s.kind = fmt.Sprintf("status_%d", resp.StatusCode)
	}
	return s
}

func summarise(cfg Config, samples []sample, elapsed time.Duration) Result {
	res := Result{Target: cfg.Target, Rate: cfg.Rate, Duration: cfg.Duration, Sent: len(samples), ErrorsByKind: map[string]int{}}
	var lat, svc, ttfb []time.Duration
	for _, s := range samples {
		if s.kind != "" {
			res.Errors++
			res.ErrorsByKind[s.kind]++
			continue
		}
		res.OK++
		lat = append(lat, s.latency)
		svc = append(svc, s.service)
		if s.ttfb > 0 {
			ttfb = append(ttfb, s.ttfb)
		}
	}
	if elapsed > 0 {
		res.AchievedRate = float64(len(samples)) / elapsed.Seconds()
	}
	res.Latency, res.Service = percentiles(lat), percentiles(svc)
	if cfg.Stream && len(ttfb) > 0 {
		p := percentiles(ttfb)
		res.TTFB = &p
	}
	return res
}

// percentiles are exact over the whole sample (nearest rank).
func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration {
		i := int(q*float64(len(d))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(d) {
			i = len(d) - 1
		}
		return d[i]
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

// Print writes a human summary.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "target %s: %d req/s for %s\n", r.Target, r.Rate, r.Duration)
	fmt.Fprintf(w, "sent %d, ok %d, errors %d, achieved %.0f req/s\n", r.Sent, r.OK, r.Errors, r.AchievedRate)
	for k, v := range r.ErrorsByKind {
		fmt.Fprintf(w, "  %s: %d\n", k, v)
	}
	fmt.Fprintf(w, "latency from schedule: p50 %s  p90 %s  p99 %s  max %s\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(w, "service latency:       p50 %s  p90 %s  p99 %s  max %s\n", r.Service.P50, r.Service.P90, r.Service.P99, r.Service.Max)
	if r.TTFB != nil {
		fmt.Fprintf(w, "time to first byte:    p50 %s  p90 %s  p99 %s  max %s\n", r.TTFB.P50, r.TTFB.P90, r.TTFB.P99, r.TTFB.Max)
	}
}
