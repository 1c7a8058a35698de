package events

import "time"

// BudgetEvent (budget-event.v1) is one thing the killswitch did or noticed:
// a threshold crossed, a budget exhausted, a forecast breach, a loop break,
// a severe anomaly relayed, a manual kill or lift. It is what alerts are
// sent from and what finance audits (ClickHouse budget_events).
// Kafka key: subject.
type BudgetEvent struct {
	Schema          string          `json:"schema"`
	ID              string          `json:"id"` // UUIDv7; alerts carry it so receivers can dedupe retries
	OccurredAt      time.Time       `json:"occurred_at"`
	Kind            BudgetEventKind `json:"kind"`
	Severity        Severity        `json:"severity"`
	Subject         string          `json:"subject"`
	Budget          string          `json:"budget,omitempty"`        // policy name; empty for loop breaks, anomalies and manual actions
	Period          Period          `json:"period,omitempty"`        // set with Budget
	PeriodStart     *time.Time      `json:"period_start,omitempty"`  // set with Budget
	PeriodEnd       *time.Time      `json:"period_end,omitempty"`    // set with Budget
	ThresholdPct    int             `json:"threshold_pct,omitempty"` // threshold events: the percent crossed
	LimitNanoUSD    int64           `json:"limit_nano_usd"`
	SpentNanoUSD    int64           `json:"spent_nano_usd"`
	ForecastNanoUSD int64           `json:"forecast_nano_usd"` // projected spend at period end; 0 when unknown
	Reason          string          `json:"reason"`            // human sentence
	Actor           string          `json:"actor"`             // "killswitch/<instance>", or the admin for manual actions
}

// BudgetEventKind says what a budget event records.
type BudgetEventKind string

const (
	BudgetThreshold  BudgetEventKind = "threshold"    // a soft threshold crossed
	BudgetExhausted  BudgetEventKind = "exhausted"    // 100 % reached; the hard action applied
	BudgetForecast   BudgetEventKind = "forecast"     // projected period spend crosses the limit
	BudgetLoopBreak  BudgetEventKind = "loop_break"   // an agent run blocked by a loop rule
	BudgetAnomaly    BudgetEventKind = "anomaly"      // a critical anomaly from the meter
	BudgetManualKill BudgetEventKind = "manual_kill"  // an admin blocked a subject
	BudgetManualLift BudgetEventKind = "manual_lift"  // an admin lifted a subject's verdict
	BudgetReset      BudgetEventKind = "period_reset" // a new period lifted a budget's verdict
)

// Valid reports whether k is a known kind.
func (k BudgetEventKind) Valid() bool { return oneOf(string(k), budgetEventKindValues) }

const budgetEventKindValues = "threshold|exhausted|forecast|loop_break|anomaly|manual_kill|manual_lift|period_reset"

// SchemaName returns "budget-event.v1".
func (BudgetEvent) SchemaName() string { return SchemaBudgetEvent }

func (e *BudgetEvent) normalize() {
	utc(&e.OccurredAt)
	for _, t := range []*time.Time{e.PeriodStart, e.PeriodEnd} {
		if t != nil {
			utc(t)
		}
	}
}

// Validate reports every problem with e.
func (e BudgetEvent) Validate() error {
	c := checker{schema: SchemaBudgetEvent}
	c.schemaField(e.Schema)
	c.id("id", e.ID)
	c.time("occurred_at", e.OccurredAt)
	c.enum("kind", "kind", string(e.Kind), budgetEventKindValues)
	c.enum("severity", "severity", string(e.Severity), severityValues)
	c.subject("subject", e.Subject)
	c.optional("budget", e.Budget)
	if e.Budget != "" {
		c.enum("period", "period", string(e.Period), periodValues)
		if e.PeriodStart == nil || e.PeriodEnd == nil {
			c.addf("period_start", "period_start and period_end must be set with budget")
		} else {
			c.window("period_start", "period_end", *e.PeriodStart, *e.PeriodEnd)
		}
	} else if e.Period != "" || e.PeriodStart != nil || e.PeriodEnd != nil {
		c.addf("period", "period, period_start and period_end must be absent without budget")
	}
	if e.Kind == BudgetThreshold {
		if e.ThresholdPct < 1 || e.ThresholdPct > 100 {
			c.addf("threshold_pct", "must be 1..100 for a threshold event, got %d", e.ThresholdPct)
		}
	} else if e.ThresholdPct != 0 {
		c.addf("threshold_pct", "must be 0 unless kind is threshold")
	}
	c.nonNegative("limit_nano_usd", e.LimitNanoUSD)
	c.nonNegative("spent_nano_usd", e.SpentNanoUSD)
	c.nonNegative("forecast_nano_usd", e.ForecastNanoUSD)
	c.required("reason", e.Reason)
	c.required("actor", e.Actor)
	return c.err()
}
