package meter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/burnrate/burnrate/streams/kstage"
)

// metrics are the meter's Prometheus series; labels are fixed sets.
type metrics struct {
	late         *prometheus.CounterVec
	invalid      *prometheus.CounterVec
	anomalies    *prometheus.CounterVec
	stage        *kstage.Metrics // events, transactions, restores
	runs         prometheus.Gauge
	watermarkLag prometheus.Gauge
	openWindows  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		stage: kstage.NewMetrics(reg, "burnrate_meter", "meter-state.v1"),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_late_events_total", Help: "Events behind the watermark, by stage: still counted toward spend, not toward anomaly metrics.",
		}, []string{"stage"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_invalid_events_total", Help: "Records that failed to decode or validate and were skipped (the sink dead-letters them), by input.",
		}, []string{"input"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_anomalies_total", Help: "Anomalies published, by metric.",
		}, []string{"metric"}),
		runs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_meter_tracked_runs", Help: "Agent runs tracked.",
		}),
		watermarkLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_meter_watermark_lag_seconds", Help: "Wall clock minus the newest event time the spend stage has seen (its watermark before allowed lateness).",
		}),
		openWindows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_meter_open_windows", Help: "Subject windows open in the anomaly stage.",
		}),
	}
	// Series with a fixed set of labels start at 0, for rate() and alerts.
	for _, st := range []string{"spend", "anomalies"} {
		m.late.WithLabelValues(st)
	}
	for _, in := range []string{"usage", "gpu", "spend"} {
		m.invalid.WithLabelValues(in)
	}
	for _, metric := range []string{MetricCost, MetricTokens, MetricAvgInput, MetricErrorRate, MetricGPUIdle} {
		m.anomalies.WithLabelValues(metric)
	}
	if reg != nil {
		reg.MustRegister(m.late, m.invalid, m.anomalies, m.runs, m.watermarkLag, m.openWindows)
	}
	return m
}
