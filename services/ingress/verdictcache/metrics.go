package verdictcache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the consumer and its cache. Decisions are counted by the
// gateway, not here: Check stays free of shared counters.
type metrics struct {
	applied *prometheus.CounterVec
	bad     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, c *Consumer) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_verdictcache_verdicts_applied_total",
			Help: "Verdict records applied to the cache by action (block, downgrade, throttle, lease, allow, tombstone)."}, []string{"action"}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_verdictcache_bad_records_total",
			Help: "Verdict records skipped because they did not decode or validate."}),
	}
	if reg == nil {
		return m, nil
	}
	cache := c.cache
	collectors := []prometheus.Collector{
		m.applied, m.bad,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_verdictcache_entries",
			Help: "Subjects with a verdict in the cache (expired ones until the next write)."},
			func() float64 { return float64(cache.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_verdictcache_age_seconds",
			Help: "Seconds since the last verdict record was applied."}, c.ageSeconds),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_verdictcache_ready",
			Help: "1 once the cache has caught up with the verdicts topic, else 0."},
			func() float64 {
				if c.Ready() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "burnrate_verdictcache_lease_overshoot_nano_usd_total",
			Help: "Cost reconciled past exhausted lease shares, in nano-USD."},
			func() float64 { return float64(cache.OvershootNanoUSD()) }),
	}
	for _, col := range collectors {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
