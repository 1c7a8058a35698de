package events

import "time"

// Anomaly (anomaly.v1) is a metric of one subject that left its baseline.
// Kafka key: subject.
type Anomaly struct {
	Schema      string    `json:"schema"`
	ID          string    `json:"id"` // UUIDv7
	Subject     string    `json:"subject"`
	Metric      string    `json:"metric"` // e.g. "spend_nano_usd_per_min", "gpu_idle_fraction"
	Observed    float64   `json:"observed"`
	Baseline    float64   `json:"baseline"`
	Score       float64   `json:"score"` // detector-specific, e.g. robust z-score for mad
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Detector    Detector  `json:"detector"`
	DetectedAt  time.Time `json:"detected_at"`
	Severity    Severity  `json:"severity"`
}

// SchemaName returns "anomaly.v1".
func (Anomaly) SchemaName() string { return SchemaAnomaly }

func (a *Anomaly) normalize() { utc(&a.WindowStart, &a.WindowEnd, &a.DetectedAt) }

// Validate reports every problem with a.
func (a Anomaly) Validate() error {
	c := checker{schema: SchemaAnomaly}
	c.schemaField(a.Schema)
	c.id("id", a.ID)
	c.subject("subject", a.Subject)
	c.required("metric", a.Metric)
	c.window("window_start", "window_end", a.WindowStart, a.WindowEnd)
	c.enum("detector", "detector", string(a.Detector), detectorValues)
	c.time("detected_at", a.DetectedAt)
	c.enum("severity", "severity", string(a.Severity), severityValues)
	return c.err()
}
