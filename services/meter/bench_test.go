package meter

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// BenchmarkSpendStage is the meter's per-event work on one core: decode and
// validate a usage.v1 record, find its subjects, add it to the deltas and
// run stats, and, every 250 ms worth of events at 300k/s, flush and encode
// the spend.v1 and changelog records. Kafka I/O is not included (the e2e
// test covers it); events/s is per core since this runs on one goroutine.
func BenchmarkSpendStage(b *testing.B) {
	names := ktopics.WithPrefix("bench.")
	cfg := DefaultConfig()
	h := &spendHandler{cfg: &cfg, names: names, m: newMetrics(nil), parts: map[tp]*spendPartition{}}
	t := tp{Topic: names.Usage()}
	h.Restore(t, nil)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	recs := make([]*kgo.Record, 4096)
	for i := range recs {
		r, _ := sinktest.UsageRecord(names.Usage(), i, at.Add(time.Duration(i)*3*time.Millisecond))
		recs[i] = r
	}
	now := at.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	out := 0
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		r.Offset = int64(i)
		h.Process(r, now)
		if i%75000 == 74999 {
			out += len(h.Flush(now))
		}
	}
	out += len(h.Flush(now))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	_ = out
}
