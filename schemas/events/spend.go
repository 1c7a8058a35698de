package events

import "time"

// Spend (spend.v1) is the spend the meter counted for one budget subject in
// one window, from one run of input records. The killswitch adds the deltas
// up; a subject gets many records per window, one per meter partition.
// Kafka key: subject.
type Spend struct {
	Schema       string       `json:"schema"`
	Subject      string       `json:"subject"` // e.g. "team=payments" or "team=payments,model=gpt-4o"
	WindowStart  time.Time    `json:"window_start"`
	WindowEnd    time.Time    `json:"window_end"` // exclusive
	DeltaNanoUSD int64        `json:"delta_nano_usd"`
	DeltaTokens  int64        `json:"delta_tokens"`           // sum of Tokens.Total
	Events       int64        `json:"events"`                 // input events counted
	InputTokens  int64        `json:"input_tokens,omitempty"` // input tokens of every category (the meter's average-prompt-size anomalies use it)
	Errors       int64        `json:"errors,omitempty"`       // events with status upstream_error
	Source       *SourceRange `json:"source,omitempty"`
	Run          *RunStats    `json:"run,omitempty"` // set on agent_run=<id> subjects: the run so far
	ProducedAt   time.Time    `json:"produced_at"`
}

// RunStats is an agent run as the meter has seen it so far (cumulative, not
// a delta): what the killswitch's loop rules decide on.
type RunStats struct {
	Calls          int64     `json:"calls"`
	Tokens         int64     `json:"tokens"`
	CostNanoUSD    int64     `json:"cost_nano_usd"`
	MaxStep        int       `json:"max_step"`                  // highest attribution.agent_step seen
	FirstAt        time.Time `json:"first_at"`                  // event time of the first call
	LastAt         time.Time `json:"last_at"`                   // event time of the latest call
	CallsLastMin   int64     `json:"calls_last_minute"`         // calls in the minute of event time up to last_at
	MaxRepeats     int64     `json:"max_repeats"`               // most calls with one prompt fingerprint
	RepeatedPrompt string    `json:"repeated_prompt,omitempty"` // that fingerprint
}

// SourceRange names the input records a Spend counted, for audits and replay.
type SourceRange struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	FirstOffset int64  `json:"first_offset"`
	LastOffset  int64  `json:"last_offset"` // inclusive
}

// SchemaName returns "spend.v1".
func (Spend) SchemaName() string { return SchemaSpend }

func (s *Spend) normalize() {
	utc(&s.WindowStart, &s.WindowEnd, &s.ProducedAt)
	if s.Run != nil {
		utc(&s.Run.FirstAt, &s.Run.LastAt)
	}
}

// Validate reports every problem with s.
func (s Spend) Validate() error {
	c := checker{schema: SchemaSpend}
	c.schemaField(s.Schema)
	c.subject("subject", s.Subject)
	c.window("window_start", "window_end", s.WindowStart, s.WindowEnd)
	c.nonNegative("delta_nano_usd", s.DeltaNanoUSD)
	c.nonNegative("delta_tokens", s.DeltaTokens)
	if s.Run == nil {
		c.positive("events", s.Events)
	} else {
		c.nonNegative("events", s.Events)
	}
	c.nonNegative("input_tokens", s.InputTokens)
	c.nonNegative("errors", s.Errors)
	if s.Errors > s.Events {
		c.addf("errors", "must be <= events (%d), got %d", s.Events, s.Errors)
	}
	if r := s.Run; r != nil {
		c.nonNegative("run.calls", r.Calls)
		c.nonNegative("run.tokens", r.Tokens)
		c.nonNegative("run.cost_nano_usd", r.CostNanoUSD)
		c.time("run.first_at", r.FirstAt)
		c.time("run.last_at", r.LastAt)
		if r.LastAt.Before(r.FirstAt) {
			c.addf("run.last_at", "must not be before run.first_at")
		}
	}
	if r := s.Source; r != nil {
		c.required("source.topic", r.Topic)
		c.nonNegative("source.partition", int64(r.Partition))
		c.nonNegative("source.first_offset", r.FirstOffset)
		if r.LastOffset < r.FirstOffset {
			c.addf("source.last_offset", "must be >= source.first_offset (%d), got %d", r.FirstOffset, r.LastOffset)
		}
	}
	c.time("produced_at", s.ProducedAt)
	return c.err()
}
