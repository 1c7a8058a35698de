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

	// Children resolved once, so a call does no label lookups.
	tokenCat [6]prometheus.Counter
	perEP    map[string]*epMetrics
}

type epMetrics struct {
	added, upstream prometheus.Observer
	byStatus        map[events.Status]prometheus.Counter
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
	for i, c := range tokenCategories {
		m.tokenCat[i] = m.tokens.WithLabelValues(c)
	}
	m.perEP = map[string]*epMetrics{}
	for _, ep := range endpoints {
		e := &epMetrics{added: m.added.WithLabelValues(ep.name), upstream: m.upstream.WithLabelValues(ep.name), byStatus: map[events.Status]prometheus.Counter{}}
		for _, st := range []events.Status{events.StatusOK, events.StatusUpstreamError, events.StatusBlocked, events.StatusDowngraded, events.StatusCached} {
			e.byStatus[st] = m.requests.WithLabelValues(ep.name, string(st))
		}
		m.perEP[ep.name] = e
		m.fallbacks.WithLabelValues(ep.name) // at 0 from the start, for rate() and alerts
		for _, typ := range []string{"invalid_api_key", "invalid_request_error", "context_length_exceeded", "request_too_large", "model_not_found", "model_not_allowed", "spool_full"} {
			m.rejected.WithLabelValues(ep.name, typ)
		}
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.tokens, m.cost, m.blocked, m.rejected, m.fallbacks, m.added, m.upstream, m.emitErrors, m.collected, m.collectDupes)
	}
	return m
}

var tokenCategories = [6]string{"input", "cached_input", "cache_write_5m", "cache_write_1h", "output", "reasoning"}

func (m *Metrics) observe(endpoint string, ev *events.Usage, added, upstream time.Duration) {
	e := m.perEP[endpoint]
	if e == nil {
		return
	}
	if c := e.byStatus[ev.Status]; c != nil {
		c.Inc()
	}
	t := ev.Tokens
	for i, n := range [6]int64{t.Input, t.CachedInput, t.CacheWrite5m, t.CacheWrite1h, t.Output, t.Reasoning} {
		if n > 0 {
			m.tokenCat[i].Add(float64(n))
		}
	}
	if ev.Cost.TotalNanoUSD > 0 {
		m.cost.Add(float64(ev.Cost.TotalNanoUSD))
	}
	if added < 0 {
		added = 0
	}
	e.added.Observe(added.Seconds())
	if upstream > 0 {
		e.upstream.Observe(upstream.Seconds())
	}
}
