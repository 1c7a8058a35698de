package sink

import (
	"testing"
	"time"

	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// BenchmarkDecodeAndAdd is the sink's per-record CPU before ClickHouse:
// decode, validate and append to the columns of a usage batch.
func BenchmarkDecodeAndAdd(b *testing.B) {
	at := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	vals := make([][]byte, 1024)
	for i := range vals {
		r, _ := sinktest.UsageRecord("usage.v1", i, at)
		vals[i] = r.Value
	}
	rows := lookupTable(ktopics.Usage).newRows()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rows.len() == 100000 {
			rows.reset()
		}
		if _, err := rows.decode(vals[i%len(vals)]); err != nil {
			b.Fatal(err)
		}
		rows.add(0, int64(i))
	}
}
