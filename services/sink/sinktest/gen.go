// Package sinktest makes deterministic, valid events and Kafka records for
// the sink's tests and benchmarks, and the malformed ones its dead-letter
// path must catch. Tests only.
package sinktest

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/schemas/events"
)

var (
	teams     = []string{"payments", "search", "support", "growth", "risk", "platform"}
	apps      = []string{"checkout-assistant", "ranker", "helpdesk-bot", "copywriter", "fraud-explainer", "batch-eval", "summarizer"}
	models    = []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-3-5"}
	customers = []string{"", "acme", "globex", "initech"}
)

// Usage returns the i-th usage event of a stream: attribution cycles over
// six teams, apps, models and customers; cost varies with i so sums are not
// multiples of anything.
func Usage(i int, at time.Time) events.Usage {
	at = at.UTC()
	in := int64(200 + i%997)
	out := int64(50 + i%313)
	model := models[i%len(models)]
	provider := "openai"
	if model[0] == 'c' {
		provider = "anthropic"
	}
	u := events.Usage{
		Schema:     events.SchemaUsage,
		ID:         events.NewID(at),
		OccurredAt: at,
		ReceivedAt: at.Add(3 * time.Millisecond),
		Attribution: events.Attribution{
			Org:          "acme-corp",
			Team:         teams[i%len(teams)],
			App:          apps[i%len(apps)],
			Env:          []string{"prod", "staging"}[i%2],
			User:         fmt.Sprintf("user-%d", i%17),
			Customer:     customers[i%len(customers)],
			Feature:      []string{"chat", "search", ""}[i%3],
			VirtualKeyID: fmt.Sprintf("vk_%02d", i%11),
			Tags:         map[string]string{"tier": []string{"gold", "free"}[i%2]},
		},
		Provider:       provider,
		RequestedModel: model,
		ServedModel:    model,
		Tokens:         events.Tokens{Input: in, CachedInput: int64(i % 64), Output: out, Reasoning: out / 5},
		Cost:           events.Cost{TotalNanoUSD: in*2500 + out*10000 + int64(i%7), PriceVersion: "test-2026-11-01"},
		LatencyMS:      int64(100 + i%900),
		Status:         events.StatusOK,
	}
	switch i % 50 {
	case 7:
		u.Status = events.StatusUpstreamError
		u.Error = "upstream 503"
	case 13:
		u.Status = events.StatusBlocked
		u.ServedModel = ""
		u.Tokens = events.Tokens{}
		u.Cost.TotalNanoUSD = 0
	}
	if i%3 == 0 {
		u.Attribution.AgentRunID = fmt.Sprintf("run-%d", i%101)
		u.Attribution.AgentStep = 1 + i%9
	}
	return u
}

// UsageRecord encodes Usage(i, at) as a record of topic, keyed as the
// ingress keys it.
func UsageRecord(topic string, i int, at time.Time) (*kgo.Record, events.Usage) {
	u := Usage(i, at)
	b, err := events.Encode(u)
	if err != nil {
		panic(err)
	}
	key := u.Attribution.AgentRunID
	if key == "" {
		key = u.Attribution.VirtualKeyID
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}, u
}

// GPU returns the i-th GPU sample.
func GPU(i int, at time.Time) events.GPUSample {
	at = at.UTC()
	return events.GPUSample{
		Schema: events.SchemaGPU, ID: events.NewID(at), OccurredAt: at,
		Node: fmt.Sprintf("gpu-node-%d", i%3), GPUUUID: fmt.Sprintf("GPU-%08d", i%8), GPUIndex: i % 8,
		GPUModel: "NVIDIA H100 80GB HBM3", Attribution: events.Workload{Team: teams[i%len(teams)], Namespace: "inference"},
		IntervalMS: 10000, GPUUtil: float64(i%11) / 10, GrEngineActive: float64(i%5) / 8, FBUsedBytes: 1 << 30, FBFreeBytes: 1 << 30,
		PowerWatts: 300, EnergyJoules: 3000, CostNanoUSD: 11111111, IdleCostNanoUSD: 8333333,
		PriceVersion: "test-2026-11-01", Source: events.GPUSource("dcgm-exporter"),
	}
}

// Anomaly returns the i-th anomaly.
func Anomaly(i int, at time.Time) events.Anomaly {
	at = at.UTC()
	return events.Anomaly{
		Schema: events.SchemaAnomaly, ID: events.NewID(at), Subject: "team=" + teams[i%len(teams)],
		Metric: "spend_nano_usd_per_min", Observed: 9.5e8, Baseline: 4.2e7, Score: 11.3,
		WindowStart: at.Truncate(time.Minute).Add(-time.Minute), WindowEnd: at.Truncate(time.Minute),
		Detector: events.Detector("mad"), DetectedAt: at, Severity: events.Severity("critical"),
	}
}

// Verdict returns the i-th verdict (a block).
func Verdict(i int, at time.Time) events.Verdict {
	at = at.UTC()
	return events.Verdict{
		Schema: events.SchemaVerdict, ID: events.NewID(at), Subject: "team=" + teams[i%len(teams)],
		Action: events.ActionBlock, Reason: "daily budget exhausted", LimitNanoUSD: 5e9, SpentNanoUSD: 5e9 + int64(i),
		IssuedAt: at, ExpiresAt: at.Add(24 * time.Hour), IssuedBy: "killswitch-0",
	}
}

// BudgetEvent returns the i-th budget event: even ones a threshold of a
// monthly team budget, odd ones a loop break (no budget, no period).
func BudgetEvent(i int, at time.Time) events.BudgetEvent {
	at = at.UTC()
	e := events.BudgetEvent{
		Schema: events.SchemaBudgetEvent, ID: events.NewID(at), OccurredAt: at, Kind: events.BudgetThreshold,
		Severity: events.SeverityWarning, Subject: "team=" + teams[i%len(teams)], Budget: "monthly",
		Period:       events.PeriodMonth,
		ThresholdPct: 80, LimitNanoUSD: 5e12, SpentNanoUSD: 4e12 + int64(i), Reason: "80 % of the monthly budget spent",
		Actor: "killswitch/killswitch-0",
	}
	start := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	e.PeriodStart, e.PeriodEnd = &start, &end
	if i%2 == 1 {
		e.Kind, e.Severity, e.Subject, e.Reason = events.BudgetLoopBreak, events.SeverityCritical, fmt.Sprintf("agent_run=run-%d", i), "same prompt 21 times"
		e.Budget, e.Period, e.PeriodStart, e.PeriodEnd, e.ThresholdPct, e.LimitNanoUSD = "", "", nil, nil, 0, 0
	}
	return e
}

// Record encodes any event for topic with key.
func Record(topic, key string, e events.Event) *kgo.Record {
	b, err := events.Encode(e)
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

// Bad returns records the sink must send to the dead-letter topic, each
// with a word its error must contain.
func Bad(topic string, at time.Time) (recs []*kgo.Record, wantErr []string) {
	add := func(v []byte, want string) {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("bad"), Value: v})
		wantErr = append(wantErr, want)
	}
	add([]byte(`{not json`), "decode")
	add([]byte(``), "decode")
	u := Usage(1, at)
	u.Status = "weird"
	b, _ := events.Encode(u)
	add(b, "status")
	u = Usage(2, at)
	u.Tokens.Input = -5
	b, _ = events.Encode(u)
	add(b, "tokens.input")
	u = Usage(3, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
	b, _ = events.Encode(u)
	add(b, "DateTime range")
	u = Usage(4, at)
	u.Schema = "gpu.v1"
	b, _ = events.Encode(u)
	add(b, "schema")
	return recs, wantErr
}
