package events

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the Go values in goldenCases")

// at returns a fixed UTC time, minutes and nanoseconds after a base.
func at(min, nsec int) time.Time {
	return time.Date(2025, 3, 14, 9, 26+min, 53, nsec, time.UTC)
}

func validUsage() Usage {
	return Usage{
		Schema:     SchemaUsage,
		ID:         "019593fa-5b48-796f-a8ab-0cbe2f65a9ea",
		OccurredAt: at(0, 589793000),
		ReceivedAt: at(0, 912000000),
		Attribution: Attribution{
			Org: "acme", Team: "payments", App: "checkout-assistant", Env: "prod",
			User: "u-1842", Customer: "cus_9f2", Feature: "refund-explainer",
			VirtualKeyID: "vk_payments_prod", AgentRunID: "run_01HQ7", AgentStep: 3,
			Tags: map[string]string{"region": "eu-west-1", "tier": "gold"},
		},
		Provider:       "openai",
		RequestedModel: "gpt-4o",
		ServedModel:    "gpt-4o-2024-08-06",
		Route:          "/v1/chat/completions",
		Tokens:         Tokens{Input: 1200, CachedInput: 800, Output: 350},
		Cost:           Cost{TotalNanoUSD: 7_500_000, PriceVersion: "2025-03-01.1"},
		LatencyMS:      1840,
		Status:         StatusOK,
		// sha256 of the normalised prompt, never the prompt
		PromptFingerprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}
}

func validGPUSample() GPUSample {
	return GPUSample{
		Schema:         SchemaGPU,
		ID:             "019593fa-5b49-796f-8030-f7de246f0246",
		OccurredAt:     at(0, 0),
		Node:           "gpu-node-07",
		GPUUUID:        "GPU-5fd4c1e2-8a0b-4c3d-9e1f-2a3b4c5d6e7f",
		GPUIndex:       2,
		GPUModel:       "NVIDIA H100 80GB HBM3",
		Attribution:    Workload{Team: "ml-platform", App: "embedder", Namespace: "inference", Pod: "embedder-7c9f-x2", Container: "server"},
		IntervalMS:     15000,
		GPUUtil:        0.87,
		GrEngineActive: 0.81,
		SMActive:       0.74,
		TensorActive:   0.42,
		DRAMActive:     0.55,
		FBUsedBytes:    64_424_509_440,
		FBFreeBytes:    21_474_836_480,
		PowerWatts:     612.5,
		EnergyJoules:   9187.5,
		CostNanoUSD:    16_666_667,
		PriceVersion:   "gpu-2025-03-01",
		Source:         GPUSourceDCGMExporter,
	}
}

func validSpend() Spend {
	return Spend{
		Schema:       SchemaSpend,
		Subject:      "team=payments",
		WindowStart:  at(0, 0),
		WindowEnd:    at(1, 0),
		DeltaNanoUSD: 42_750_000,
		DeltaTokens:  18_340,
		Events:       9,
		ProducedAt:   at(1, 250000000),
	}
}

func validAnomaly() Anomaly {
	return Anomaly{
		Schema:      SchemaAnomaly,
		ID:          "019593fa-5b4a-796f-a5cc-bb7a62389bfc",
		Subject:     "team=payments,app=checkout-assistant",
		Metric:      "spend_nano_usd_per_min",
		Observed:    9.5e8,
		Baseline:    4.2e7,
		Score:       11.3,
		WindowStart: at(0, 0),
		WindowEnd:   at(1, 0),
		Detector:    DetectorMAD,
		DetectedAt:  at(1, 40000000),
		Severity:    SeverityCritical,
	}
}

func validBudgetState() BudgetState {
	return BudgetState{
		Schema:          SchemaBudgetState,
		Subject:         "team=payments",
		Period:          PeriodMonth,
		PeriodStart:     time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd:       time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		LimitNanoUSD:    5_000_000_000_000,
		SpentNanoUSD:    4_120_337_500_000,
		SpentTokens:     912_004_551,
		UpdatedAt:       at(1, 250000000),
		ThresholdsFired: []int{50, 80},
	}
}

func validVerdict() Verdict {
	return Verdict{
		Schema:       SchemaVerdict,
		ID:           "019593fa-5b4b-796f-b8ed-6d6bcdf2caa7",
		Subject:      "team=payments",
		Action:       ActionBlock,
		Reason:       "monthly budget of 5000 USD exhausted",
		LimitNanoUSD: 5_000_000_000_000,
		SpentNanoUSD: 5_000_412_000_000,
		IssuedAt:     at(1, 300000000),
		ExpiresAt:    time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		IssuedBy:     "killswitch-0",
	}
}

func validBudgetEvent() BudgetEvent {
	return BudgetEvent{
		Schema:          SchemaBudgetEvent,
		ID:              "019593fa-5b4c-796f-9a11-2b6bcdf2caa8",
		OccurredAt:      at(1, 310000000),
		Kind:            BudgetThreshold,
		Severity:        SeverityWarning,
		Subject:         "team=payments",
		Budget:          "payments-monthly",
		Period:          PeriodMonth,
		PeriodStart:     ptr(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)),
		PeriodEnd:       ptr(time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)),
		ThresholdPct:    80,
		LimitNanoUSD:    5_000_000_000_000,
		SpentNanoUSD:    4_001_250_000_000,
		ForecastNanoUSD: 6_310_000_000_000,
		Reason:          "payments-monthly: 80 % of 5000 USD spent",
		Actor:           "killswitch/killswitch-0",
	}
}

func ptr[T any](v T) *T { return &v }

func validInstance() Instance {
	return Instance{
		Schema:      SchemaInstance,
		Instance:    "ingress-host1-4242",
		Role:        "ingress",
		StartedAt:   at(0, 0),
		HeartbeatAt: at(1, 0),
		ExpiresAt:   at(16, 0),
	}
}

// goldenCases maps each fixture name (testdata/<name>.golden.json) to the
// value it must decode to.
func goldenCases() map[string]Event {
	streamed := validUsage()
	streamed.ID = "019593fa-5b4c-796f-a5c5-f897cb319f8a"
	streamed.Provider, streamed.RequestedModel, streamed.ServedModel = "anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514"
	streamed.Route = "/v1/messages"
	streamed.Stream, streamed.TTFTMS, streamed.LatencyMS = true, 420, 9100
	streamed.Tokens = Tokens{Input: 2400, Output: 1800, Reasoning: 0} // estimated from what was streamed
	streamed.Cost = Cost{TotalNanoUSD: 34_200_000, PriceVersion: "2025-03-01.1", Estimated: true}
	streamed.Status = StatusUpstreamError
	streamed.Error = "stream interrupted before usage: upstream closed the connection"

	blocked := validUsage()
	blocked.ID = "019593fa-5b4d-796f-9e85-0c2c3cb0b744"
	blocked.ServedModel, blocked.Route = "", ""
	blocked.Tokens, blocked.LatencyMS = Tokens{}, 0
	blocked.Cost = Cost{PriceVersion: "2025-03-01.1"}
	blocked.Status = StatusBlocked
	blocked.Error = "budget exceeded: team=payments spent 5000.41 of 5000.00 USD this month"

	cached := validUsage()
	cached.ID = "019593fa-5b4e-796f-a665-19fde2882294"
	cached.Attribution = Attribution{Team: "search", App: "answers", Env: "staging"}
	cached.Provider, cached.RequestedModel, cached.ServedModel = "anthropic", "claude-opus-4", "claude-opus-4-20250514"
	cached.Tokens = Tokens{Input: 40, CachedInput: 12000, CacheWrite5m: 3000, CacheWrite1h: 9000, Output: 5200, Reasoning: 4100}
	cached.Cost = Cost{TotalNanoUSD: 612_450_000, PriceVersion: "2025-03-01.1"}
	cached.PromptFingerprint = ""

	unpriced := validUsage()
	unpriced.ID = "019593fa-5b4f-796f-9efc-1e0a53676526"
	unpriced.Attribution = Attribution{}
	unpriced.Provider, unpriced.RequestedModel, unpriced.ServedModel = "vllm", "llama-3.1-70b", "meta-llama/Llama-3.1-70B-Instruct"
	unpriced.Cost = Cost{Unpriced: true}
	unpriced.Status = StatusDowngraded

	idle := validGPUSample()
	idle.ID = "019593fa-5b50-796f-a0cd-8a6418e0f96c"
	idle.GPUUUID = "MIG-7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"
	idle.MIGProfile, idle.MIGInstance = "1g.10gb", "9"
	idle.Attribution = Workload{}
	idle.GPUUtil, idle.GrEngineActive, idle.SMActive, idle.TensorActive, idle.DRAMActive = 0, 0, 0, 0, 0
	idle.FBUsedBytes, idle.FBFreeBytes = 0, 10_200_547_328
	idle.PowerWatts, idle.EnergyJoules = 61, 915
	idle.CostNanoUSD, idle.IdleCostNanoUSD = 2_380_952, 2_380_952
	idle.Source = GPUSourceDCGM

	model := validSpend()
	model.Subject = "team=payments,model=gpt-4o"
	model.Source = &SourceRange{Topic: "burnrate.usage.v1", Partition: 4, FirstOffset: 118_204, LastOffset: 118_212}

	ewma := validAnomaly()
	ewma.ID = "019593fa-5b51-796f-9e13-bbc507c7d128"
	ewma.Subject, ewma.Metric = "node=gpu-node-07", "gpu_idle_fraction"
	ewma.Observed, ewma.Baseline, ewma.Score = 1, 0.08, 4.75
	ewma.Detector, ewma.Severity = DetectorEWMA, SeverityWarning

	custom := validBudgetState()
	custom.Subject, custom.Period = "customer=cus_9f2", PeriodCustom
	custom.PeriodStart, custom.PeriodEnd = time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 24, 0, 0, 0, 0, time.UTC)
	custom.LimitNanoUSD, custom.LimitTokens = 0, 50_000_000
	custom.SpentNanoUSD, custom.SpentTokens = 96_100_000_000, 3_210_400
	custom.ThresholdsFired = nil

	downgrade := validVerdict()
	downgrade.ID = "019593fa-5b52-796f-91f5-4109d02447a1"
	downgrade.Subject, downgrade.Action = "team=search", ActionDowngrade
	downgrade.Reason, downgrade.DowngradeTo = "90% of the daily budget used", "gpt-4o-mini"
	downgrade.LimitNanoUSD, downgrade.SpentNanoUSD = 200_000_000_000, 181_000_000_000
	downgrade.ExpiresAt = time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC)

	throttle := validVerdict()
	throttle.ID = "019593fa-5b53-796f-ba1f-2923f54d3c9d"
	throttle.Subject, throttle.Action = "agent_run=run_01HQ7", ActionThrottle
	throttle.Reason, throttle.ThrottlePerMin = "agent loop: 40 near-identical steps in 2 minutes", 6
	throttle.LimitNanoUSD, throttle.SpentNanoUSD = 0, 3_400_000_000
	throttle.ExpiresAt = at(16, 300000000)

	lease := validVerdict()
	lease.ID = "019593fa-5b54-796f-9bc6-5bfcd700ae34"
	lease.Action, lease.Reason = ActionLease, "within 5% of the monthly budget"
	lease.SpentNanoUSD = 4_800_000_000_000
	lease.Lease = &Lease{RemainingNanoUSD: 200_000_000_000, Instances: 3, PerInstanceNanoUSD: 66_666_666_666}

	allow := validVerdict()
	allow.ID = "019593fa-5b55-796f-8f4e-b382be45bb33"
	allow.Action, allow.Reason = ActionAllow, "budget raised to 6000 USD"
	allow.LimitNanoUSD = 6_000_000_000_000

	loop := validBudgetEvent()
	loop.ID = "019593fa-5b4d-796f-8a12-3c6bcdf2caa9"
	loop.Kind, loop.Severity, loop.Subject = BudgetLoopBreak, SeverityCritical, "agent_run=run_01HQ7"
	loop.Budget, loop.Period, loop.PeriodStart, loop.PeriodEnd, loop.ThresholdPct = "", "", nil, nil, 0
	loop.LimitNanoUSD, loop.SpentNanoUSD, loop.ForecastNanoUSD = 0, 412_000_000, 0
	loop.Reason = "same prompt 21 times (max_repeats 20); run blocked for 15m0s"

	return map[string]Event{
		"budget-event.v1.threshold":   validBudgetEvent(),
		"budget-event.v1.loop-break":  loop,
		"instance.v1.ingress":         validInstance(),
		"usage.v1.ok":                 validUsage(),
		"usage.v1.streamed-estimated": streamed,
		"usage.v1.blocked":            blocked,
		"usage.v1.cache-reasoning":    cached,
		"usage.v1.unpriced":           unpriced,
		"gpu.v1.busy":                 validGPUSample(),
		"gpu.v1.idle-mig":             idle,
		"spend.v1.team":               validSpend(),
		"spend.v1.team-model-source":  model,
		"anomaly.v1.mad":              validAnomaly(),
		"anomaly.v1.ewma":             ewma,
		"budget-state.v1.month":       validBudgetState(),
		"budget-state.v1.custom":      custom,
		"verdict.v1.block":            validVerdict(),
		"verdict.v1.downgrade":        downgrade,
		"verdict.v1.throttle":         throttle,
		"verdict.v1.lease":            lease,
		"verdict.v1.allow":            allow,
	}
}

func goldenPath(name string) string { return filepath.Join("testdata", name+".golden.json") }

func TestGolden(t *testing.T) {
	for name, want := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			if err := want.Validate(); err != nil {
				t.Fatalf("golden value does not validate: %v", err)
			}
			if !strings.HasPrefix(name, want.SchemaName()+".") {
				t.Fatalf("fixture name %q does not start with %q", name, want.SchemaName())
			}
			if *update {
				b, err := Encode(want)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(goldenPath(name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			in, err := os.ReadFile(goldenPath(name))
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			got, err := Decode(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded fixture differs from the Go value:\ngot  %+v\nwant %+v", got, want)
			}
			out, err := Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("re-encoding changed the bytes:\nfixture %s\nencoded %s", in, out)
			}
		})
	}
}

// TestGoldenFilesHaveCases catches fixtures left behind by a renamed case.
func TestGoldenFilesHaveCases(t *testing.T) {
	files, err := filepath.Glob(goldenPath("*"))
	if err != nil {
		t.Fatal(err)
	}
	cases := goldenCases()
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden.json")
		if _, ok := cases[name]; !ok {
			t.Errorf("%s has no entry in goldenCases", f)
		}
	}
	if len(files) != len(cases) {
		t.Errorf("%d fixtures for %d cases", len(files), len(cases))
	}
}
