package sink

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sink's Prometheus series. Labels are bounded: table and
// topic come from the fixed catalog, partition from the partition count.
type metrics struct {
	rows        *prometheus.CounterVec
	batches     *prometheus.CounterVec
	batchRows   *prometheus.HistogramVec
	insertTime  *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	pendingRows prometheus.Gauge
	paused      prometheus.Gauge
	owned       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_sink_rows_total", Help: "Rows inserted into ClickHouse (confirmed), by table.",
		}, []string{"table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_sink_batches_total", Help: "INSERTs confirmed, by table.",
		}, []string{"table"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "burnrate_sink_batch_rows", Help: "Rows per INSERT, by table.",
			Buckets: prometheus.ExponentialBuckets(10, 4, 9),
		}, []string{"table"}),
		insertTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "burnrate_sink_insert_seconds", Help: "Latency of a successful INSERT attempt, by table.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}, []string{"table"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_sink_retries_total", Help: "Failed attempts that were retried, by what failed (insert, progress, dead_letter).",
		}, []string{"op"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_sink_dead_letters_total", Help: "Records sent to the dead-letter topic (failed to decode or validate), by source topic.",
		}, []string{"topic"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_sink_skipped_records_total", Help: "Records not written on purpose: duplicate (offset already in ClickHouse), tombstone (compacted delete).",
		}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "burnrate_sink_consumer_lag", Help: "Records in the partition not yet confirmed in ClickHouse (high watermark minus confirmed offset).",
		}, []string{"topic", "partition"}),
		pendingRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_sink_pending_rows", Help: "Rows read from Kafka and not yet confirmed in ClickHouse.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_sink_paused_partitions", Help: "Partitions whose fetching is paused for back-pressure.",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burnrate_sink_assigned_partitions", Help: "Partitions this replica owns.",
		}),
	}
	// Series with a fixed set of labels start at 0, so rate() and alert
	// rules see them before the first event.
	for _, why := range []string{"duplicate", "tombstone"} {
		m.skipped.WithLabelValues(why)
	}
	for _, op := range []string{"insert", "progress", "dead_letter"} {
		m.retries.WithLabelValues(op)
	}
	for _, t := range tables {
		m.deadLetters.WithLabelValues(t.topic)
		m.rows.WithLabelValues(t.name)
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.batches, m.batchRows, m.insertTime, m.retries, m.deadLetters, m.skipped, m.lag, m.pendingRows, m.paused, m.owned)
	}
	return m
}
