package alert

import (
	"slices"
	"time"
)

// Kinds of alerts.
const (
	KindThreshold  = "threshold"   // a soft threshold (e.g. 80 %) crossed
	KindExhausted  = "exhausted"   // 100 % reached; the hard action applied
	KindForecast   = "forecast"    // projected end-of-period spend crosses the limit
	KindLoopBreak  = "loop_break"  // an agent run was blocked by a loop rule
	KindAnomaly    = "anomaly"     // a severe anomaly from the meter
	KindManualKill = "manual_kill" // an operator killed a subject
	KindManualLift = "manual_lift" // an operator lifted a kill
)

// kinds are the known kinds; metrics label anything else "other".
var kinds = [...]string{KindThreshold, KindExhausted, KindForecast, KindLoopBreak, KindAnomaly, KindManualKill, KindManualLift}

// severities in increasing order; min_severity compares by position.
var severities = [...]string{"info", "warning", "critical"}

// Alert is one notification. Its JSON is the generic webhook's body.
type Alert struct {
	// ID is the budget event id (a UUID), so receivers can drop retries
	// they have already seen.
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Severity string `json:"severity"` // info | warning | critical
	// Subject is what the alert is about, e.g. team=payments or agent_run=r-1.
	Subject         string    `json:"subject"`
	Budget          string    `json:"budget,omitempty"`
	Title           string    `json:"title"` // one line
	Text            string    `json:"text"`  // human sentence(s)
	LimitNanoUSD    int64     `json:"limit_nano_usd,omitempty"`
	SpentNanoUSD    int64     `json:"spent_nano_usd,omitempty"`
	ForecastNanoUSD int64     `json:"forecast_nano_usd,omitempty"`
	ThresholdPct    int       `json:"threshold_pct,omitempty"`
	PeriodEnd       time.Time `json:"period_end,omitzero"`
	OccurredAt      time.Time `json:"occurred_at"`
}

// severityRank places s in severities; empty is info. An unknown
// severity ranks as critical: a typo must not silence an alert.
func severityRank(s string) int {
	if s == "" {
		return 0
	}
	if i := slices.Index(severities[:], s); i >= 0 {
		return i
	}
	return len(severities) - 1
}

// kindLabel bounds the kind label of the metrics.
func kindLabel(kind string) string {
	if slices.Contains(kinds[:], kind) {
		return kind
	}
	return "other"
}
