package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// BenchmarkMeterThroughKafka measures the meter as it runs: one `burnrate
// meter` process reads BURNRATE_BENCH_METER_EVENTS usage events (default
// 1,000,000, produced before it starts) from usage.v1 and commits spend.v1
// and its offsets in transactions, until its group's committed offsets reach
// the end of the topic. It reports events/s of wall time and events per
// second of the meter's own CPU time (per core), with the anomaly stage
// running beside it: events/cpu-s in steady state (from the first tenth of
// the events committed to the end, so process start, topic checks and state
// restore are left out) and events/cpu-s-with-startup over the whole run.
func BenchmarkMeterThroughKafka(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BURNRATE_BENCH_METER_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("BURNRATE_BENCH_METER_EVENTS=%q: want a positive integer", s)
		}
		n = v
	}
	for i := 0; i < b.N; i++ {
		r := newSinkRig(b, "  group: unused\nmeter:\n  group: bench-meter\n")
		r.produceUsage(b, 0, n, time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), time.Hour)
		adm := kadm.NewClient(r.cl)
		b.ResetTimer()
		t0 := time.Now()
		p := startProc(b, nil, "meter", "--config", r.cfgFile)
		var cpu0 float64 // meter CPU when a tenth of the events were committed
		var done0 int64
		for {
			offs, err := adm.FetchOffsets(context.Background(), "bench-meter")
			if err == nil {
				var done int64
				offs.Each(func(o kadm.OffsetResponse) {
					if o.Topic == r.names.Usage() {
						done += o.At
					}
				})
				if done >= int64(n) {
					break
				}
				if done0 == 0 && done >= int64(n/10) {
					cpu0, done0 = p.cpuSeconds(), done
				}
			}
			if time.Since(t0) > 10*time.Minute {
				b.Fatalf("the meter did not commit %d events in 10 minutes", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		took := time.Since(t0)
		b.StopTimer()
		cpu := p.cpuSeconds()
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(float64(int64(n)-done0)/(cpu-cpu0), "events/cpu-s")
		b.ReportMetric(float64(n)/cpu, "events/cpu-s-with-startup")
		b.ReportMetric(p.peakRSS(), "meter-peak-RSS-MB")
		b.ReportMetric(0, "ns/op")
	}
}
