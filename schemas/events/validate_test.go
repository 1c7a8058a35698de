package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	// f checks that e fails validation with exactly the want messages.
	f := func(e Event, want ...string) {
		t.Helper()
		err := e.Validate()
		var got []string
		if err != nil {
			got = strings.Split(err.Error(), "\n")
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("Validate():\ngot  %q\nwant %q", got, want)
		}
	}

	u := validUsage()
	u.Schema = "usage.v2"
	u.ID = "019593fa-5b48-496f-a8ab-0cbe2f65a9ea" // v4
	u.Tokens.Output, u.Tokens.Reasoning = -1, 2
	u.Status = "nuked"
	f(u,
		`usage.v1: schema: got "usage.v2", want "usage.v1"`,
		`usage.v1: id: must be a UUIDv7 in canonical lowercase form, got "019593fa-5b48-496f-a8ab-0cbe2f65a9ea"`,
		`usage.v1: tokens.output: must be >= 0, got -1`,
		`usage.v1: tokens.reasoning: must be <= tokens.output (-1) since output includes reasoning, got 2`,
		`usage.v1: status: unknown status "nuked" (want ok|upstream_error|blocked|downgraded|cached)`,
	)

	u = validUsage()
	u.ID = strings.ToUpper(u.ID)
	u.OccurredAt = time.Time{}
	u.ReceivedAt = u.ReceivedAt.In(time.FixedZone("CET", 3600))
	u.TTFTMS = 5
	u.PromptFingerprint = "Tell me a secret"
	u.Attribution.AgentRunID = ""
	u.Attribution.Tags[""] = "x"
	f(u,
		`usage.v1: id: must be a UUIDv7 in canonical lowercase form, got "019593FA-5B48-796F-A8AB-0CBE2F65A9EA"`,
		`usage.v1: occurred_at: must be set`,
		`usage.v1: received_at: must be in UTC, got CET`,
		`usage.v1: attribution.agent_step: must be 0 without attribution.agent_run_id`,
		`usage.v1: attribution.tags[""]: key must not be empty`,
		`usage.v1: ttft_ms: must be 0 when stream is false, got 5`,
		`usage.v1: prompt_fingerprint: must be a lowercase hex hash of at most 128 characters`,
	)

	u = validUsage()
	u.ServedModel = ""
	u.Cost = Cost{TotalNanoUSD: 5, Unpriced: true}
	u.Stream, u.TTFTMS, u.LatencyMS = true, 10, 9
	f(u,
		`usage.v1: served_model: must not be empty`,
		`usage.v1: cost.total_nano_usd: must be 0 when cost.unpriced is true, got 5`,
		`usage.v1: ttft_ms: must be <= latency_ms (9), got 10`,
	)

	g := validGPUSample()
	g.GPUUtil, g.SMActive = 87, -0.1
	g.IdleCostNanoUSD = g.CostNanoUSD + 1
	g.Source = "prometheus"
	g.IntervalMS = 0
	f(g,
		`gpu.v1: interval_ms: must be > 0, got 0`,
		`gpu.v1: gpu_util: must be a fraction in [0, 1], got 87`,
		`gpu.v1: sm_active: must be a fraction in [0, 1], got -0.1`,
		`gpu.v1: idle_cost_nano_usd: must be <= cost_nano_usd (16666667), got 16666668`,
		`gpu.v1: source: unknown source "prometheus" (want dcgm|dcgm-exporter|nvml)`,
	)

	s := validSpend()
	s.Subject = "payments"
	s.WindowEnd = s.WindowStart
	s.Events = 0
	s.Source = &SourceRange{Topic: "burnrate.usage.v1", FirstOffset: 9, LastOffset: 8}
	f(s,
		`spend.v1: subject: must be key=value pairs separated by commas, got "payments"`,
		`spend.v1: window_end: must be after window_start`,
		`spend.v1: events: must be > 0, got 0`,
		`spend.v1: source.last_offset: must be >= source.first_offset (9), got 8`,
	)

	a := validAnomaly()
	a.Detector, a.Severity, a.Metric = "zscore", "", ""
	f(a,
		`anomaly.v1: metric: must not be empty`,
		`anomaly.v1: detector: unknown detector "zscore" (want mad|ewma|threshold)`,
		`anomaly.v1: severity: unknown severity "" (want info|warning|critical)`,
	)

	b := validBudgetState()
	b.Period = "year"
	b.SpentNanoUSD = -5
	b.ThresholdsFired = []int{80, 50}
	f(b,
		`budget-state.v1: period: unknown period "year" (want day|week|month|custom)`,
		`budget-state.v1: spent_nano_usd: must be >= 0, got -5`,
		`budget-state.v1: thresholds_fired[1]: must be > 0 and ascending, got 50 after 80`,
	)

	v := validVerdict()
	v.Action = "nuke"
	v.DowngradeTo = "gpt-4o-mini"
	v.ExpiresAt = v.IssuedAt.Add(-time.Second)
	f(v,
		`verdict.v1: action: unknown action "nuke" (want block|downgrade|throttle|lease|allow)`,
		`verdict.v1: downgrade_to: must be empty unless action is downgrade`,
		`verdict.v1: expires_at: must be after issued_at`,
	)

	v = validVerdict()
	v.Action = ActionLease
	f(v, `verdict.v1: lease: must be set when action is lease`)
	v.Lease = &Lease{RemainingNanoUSD: 100, Instances: 3, PerInstanceNanoUSD: 34}
	f(v, `verdict.v1: lease.per_instance_nano_usd: must be <= remaining_nano_usd / instances (33), got 34`)
	v.Lease.PerInstanceNanoUSD = 33
	f(v)

	v = validVerdict()
	v.Action = ActionThrottle
	f(v, `verdict.v1: throttle_per_min: must be > 0, got 0`)
}

func TestValidateFieldErrors(t *testing.T) {
	u := validUsage()
	u.Tokens.Input = -3
	var fe *FieldError
	if !errors.As(u.Validate(), &fe) {
		t.Fatalf("Validate() = %v, want a *FieldError", u.Validate())
	}
	if fe.Schema != SchemaUsage || fe.Field != "tokens.input" || fe.Message != "must be >= 0, got -3" {
		t.Errorf("FieldError = %+v", *fe)
	}
}

func TestValidateZeroValues(t *testing.T) {
	// The zero value of every event is invalid, and says so without panicking.
	for _, s := range Schemas() {
		e := func() Event {
			switch s.Name {
			case SchemaUsage:
				return Usage{}
			case SchemaGPU:
				return GPUSample{}
			case SchemaSpend:
				return Spend{}
			case SchemaAnomaly:
				return Anomaly{}
			case SchemaBudgetState:
				return BudgetState{}
			case SchemaBudgetEvent:
				return BudgetEvent{}
			case SchemaInstance:
				return Instance{}
			}
			return Verdict{}
		}()
		if err := e.Validate(); err == nil || !strings.HasPrefix(err.Error(), s.Name+": schema: ") {
			t.Errorf("%s: zero value Validate() = %v", s.Name, err)
		}
	}
}
