package sink

import (
	"strings"
	"testing"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/ktopics"
)

func TestUsageRowsKeepEveryColumnAndSortTags(t *testing.T) {
	at := time.Date(2026, 11, 30, 23, 59, 59, 123456789, time.UTC)
	u := sinktest.Usage(3, at)
	u.Attribution.Tags = events.Tags{"zone": "eu", "app-tier": "gold", "cost-center": "cc-1"}
	b, err := events.Encode(u)
	if err != nil {
		t.Fatal(err)
	}
	r := lookupTable(ktopics.Usage).newRows().(*columns[events.Usage])
	got, err := r.decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(at) {
		t.Errorf("decode returned time %s, want %s", got, at)
	}
	r.add(7, 42)
	if len(r.cols)+2 != len(r.columns()) {
		t.Fatalf("columns() lists %d names for %d columns", len(r.columns()), len(r.cols)+2)
	}
	values := map[string]any{}
	for _, c := range r.cols {
		values[c.name()] = c.values()
	}
	if k := values["tag_keys"].([][]string)[0]; strings.Join(k, ",") != "app-tier,cost-center,zone" {
		t.Errorf("tag_keys %v: want sorted", k)
	}
	if v := values["tag_values"].([][]string)[0]; strings.Join(v, ",") != "gold,cc-1,eu" {
		t.Errorf("tag_values %v: want in key order", v)
	}
	if n := values["occurred_at_nanos"].([]uint32)[0]; n != 123456789 {
		t.Errorf("occurred_at_nanos %d", n)
	}
	if c := values["cost_nano_usd"].([]int64)[0]; c != u.Cost.TotalNanoUSD {
		t.Errorf("cost %d, want %d", c, u.Cost.TotalNanoUSD)
	}
	if r.partitions[0] != 7 || r.offsets[0] != 42 {
		t.Errorf("kafka position %d/%d, want 7/42", r.partitions[0], r.offsets[0])
	}
	r.reset()
	if r.len() != 0 || len(r.offsets) != 0 {
		t.Error("reset left rows behind")
	}
}

func TestRowsRefuseWhatClickHouseWouldCorrupt(t *testing.T) {
	r := lookupTable(ktopics.Usage).newRows()
	for name, value := range map[string]string{
		"not json":        `{"schema":`,
		"wrong schema":    strings.Replace(string(encode(t, sinktest.Usage(1, time.Now()))), `"usage.v1"`, `"gpu.v1"`, 1),
		"after year 2106": string(encode(t, sinktest.Usage(1, time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC)))),
	} {
		if _, err := r.decode([]byte(value)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if r.len() != 0 {
		t.Errorf("refused records left %d rows", r.len())
	}
}

func encode(t *testing.T, e events.Event) []byte {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigNamesEveryBadField(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c = Config{Group: "", BatchRows: 0, BatchInterval: 0, MaxInsertRows: 2_000_000, InsertConcurrency: 0, MaxPendingRows: 1, SessionTimeout: time.Second}
	err := c.Validate()
	for _, field := range []string{"group", "batch_rows", "batch_interval", "max_insert_rows", "insert_concurrency", "max_pending_rows", "insert_timeout", "retry_backoff_max", "session_timeout", "shutdown_timeout"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

func TestYYYYMMUsesTheGivenZone(t *testing.T) {
	utc := time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	if got := yyyymm(utc); got != 202611 {
		t.Errorf("UTC month %d", got)
	}
	if got := yyyymm(utc.In(berlin)); got != 202612 {
		t.Errorf("Berlin month %d: a server in Berlin puts this row in December", got)
	}
}
