package alert

import "github.com/prometheus/client_golang/prometheus"

// metrics are the alert series; labels are webhook names and fixed sets.
type metrics struct {
	alerts   *prometheus.CounterVec
	attempts *prometheus.CounterVec
}

// newMetrics registers the series on reg; nil keeps them unregistered.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_alerts_total",
			Help: "Alerts by webhook, kind and result: delivered, failed (attempts used up or not retryable) or dropped (queue full, or still queued when the shutdown drain ran out).",
		}, []string{"webhook", "kind", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_alert_attempts_total",
			Help: "Webhook delivery attempts by outcome: ok, retry (failed, tried again) or give_up (failed, not tried again).",
		}, []string{"webhook", "outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.alerts, m.attempts}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}
