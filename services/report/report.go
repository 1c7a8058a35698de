// Package report is `burnrate report`: chargeback and showback from
// ClickHouse — spend grouped by any attribution dimension over a period,
// as a table, CSV or JSON. Money is summed as integers (nano-USD) in
// ClickHouse and printed exactly; report only reads.
package report

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/encoding/json"
)

// Options say what to report.
type Options struct {
	Source string   // usage (model calls) or gpu (GPU samples)
	By     []string // dimensions, e.g. [team app]; empty: one total row
	From   time.Time
	To     time.Time // exclusive
	Format string    // table, csv or json
	// Progress, when set, gets a line per progress packet of long queries.
	Progress io.Writer
}

// usageDims and gpuDims map dimension names to columns.
var (
	usageDims = map[string]string{
		"org": "org", "team": "team", "app": "app", "env": "env", "user": "user", "customer": "customer",
		"feature": "feature", "key": "virtual_key_id", "agent_run": "agent_run_id", "provider": "provider",
		"model": "if(served_model != '', served_model, requested_model)", "status": "status",
		"day": "toString(toDate(occurred_at))", "month": "toString(toStartOfMonth(occurred_at))",
	}
	gpuDims = map[string]string{
		"team": "team", "app": "app", "namespace": "namespace", "node": "node", "gpu_model": "gpu_model",
		"day": "toString(toDate(occurred_at))", "month": "toString(toStartOfMonth(occurred_at))",
	}
)

// Validate names the bad option.
func (o Options) Validate() error {
	var errs []error
	dims := usageDims
	switch o.Source {
	case "usage":
	case "gpu":
		dims = gpuDims
	default:
		errs = append(errs, fmt.Errorf("--source: %q is not usage or gpu", o.Source))
	}
	for _, d := range o.By {
		if _, ok := dims[d]; !ok && !(o.Source == "usage" && strings.HasPrefix(d, "tag.") && len(d) > 4) {
			errs = append(errs, fmt.Errorf("--by: %q is not one of %s", d, strings.Join(names(dims, o.Source == "usage"), ", ")))
		}
	}
	if !o.To.After(o.From) {
		errs = append(errs, fmt.Errorf("--to (%s) must be after --from (%s)", o.To.Format(time.RFC3339), o.From.Format(time.RFC3339)))
	}
	switch o.Format {
	case "table", "csv", "json":
	default:
		errs = append(errs, fmt.Errorf("--format: %q is not table, csv or json", o.Format))
	}
	return errors.Join(errs...)
}

func names(m map[string]string, tags bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	if tags {
		out = append(out, "tag.<key>")
	}
	return out
}

// Row is one group of the report.
type Row struct {
	Keys         []string `json:"-"`
	Requests     uint64   `json:"requests"`      // calls (usage) or samples (gpu)
	Tokens       uint64   `json:"tokens"`        // usage: every billed token
	GPUHours     float64  `json:"gpu_hours"`     // gpu
	CostNanoUSD  int64    `json:"cost_nano_usd"` // exact
	IdleNanoUSD  int64    `json:"idle_cost_nano_usd"`
	SharePercent float64  `json:"share_percent"`
}

// query builds the SQL for o.
func query(o Options, db string) (string, []any) {
	var dims []string
	var args []any
	for _, d := range o.By {
		if tag, ok := strings.CutPrefix(d, "tag."); ok {
			dims = append(dims, "tag_values[indexOf(tag_keys, ?)]")
			args = append(args, tag)
			continue
		}
		if o.Source == "gpu" {
			dims = append(dims, gpuDims[d])
		} else {
			dims = append(dims, usageDims[d])
		}
	}
	sel := make([]string, len(dims))
	group := make([]string, len(dims))
	for i, d := range dims {
		sel[i] = fmt.Sprintf("%s AS k%d", d, i)
		group[i] = fmt.Sprintf("k%d", i)
	}
	var metrics, table string
	if o.Source == "gpu" {
		table = "gpu_samples"
		metrics = "count() AS n, toUInt64(0) AS tok, sum(toUInt64(interval_ms)) AS ms, toInt64(sum(cost_nano_usd)) AS cost, toInt64(sum(idle_cost_nano_usd)) AS idle"
	} else {
		table = "usage_events"
		metrics = "count() AS n, sum(input_tokens + cached_input_tokens + cache_write_5m_tokens + cache_write_1h_tokens + output_tokens) AS tok, toUInt64(0) AS ms, toInt64(sum(cost_nano_usd)) AS cost, toInt64(0) AS idle"
	}
	q := "SELECT " + strings.Join(append(sel, metrics), ", ") + " FROM " + db + "." + table +
		" WHERE occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)"
	args = append(args, o.From.Unix(), o.To.Unix())
	if len(group) > 0 {
		q += " GROUP BY " + strings.Join(group, ", ")
	}
	q += " ORDER BY cost DESC"
	if len(group) > 0 {
		q += ", " + strings.Join(group, ", ")
	}
	return q, args
}

// Run queries ClickHouse and writes the report to w.
func Run(ctx context.Context, conn driver.Conn, db string, o Options, w io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	q, args := query(o, db)
	if o.Progress != nil {
		start := time.Now()
		var read uint64
		ctx = clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) {
			read += p.Rows
			fmt.Fprintf(o.Progress, "\rreport: %d rows read in %s", read, time.Since(start).Round(100*time.Millisecond))
		}))
		defer fmt.Fprintln(o.Progress)
	}
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("report: query ClickHouse: %w", err)
	}
	defer rows.Close()
	var out []Row
	var total int64
	for rows.Next() {
		r := Row{Keys: make([]string, len(o.By))}
		dest := make([]any, 0, len(o.By)+5)
		for i := range r.Keys {
			dest = append(dest, &r.Keys[i])
		}
		var ms uint64
		dest = append(dest, &r.Requests, &r.Tokens, &ms, &r.CostNanoUSD, &r.IdleNanoUSD)
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("report: read row: %w", err)
		}
		r.GPUHours = float64(ms) / 3.6e6
		total += r.CostNanoUSD
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for i := range out {
		if total > 0 {
			out[i].SharePercent = float64(out[i].CostNanoUSD) * 100 / float64(total)
		}
	}
	return write(w, o, out, total)
}

// USD formats nano-USD exactly: 1234567890 → "1.234567890".
func USD(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	return fmt.Sprintf("%s%d.%09d", sign, n/1e9, n%1e9)
}

func write(w io.Writer, o Options, rows []Row, total int64) error {
	gpu := o.Source == "gpu"
	head := append([]string(nil), o.By...)
	if gpu {
		head = append(head, "samples", "gpu_hours", "cost_usd", "idle_cost_usd", "cost_nano_usd", "share_pct")
	} else {
		head = append(head, "requests", "tokens", "cost_usd", "cost_nano_usd", "share_pct")
	}
	cells := func(r Row) []string {
		c := append([]string(nil), r.Keys...)
		if gpu {
			c = append(c, strconv.FormatUint(r.Requests, 10), strconv.FormatFloat(r.GPUHours, 'f', 4, 64), USD(r.CostNanoUSD), USD(r.IdleNanoUSD))
		} else {
			c = append(c, strconv.FormatUint(r.Requests, 10), strconv.FormatUint(r.Tokens, 10), USD(r.CostNanoUSD))
		}
		return append(c, strconv.FormatInt(r.CostNanoUSD, 10), strconv.FormatFloat(r.SharePercent, 'f', 2, 64))
	}
	switch o.Format {
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(head)
		for _, r := range rows {
			cw.Write(cells(r))
		}
		cw.Flush()
		return cw.Error()
	case "json":
		type jrow struct {
			Dimensions map[string]string `json:"dimensions"`
			Row
			CostUSD string `json:"cost_usd"`
		}
		js := make([]jrow, len(rows))
		for i, r := range rows {
			d := map[string]string{}
			for j, k := range o.By {
				d[k] = r.Keys[j]
			}
			js[i] = jrow{Dimensions: d, Row: r, CostUSD: USD(r.CostNanoUSD)}
		}
		b, err := json.Marshal(map[string]any{"source": o.Source, "by": o.By, "from": o.From.UTC(), "to": o.To.UTC(),
			"total_cost_nano_usd": total, "total_cost_usd": USD(total), "rows": js})
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(head, "\t"))+"\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(cells(r), "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "total %s USD in %d group(s), %s to %s\n", USD(total), len(rows),
		o.From.UTC().Format(time.RFC3339), o.To.UTC().Format(time.RFC3339))
	return err
}
