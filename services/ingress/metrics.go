package ingress

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/burnrate/burnrate/schemas/events"
)

// metrics of the gateway; every label has a small fixed set of values.
type Metrics struct {
	requests     *prometheus.CounterVec
	tokens       *prometheus.CounterVec
	cost         prometheus.Counter
	blocked      *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	fallbacks    *prometheus.CounterVec
	added        *prometheus.HistogramVec
	upstream     *prometheus.HistogramVec
	emitErrors   prometheus.Counter
	collected    prometheus.Counter
	collectDupes prometheus.Counter
}

// NewMetrics registers the gateway metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics { return newMetrics(reg) }

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_ingress_requests_total",
			Help: "Proxied calls by endpoint and status (ok, upstream_error, blocked, downgraded)."}, []string{"endpoint", "status"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_ingress_tokens_total",
			Help: "Tokens of proxied calls by category."}, []string{"category"}),
		cost: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_ingress_cost_nano_usd_total",
			Help: "Cost of proxied calls in nano-USD."}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_ingress_blocked_total",
			Help: "Calls refused with 429 by reason."}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_ingress_rejected_total",
			Help: "Calls refused before the upstream by endpoint and error type."}, []string{"endpoint", "type"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_ingress_fallbacks_total",
			Help: "Upstream attempts that failed over to a fallback route."}, []string{"endpoint"}),
		added: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "burnrate_ingress_added_latency_seconds",
			Help:    "Time the gateway adds to a call, upstream time excluded.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3}}, []string{"endpoint"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "burnrate_ingress_upstream_latency_seconds",
			Help:    "Upstream time of a call (streams: until the last byte).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"endpoint"}),
		emitErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_ingress_usage_events_lost_total",
			Help: "Usage events that could be neither produced nor spooled (spool full with when_full: drop)."}),
		collected: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_collector_events_total",
			Help: "Usage events accepted by the collector API."}),
		collectDupes: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_collector_duplicates_total",
			Help: "Collector events skipped because their id was seen recently."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.tokens, m.cost, m.blocked, m.rejected, m.fallbacks, m.added, m.upstream, m.emitErrors, m.collected, m.collectDupes)
	}
	return m
}

func (m *Metrics) observe(endpoint string, ev *events.Usage, added, upstream time.Duration) {
	m.requests.WithLabelValues(endpoint, string(ev.Status)).Inc()
	t := ev.Tokens
	for _, c := range []struct {
		name string
		n    int64
	}{{"input", t.Input}, {"cached_input", t.CachedInput}, {"cache_write_5m", t.CacheWrite5m}, {"cache_write_1h", t.CacheWrite1h}, {"output", t.Output}, {"reasoning", t.Reasoning}} {
		if c.n > 0 {
			m.tokens.WithLabelValues(c.name).Add(float64(c.n))
		}
	}
	if ev.Cost.TotalNanoUSD > 0 {
		m.cost.Add(float64(ev.Cost.TotalNanoUSD))
	}
	if added < 0 {
		added = 0
	}
	m.added.WithLabelValues(endpoint).Observe(added.Seconds())
	if upstream > 0 {
		m.upstream.WithLabelValues(endpoint).Observe(upstream.Seconds())
	}
}
