package spool

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bytes, records, maxBytes prometheus.GaugeFunc
	appends, full            prometheus.Counter
	corrupt, corruptBytes    prometheus.Counter
	syncErrors               prometheus.Counter
}

func newMetrics(s *Spool) metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return metrics{
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_spool_bytes",
			Help: "Disk space of the spool's segment files (bounded by burnrate_spool_max_bytes)."},
			func() float64 { return float64(s.Bytes()) }),
		records: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_spool_records",
			Help: "Records in the spool not yet replayed and committed."},
			func() float64 { return float64(s.Len()) }),
		maxBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_spool_max_bytes",
			Help: "The spool's bound on disk space; appends beyond it are refused."},
			func() float64 { return float64(s.maxBytes) }),
		appends:      counter("burnrate_spool_appends_total", "Records appended to the spool."),
		full:         counter("burnrate_spool_full_total", "Appends refused because the spool was full."),
		corrupt:      counter("burnrate_spool_corrupt_records_total", "Records lost to damaged spool data (torn tails, checksum failures); a damaged stretch found at open counts 1."),
		corruptBytes: counter("burnrate_spool_corrupt_bytes_total", "Bytes of damaged spool data cut."),
		syncErrors:   counter("burnrate_spool_sync_errors_total", "Background fsyncs of the spool that failed (retried)."),
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.bytes, m.records, m.maxBytes, m.appends, m.full, m.corrupt, m.corruptBytes, m.syncErrors}
}

// Collectors returns the spool's metrics, for callers that register them
// themselves instead of setting Options.Registerer.
func (s *Spool) Collectors() []prometheus.Collector { return s.m.all() }
