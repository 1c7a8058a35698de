package meter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Window is the event-time window every spend delta and anomaly metric is
// counted in.
const Window = time.Minute

// Config is the meter section of the config file.
type Config struct {
	// Group is the consumer group of the spend stage (usage.v1, gpu.v1);
	// the anomaly stage (spend.v1) uses Group + "-anomalies".
	Group string `yaml:"group"`
	// FlushInterval is how often deltas are published to spend.v1, in one
	// transaction with the consumed offsets; it bounds how late the
	// killswitch sees spend.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// AllowedLateness keeps a window open for events this much older than
	// the newest event seen. Later events still count toward spend (and in
	// burnrate_meter_late_events_total) but not toward anomaly metrics.
	AllowedLateness time.Duration `yaml:"allowed_lateness"`
	// Combinations are extra budget subjects made of several attribution
	// keys, e.g. [team, model] gives "team=payments,model=gpt-4o".
	Combinations [][]string `yaml:"combinations"`
	// TagKeys are attribution tags that are budget subjects too:
	// [region] gives "tag.region=eu-west-1" for calls with that tag.
	TagKeys []string `yaml:"tag_keys"`
	// GPUSpend counts GPU cost (gpu.v1) toward the team= and app= subjects.
	GPUSpend bool `yaml:"gpu_spend"`
	// RunIdleTTL forgets an agent run this long (event time) after its last
	// call.
	RunIdleTTL time.Duration `yaml:"run_idle_ttl"`
	// SessionTimeout is the Kafka group session of both stages.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Anomaly configures the detectors.
	Anomaly Anomaly `yaml:"anomaly"`
}

// Anomaly configures anomaly detection.
type Anomaly struct {
	// Subjects are the attribution keys whose per-minute metrics are watched.
	Subjects []string `yaml:"subjects"`
	// MADThreshold is the robust z-score (0.6745·(x−median)/MAD) that flags
	// a closed minute.
	MADThreshold float64 `yaml:"mad_threshold"`
	// EWMAThreshold flags, as soon as the open minute's running cost or
	// tokens reach it, EWMA mean + EWMAThreshold·EWMA deviation: the fast
	// path that does not wait for the minute to close.
	EWMAThreshold float64 `yaml:"ewma_threshold"`
	// EWMAAlpha is the weight of the newest minute in the EWMA.
	EWMAAlpha float64 `yaml:"ewma_alpha"`
	// Warmup is how many minutes of a subject are seen before it is judged.
	Warmup int `yaml:"warmup"`
	// History is how many minutes the median and MAD look back over.
	History int `yaml:"history"`
	// MinExcessUSD is the minimum-dollar floor: a cost anomaly must exceed
	// its baseline by at least this much per minute.
	MinExcessUSD float64 `yaml:"min_excess_usd"`
	// MinCalls is the fewest calls in a minute for the per-call metrics
	// (average input tokens, error rate) to be judged.
	MinCalls int64 `yaml:"min_calls"`
	// GPUIdleFraction and GPUIdleMinutes: a GPU at least this idle for this
	// many consecutive minutes raises one gpu_idle_fraction anomaly.
	GPUIdleFraction float64 `yaml:"gpu_idle_fraction"`
	GPUIdleMinutes  int     `yaml:"gpu_idle_minutes"`
}

// DefaultConfig returns the meter defaults.
func DefaultConfig() Config {
	return Config{
		Group:           "burnrate-meter",
		FlushInterval:   250 * time.Millisecond,
		AllowedLateness: 30 * time.Second,
		Combinations:    [][]string{{"team", "model"}},
		RunIdleTTL:      time.Hour,
		SessionTimeout:  45 * time.Second,
		Anomaly: Anomaly{
			Subjects:        []string{"team", "app"},
			MADThreshold:    6,
			EWMAThreshold:   10,
			EWMAAlpha:       0.2,
			Warmup:          15,
			History:         60,
			MinExcessUSD:    1,
			MinCalls:        5,
			GPUIdleFraction: 0.9,
			GPUIdleMinutes:  10,
		},
	}
}

// subjectKeys are the attribution keys a subject may be made of.
var subjectKeys = [...]string{"key", "team", "app", "user", "customer", "model", "env"}

// SubjectKeys are the attribution keys the meter publishes spend for, each
// alone ("team=payments"); Combinations adds combined subjects and every
// agent run is "agent_run=<id>".
func SubjectKeys() []string { return slices.Clone(subjectKeys[:]) }

// Validate names the bad field relative to the meter section.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Group == "" {
		add("group: must be set")
	}
	if c.FlushInterval <= 0 {
		add("flush_interval: %s must be > 0", c.FlushInterval)
	}
	if c.AllowedLateness < 0 {
		add("allowed_lateness: %s must not be negative", c.AllowedLateness)
	}
	for i, k := range c.TagKeys {
		if k == "" || strings.ContainsAny(k, ",=") {
			add("tag_keys[%d]: %q must be a non-empty tag key without ',' or '='", i, k)
		}
	}
	for i, combo := range c.Combinations {
		if len(combo) < 2 {
			add("combinations[%d]: %v must name at least two keys", i, combo)
		}
		for j, k := range combo {
			if !slices.Contains(subjectKeys[:], k) {
				add("combinations[%d][%d]: %q is not one of %v", i, j, k, subjectKeys)
			}
		}
	}
	if c.RunIdleTTL <= 0 {
		add("run_idle_ttl: %s must be > 0", c.RunIdleTTL)
	}
	if c.SessionTimeout < 6*time.Second {
		add("session_timeout: %s must be >= 6s", c.SessionTimeout)
	}
	a := c.Anomaly
	for i, k := range a.Subjects {
		if !slices.Contains(subjectKeys[:], k) {
			add("anomaly.subjects[%d]: %q is not one of %v", i, k, subjectKeys)
		}
	}
	if a.MADThreshold <= 0 {
		add("anomaly.mad_threshold: %g must be > 0", a.MADThreshold)
	}
	if a.EWMAThreshold <= 0 {
		add("anomaly.ewma_threshold: %g must be > 0", a.EWMAThreshold)
	}
	if a.EWMAAlpha <= 0 || a.EWMAAlpha >= 1 {
		add("anomaly.ewma_alpha: %g must be in (0, 1)", a.EWMAAlpha)
	}
	if a.Warmup < 3 {
		add("anomaly.warmup: %d must be >= 3", a.Warmup)
	}
	if a.History < a.Warmup {
		add("anomaly.history: %d must be >= warmup (%d)", a.History, a.Warmup)
	}
	if a.MinExcessUSD < 0 {
		add("anomaly.min_excess_usd: %g must not be negative", a.MinExcessUSD)
	}
	if a.MinCalls < 1 {
		add("anomaly.min_calls: %d must be >= 1", a.MinCalls)
	}
	if a.GPUIdleFraction <= 0 || a.GPUIdleFraction > 1 {
		add("anomaly.gpu_idle_fraction: %g must be in (0, 1]", a.GPUIdleFraction)
	}
	if a.GPUIdleMinutes < 1 {
		add("anomaly.gpu_idle_minutes: %d must be >= 1", a.GPUIdleMinutes)
	}
	return errors.Join(errs...)
}
