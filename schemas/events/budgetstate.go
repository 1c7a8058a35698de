package events

import "time"

// BudgetState (budget-state.v1) is the killswitch's state of one budget in
// one period, written so a restarted killswitch can restore it. The topic is
// compacted; Kafka key: subject + period.
type BudgetState struct {
	Schema          string    `json:"schema"`
	Subject         string    `json:"subject"`
	Budget          string    `json:"budget,omitempty"` // policy name (a subject may have several budgets)
	Period          Period    `json:"period"`
	PeriodStart     time.Time `json:"period_start"`
	PeriodEnd       time.Time `json:"period_end"`     // exclusive
	LimitNanoUSD    int64     `json:"limit_nano_usd"` // 0: no money limit
	LimitTokens     int64     `json:"limit_tokens"`   // 0: no token limit
	SpentNanoUSD    int64     `json:"spent_nano_usd"`
	SpentTokens     int64     `json:"spent_tokens"`
	UpdatedAt       time.Time `json:"updated_at"`
	ThresholdsFired []int     `json:"thresholds_fired,omitempty"` // percent of limit already alerted, ascending, e.g. [50 80 100]
	ForecastAlerted bool      `json:"forecast_alerted,omitempty"` // the forecast breach of this period was alerted
}

// SchemaName returns "budget-state.v1".
func (BudgetState) SchemaName() string { return SchemaBudgetState }

func (b *BudgetState) normalize() {
	utc(&b.PeriodStart, &b.PeriodEnd, &b.UpdatedAt)
	if len(b.ThresholdsFired) == 0 {
		b.ThresholdsFired = nil
	}
}

// Validate reports every problem with b.
func (b BudgetState) Validate() error {
	c := checker{schema: SchemaBudgetState}
	c.schemaField(b.Schema)
	c.subject("subject", b.Subject)
	c.enum("period", "period", string(b.Period), periodValues)
	c.window("period_start", "period_end", b.PeriodStart, b.PeriodEnd)
	c.nonNegative("limit_nano_usd", b.LimitNanoUSD)
	c.nonNegative("limit_tokens", b.LimitTokens)
	c.nonNegative("spent_nano_usd", b.SpentNanoUSD)
	c.nonNegative("spent_tokens", b.SpentTokens)
	c.time("updated_at", b.UpdatedAt)
	prev := 0
	for i, p := range b.ThresholdsFired {
		if p <= prev {
			c.addf(fmtIndex("thresholds_fired", i), "must be > 0 and ascending, got %d after %d", p, prev)
		}
		prev = p
	}
	return c.err()
}
