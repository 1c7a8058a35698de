package killswitch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/burnrate/burnrate/streams/kstage"
)

// metrics are the killswitch's Prometheus series; labels are fixed sets or
// policy names (bounded by the policies file).
type metrics struct {
	stage     *kstage.Metrics
	invalid   prometheus.Counter
	lateSpend prometheus.Counter
	verdicts  *prometheus.CounterVec
	events    *prometheus.CounterVec
	decision  *prometheus.HistogramVec
	budgets   prometheus.Gauge
	live      prometheus.Gauge
	active    prometheus.Gauge
	drift     *prometheus.GaugeVec
	reconcile *prometheus.CounterVec
	policies  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		stage: kstage.NewMetrics(reg, "burnrate_killswitch", "budget-state.v1"),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "burnrate_killswitch_invalid_records_total", Help: "spend.v1 and anomalies.v1 records that failed to decode or validate and were skipped.",
		}),
		lateSpend: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "burnrate_killswitch_late_spend_total", Help: "Spend records for a budget period that ended over an hour ago (not counted).",
		}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_verdicts_total", Help: "Verdicts published, by action and origin (budget, loop, manual).",
		}, []string{"action", "origin"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_budget_events_total", Help: "Budget events published (and alerted), by kind.",
		}, []string{"kind"}),
		decision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "burnrate_killswitch_decision_seconds", Help: "From the meter producing the spend that decided a verdict to the killswitch issuing it, by action (loop: loop breaks).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"action"}),
		budgets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_killswitch_budgets", Help: "Budget states held (subject × budget × period).",
		}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_killswitch_live_ingress_instances", Help: "Ingress instances with a live heartbeat; leases are split across them.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_killswitch_active_verdicts", Help: "Unexpired verdicts other than allow on verdicts.v1 (every replica's).",
		}),
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "burnrate_killswitch_reconcile_drift_nano_usd", Help: "Killswitch spend minus ClickHouse spend for the current period, summed over each budget's subjects, at the last reconciliation.",
		}, []string{"budget"}),
		reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_reconciliations_total", Help: "Reconciliations with ClickHouse, by result (ok, error).",
		}, []string{"result"}),
		policies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_killswitch_policy_loads_total", Help: "Policy file loads, by result (ok, error: the previous policies stay).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error"} {
		m.reconcile.WithLabelValues(r)
		m.policies.WithLabelValues(r)
	}
	for _, a := range []string{"block", "lease", "allow", "downgrade", "throttle"} {
		m.verdicts.WithLabelValues(a, "budget")
	}
	m.verdicts.WithLabelValues("block", "loop")
	if reg != nil {
		reg.MustRegister(m.invalid, m.lateSpend, m.verdicts, m.events, m.decision, m.budgets, m.live, m.active, m.drift, m.reconcile, m.policies)
	}
	return m
}
