package meter

import "github.com/prometheus/client_golang/prometheus"

// metrics are the meter's Prometheus series; labels are fixed sets.
type metrics struct {
	events         *prometheus.CounterVec
	late           *prometheus.CounterVec
	invalid        *prometheus.CounterVec
	anomalies      *prometheus.CounterVec
	commits        *prometheus.CounterVec
	aborts         *prometheus.CounterVec
	restores       *prometheus.CounterVec
	restoreSeconds *prometheus.HistogramVec
	runs           prometheus.Gauge
	watermarkLag   prometheus.Gauge
	openWindows    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_events_total", Help: "Input records processed, by stage (spend: usage.v1 and gpu.v1; anomalies: spend.v1).",
		}, []string{"stage"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_late_events_total", Help: "Events behind the watermark, by stage: still counted toward spend, not toward anomaly metrics.",
		}, []string{"stage"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_invalid_events_total", Help: "Records that failed to decode or validate and were skipped (the sink dead-letters them), by input.",
		}, []string{"input"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_anomalies_total", Help: "Anomalies published, by metric.",
		}, []string{"metric"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_transactions_committed_total", Help: "Transactions committed, by stage.",
		}, []string{"stage"}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_transactions_aborted_total", Help: "Transactions aborted (rebalance, fencing, errors), by stage; their input is read again.",
		}, []string{"stage"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_meter_state_restores_total", Help: "Partition states rebuilt from meter-state.v1, by stage.",
		}, []string{"stage"}),
		restoreSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "burnrate_meter_state_restore_seconds", Help: "Time to rebuild a partition's state from meter-state.v1.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"stage"}),
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
	if reg != nil {
		reg.MustRegister(m.events, m.late, m.invalid, m.anomalies, m.commits, m.aborts, m.restores, m.restoreSeconds, m.runs, m.watermarkLag, m.openWindows)
	}
	return m
}
