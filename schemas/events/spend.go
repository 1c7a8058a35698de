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
	DeltaTokens  int64        `json:"delta_tokens"` // sum of Tokens.Total
	Events       int64        `json:"events"`       // input events counted
	Source       *SourceRange `json:"source,omitempty"`
	ProducedAt   time.Time    `json:"produced_at"`
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

func (s *Spend) normalize() { utc(&s.WindowStart, &s.WindowEnd, &s.ProducedAt) }

// Validate reports every problem with s.
func (s Spend) Validate() error {
	c := checker{schema: SchemaSpend}
	c.schemaField(s.Schema)
	c.subject("subject", s.Subject)
	c.window("window_start", "window_end", s.WindowStart, s.WindowEnd)
	c.nonNegative("delta_nano_usd", s.DeltaNanoUSD)
	c.nonNegative("delta_tokens", s.DeltaTokens)
	c.positive("events", s.Events)
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
