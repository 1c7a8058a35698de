package dev

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/services/gpuagent"
	"github.com/burnrate/burnrate/services/ingress"
	"github.com/burnrate/burnrate/services/killswitch"
	"github.com/burnrate/burnrate/services/meter"
	"github.com/burnrate/burnrate/services/mockupstream"
	"github.com/burnrate/burnrate/services/sink"
	"github.com/burnrate/burnrate/streams/kclient"
)

// gpusFixture is a dcgm-exporter scrape of 8 H100s: 5 busy, 2 idle, 1
// unallocated (the gpu-agent's test fixture).
//
//go:embed gpus.prom
var gpusFixture []byte

// demoPolicies: growth breaches a small daily budget within seconds; the
// loop rule stops the runaway agent.
const demoPolicies = `# Written by burnrate dev at every start.
budgets:
  - {name: growth-daily, subject: team=growth, period: day, limit_usd: "0.50", lease_below_pct: 100}
  - {name: payments-monthly, subject: team=payments, period: month, limit_usd: "500"}
  - {name: research-daily, subject: team=research, period: day, limit_usd: "50"}
loops: {max_repeats: 20, max_calls_per_minute: 600, block_for: 10m}
`

// demo keys: token → attribution.
var demoKeys = []struct{ token, team, app string }{
	{"demo-payments", "payments", "checkout-assistant"},
	{"demo-search", "search", "ranker"},
	{"demo-support", "support", "helpdesk-bot"},
	{"demo-growth", "growth", "campaign-writer"},
	{"demo-research", "research", "planner-agent"},
}

// runDemo runs every service in this process against the dev broker and
// ClickHouse, with a mock upstream, a fixture dcgm-exporter and a traffic
// simulator, and returns the endpoints. Services stop when ctx ends; wait
// returns when they all did.
func runDemo(ctx context.Context, cfg Config, kcfg kclient.Config, chcfg clickhouse.Config, log *zap.Logger) (endpoints map[string]string, adminToken string, wait func(), err error) {
	var wg sync.WaitGroup
	wait = wg.Wait
	serve := func(name string, h http.Handler) (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("dev: %s: %w", name, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); srv.Serve(ln) }()
		go func() { <-ctx.Done(); srv.Close() }()
		return "http://" + ln.Addr().String(), nil
	}
	mockURL, err := serve("mock upstream", mockupstream.Handler(mockupstream.Config{Chunks: 8}))
	if err != nil {
		return nil, "", wait, err
	}
	exporterURL, err := serve("fixture exporter", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(gpusFixture)
	}))
	if err != nil {
		return nil, "", wait, err
	}
	policies := filepath.Join(cfg.DataDir, "policies.yaml")
	if err := os.WriteFile(policies, []byte(demoPolicies), 0o644); err != nil {
		return nil, "", wait, fmt.Errorf("dev: %w", err)
	}
	adminToken = os.Getenv("BURNRATE_ADMIN_TOKEN")
	if adminToken == "" {
		b := make([]byte, 12)
		rand.Read(b)
		adminToken = hex.EncodeToString(b)
	}
	getenv := func(k string) string {
		switch k {
		case "DEMO_UPSTREAM_KEY":
			return "sk-mock"
		case "BURNRATE_ADMIN_TOKEN":
			return adminToken
		}
		return os.Getenv(k)
	}
	cat, err := prices.Load("")
	if err != nil {
		return nil, "", wait, err
	}
	pricer := prices.NewPricer(cat, nil)

	ing := ingress.DefaultConfig()
	ing.Listen = fmt.Sprintf("127.0.0.1:%d", cfg.IngressPort)
	ing.Spool.Dir = filepath.Join(cfg.DataDir, "spool")
	ing.HeartbeatInterval = time.Second
	for _, k := range demoKeys {
		ing.Keys = append(ing.Keys, ingress.Key{ID: "vk_" + k.team, SHA256: ingress.HashKey(k.token), Team: k.team, App: k.app,
			Env: "demo", AttributionHeaders: true})
	}
	for _, m := range []string{"gpt-4o", "gpt-4o-mini"} {
		ing.Routes = append(ing.Routes, ingress.Route{Model: m, Provider: "openai", BaseURL: mockURL + "/v1", APIKeyEnv: "DEMO_UPSTREAM_KEY"})
	}
	ingressAddr := make(chan string, 1)

	sk := sink.DefaultConfig()
	sk.ShutdownTimeout = 5 * time.Second
	mt := meter.DefaultConfig()
	mt.GPUSpend = true
	mt.Anomaly.GPUIdleMinutes = 3
	ks := killswitch.DefaultConfig()
	ks.PoliciesFile = policies
	ks.AdminListen = fmt.Sprintf("127.0.0.1:%d", cfg.AdminPort)
	ks.FlushInterval = 50 * time.Millisecond
	ks.ReconcileInterval = time.Minute
	ga := gpuagent.DefaultConfig()
	ga.Source, ga.ExporterURL, ga.Node, ga.TimeScale = "dcgm-exporter", exporterURL+"/metrics", "gpu-node-1", 30
	ga.Attribution = []gpuagent.Rule{{Namespace: "ml-train", Team: "research", App: "training"}, {Namespace: "ml-serve", Team: "search", App: "serving"}}

	quiet := log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	services := []struct {
		name string
		run  func(context.Context) error
	}{
		{"sink", func(ctx context.Context) error {
			return sink.Run(ctx, sk, sink.Deps{Kafka: kcfg, ClickHouse: chcfg, Log: quiet.With(zap.String("service", "sink"))})
		}},
		{"meter", func(ctx context.Context) error {
			return meter.Run(ctx, mt, meter.Deps{Kafka: kcfg, Log: quiet.With(zap.String("service", "meter")), Now: time.Now})
		}},
		{"killswitch", func(ctx context.Context) error {
			return killswitch.Run(ctx, ks, killswitch.Deps{Kafka: kcfg, ClickHouse: &chcfg, Log: quiet.With(zap.String("service", "killswitch")),
				Now: time.Now, Getenv: getenv, SubjectKeys: meter.SubjectKeys(), Combinations: mt.Combinations})
		}},
		{"gpu-agent", func(ctx context.Context) error {
			return gpuagent.Run(ctx, ga, gpuagent.Deps{Kafka: kcfg, Pricer: pricer, Log: quiet.With(zap.String("service", "gpu-agent")), Now: time.Now})
		}},
		{"ingress", func(ctx context.Context) error {
			return ingress.Run(ctx, ing, ingress.Deps{Kafka: kcfg, Pricer: pricer, Log: quiet.With(zap.String("service", "ingress")),
				Now: time.Now, Getenv: getenv, OnListen: func(a string) { ingressAddr <- a }})
		}},
	}
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("service stopped with an error", zap.String("service", s.name), zap.Error(err))
			}
		}()
	}
	var ingressURL string
	select {
	case a := <-ingressAddr:
		ingressURL = "http://" + a
	case <-ctx.Done():
		return nil, "", wait, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, "", wait, errors.New("dev: the ingress did not start in 60 s")
	}
	wg.Add(1)
	go func() { defer wg.Done(); simulate(ctx, ingressURL) }()
	return map[string]string{"gateway (OpenAI/Anthropic API)": ingressURL + "/v1", "killswitch admin API": "http://" + ks.AdminListen,
		"mock upstream": mockURL, "fixture dcgm-exporter": exporterURL + "/metrics"}, adminToken, wait, nil
}

// simulate is the demo's traffic: steady calls of three teams for several
// customers, a team that bursts through its budget, a well-behaved agent
// and a runaway one looping on one prompt.
func simulate(ctx context.Context, base string) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(token, model, run, customer, prompt string) int {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":64,"messages":[{"role":"user","content":%q}]}`, model, prompt)
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if run != "" {
			req.Header.Set("X-Burnrate-Agent-Run", run)
		}
		if customer != "" {
			req.Header.Set("X-Burnrate-Customer", customer)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	every := func(d time.Duration, fn func(i int)) {
		go func() {
			t := time.NewTicker(d)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					fn(i)
				}
			}
		}()
	}
	customers := []string{"acme", "globex", "initech", "umbrella"}
	steady := []string{"demo-payments", "demo-search", "demo-support"}
	every(150*time.Millisecond, func(i int) {
		call(steady[i%len(steady)], []string{"gpt-4o-mini", "gpt-4o"}[i%2], "", customers[i%len(customers)], fmt.Sprintf("question %d about an order", i))
	})
	long := strings.Repeat("Write a campaign for our spring launch. ", 60)
	every(50*time.Millisecond, func(i int) { call("demo-growth", "gpt-4o", "", "", long) })
	every(500*time.Millisecond, func(i int) {
		call("demo-research", "gpt-4o-mini", fmt.Sprintf("planner-%d", i/40), "", fmt.Sprintf("plan step %d", i))
	})
	every(50*time.Millisecond, func(i int) { call("demo-research", "gpt-4o-mini", "runaway-1", "", "try again: fix the failing test") })
	<-ctx.Done()
}
