package e2e

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

// TestReportSumsToTheRawTable runs `burnrate report` over usage the real
// sink wrote: the CSV by team adds up, to the nano-dollar, to the raw
// table's total, and a breakdown by team and tag does too.
func TestReportSumsToTheRawTable(t *testing.T) {
	r := newSinkRig(t, "  group: report-sink\n  batch_interval: 200ms\n")
	start := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	r.produceUsage(t, 0, 4000, start, 48*time.Hour)
	startService(t, r.cfgFile, "sink")
	r.waitRows(t, 4000, 90*time.Second)
	var want int64
	r.query(t, fmt.Sprintf("SELECT toInt64(sum(cost_nano_usd)) FROM %s.usage_events", r.chcfg.Database), &want)

	for _, by := range []string{"team", "team,tag.tier", "model,day"} {
		out, err := burnrate(t, nil, "report", "--config", r.cfgFile, "--by", by, "--format", "csv", "--from", "2026-11-01", "--to", "2026-12-01")
		if err != nil {
			t.Fatalf("report --by %s: %v\n%s", by, err, out)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("report --by %s: not CSV: %v\n%s", by, err, out)
		}
		head := recs[0]
		col := -1
		for i, h := range head {
			if h == "cost_nano_usd" {
				col = i
			}
		}
		if col < 0 || head[0] != strings.Split(by, ",")[0] {
			t.Fatalf("report --by %s: header %v", by, head)
		}
		var sum int64
		for _, rec := range recs[1:] {
			v, err := strconv.ParseInt(rec[col], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			sum += v
		}
		if sum != want {
			t.Errorf("report --by %s sums to %d nano-USD, the raw table to %d", by, sum, want)
		}
		t.Logf("--by %s: %d rows, total %d nano-USD = raw table", by, len(recs)-1, sum)
	}

	out, err := burnrate(t, nil, "report", "--config", r.cfgFile, "--by", "team", "--format", "json", "--from", "2026-11-01", "--to", "2026-12-01")
	var js struct {
		Total int64 `json:"total_cost_nano_usd"`
		Rows  []struct {
			Dimensions map[string]string `json:"dimensions"`
		} `json:"rows"`
	}
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || js.Total != want || len(js.Rows) != 6 || js.Rows[0].Dimensions["team"] == "" {
		t.Errorf("json report: %v %+v\n%s", err, js, out)
	}
	if out, err := burnrate(t, nil, "report", "--config", r.cfgFile, "--by", "planet"); err == nil || !strings.Contains(out, `--by: "planet" is not one of`) {
		t.Errorf("bad --by: %v\n%s", err, out)
	}
}
