package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSinkIntoClickHouse measures sustained rows/s from usage.v1 into
// ClickHouse (raw table plus the three rollup views) by one `burnrate sink`
// process: BURNRATE_BENCH_SINK_ROWS events (default 1,000,000) are produced
// first, then the sink starts and the clock runs until ClickHouse holds
// them all. It reports the sink's CPU (cores busy on average) and peak RSS,
// and ClickHouse's CPU over the same time (the server shares the machine).
//
// The events are sinktest.Usage: 6 teams, 7 apps, 4 models, 17 users, 4
// customers, 11 keys, one tag, occurring over one minute of event time (so
// rollup rows per minute are as few as real traffic at this rate makes them).
func BenchmarkSinkIntoClickHouse(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BURNRATE_BENCH_SINK_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("BURNRATE_BENCH_SINK_ROWS=%q: want a positive integer", s)
		}
		n = v
	}
	for i := 0; i < b.N; i++ {
		r := newSinkRig(b, "  group: bench\n"+os.Getenv("BURNRATE_BENCH_SINK_YAML")) // every other key at its default
		start := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
		r.produceUsage(b, 0, n, start, time.Minute)
		b.ResetTimer()
		ch0 := clickhouseCPU()
		p := startProc(b, nil, "sink", "--config", r.cfgFile)
		took := r.waitRows(b, uint64(n), 10*time.Minute)
		b.StopTimer()
		cpu := p.cpuSeconds()
		b.ReportMetric(float64(n)/took.Seconds(), "rows/s")
		b.ReportMetric(cpu/took.Seconds(), "sink-cores")
		b.ReportMetric(p.peakRSS(), "sink-peak-RSS-MB")
		b.ReportMetric((clickhouseCPU()-ch0)/took.Seconds(), "clickhouse-cores")
		b.ReportMetric(0, "ns/op")
	}
}
