package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/sink/sinktest"
)

const chDatasource = "grafana-clickhouse-datasource"

// dashQuery is one SQL query found in a dashboard or alert rule.
type dashQuery struct {
	where      string // file and panel, for messages
	sql        string
	timeSeries bool     // format 0: the first column must be time
	wantCols   []string // columns that must be there
}

// fillForDashboards writes traffic of every kind into the rig's topics,
// all within the last hour, and waits until the sink has written it.
func fillForDashboards(t *testing.T, r *sinkRig) {
	t.Helper()
	now := time.Now().UTC()
	start := now.Add(-50 * time.Minute)
	r.produceUsage(t, 0, 3000, start, 45*time.Minute)
	var recs []*kgo.Record
	for i := 0; i < 300; i++ {
		g := sinktest.GPU(i, start.Add(time.Duration(i/8)*time.Minute))
		recs = append(recs, sinktest.Record(r.names.GPU(), g.GPUUUID, g))
	}
	idle := sinktest.GPU(0, now.Add(-5*time.Minute))
	idle.GPUUUID, idle.Attribution = "GPU-unallocated-7", events.Workload{Team: "__idle__"}
	idle.GPUUtil, idle.GrEngineActive, idle.IdleCostNanoUSD = 0, 0, idle.CostNanoUSD
	recs = append(recs, sinktest.Record(r.names.GPU(), idle.GPUUUID, idle))
	for i := 0; i < 12; i++ {
		a := sinktest.Anomaly(i, now.Add(-time.Duration(i)*time.Minute))
		if i%4 == 3 {
			a.Subject, a.Metric, a.Detector, a.Severity = "gpu=GPU-unallocated-7", "gpu_idle_fraction", events.DetectorThreshold, events.SeverityWarning
		}
		recs = append(recs, sinktest.Record(r.names.Anomalies(), a.Subject, a))
		v := sinktest.Verdict(i, now.Add(-time.Duration(i)*time.Minute))
		if i%3 == 1 {
			v.Action, v.LimitNanoUSD, v.Lease = events.ActionLease, 5e9, &events.Lease{RemainingNanoUSD: 1e9, Instances: 2, PerInstanceNanoUSD: 5e8}
		}
		if i == 2 {
			v.IssuedBy, v.Reason = "admin:ops-amy", "runaway batch job"
		}
		recs = append(recs, sinktest.Record(r.names.Verdicts(), v.Subject+fmt.Sprint(i), v))
	}
	kinds := []events.BudgetEventKind{events.BudgetThreshold, events.BudgetExhausted, events.BudgetForecast, events.BudgetLoopBreak,
		events.BudgetAnomaly, events.BudgetManualKill, events.BudgetManualLift, events.BudgetReset}
	for i := 0; i < 48; i++ {
		e := sinktest.BudgetEvent(0, now.Add(-time.Duration(i)*time.Minute))
		e.Kind = kinds[i%len(kinds)]
		switch e.Kind {
		case events.BudgetThreshold:
			e.ThresholdPct = []int{50, 80, 95}[i%3]
		case events.BudgetForecast:
			e.ThresholdPct, e.ForecastNanoUSD = 0, 7e12
		case events.BudgetLoopBreak, events.BudgetManualKill, events.BudgetManualLift:
			e.ThresholdPct, e.Budget, e.Period, e.PeriodStart, e.PeriodEnd = 0, "", "", nil, nil
			e.Subject, e.Actor = fmt.Sprintf("agent_run=run-%d", i), "admin:ops-amy"
		default:
			e.ThresholdPct = 0
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, sinktest.Record(r.names.BudgetEvents(), e.Subject, e))
	}
	if err := r.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	startService(t, r.cfgFile, "sink")
	for table, n := range map[string]uint64{"usage_events": 3000, "gpu_samples": 301, "anomalies": 12, "verdicts": 12, "budget_events": 48} {
		deadline := time.Now().Add(90 * time.Second)
		for {
			var got uint64
			r.query(t, fmt.Sprintf("SELECT count() FROM %s.%s", r.chcfg.Database, table), &got)
			if got == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows, want %d", table, got, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

var (
	varRef   = regexp.MustCompile(`\$\{([a-zA-Z_]+)(:[a-z]+)?\}`)
	leftover = regexp.MustCompile(`\$(__[a-zA-Z_]+|\{|[a-zA-Z_])`)
	timeFilt = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)
)

// expand replaces the Grafana ClickHouse macros and template variables the
// dashboards use, as the plugin and Grafana do, for the last hour.
func expand(sql, db string, values map[string][]string) (string, error) {
	from, to := time.Now().Add(-time.Hour).Unix(), time.Now().Unix()
	sql = timeFilt.ReplaceAllString(sql, fmt.Sprintf("$1 >= toDateTime(%d) AND $1 <= toDateTime(%d)", from, to))
	sql = strings.NewReplacer("$__fromTime", fmt.Sprintf("toDateTime(%d)", from), "$__toTime", fmt.Sprintf("toDateTime(%d)", to),
		"$__interval_s", "60").Replace(sql)
	var err error
	sql = varRef.ReplaceAllStringFunc(sql, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "database" {
			return db
		}
		vs, ok := values[name]
		if !ok || len(vs) == 0 {
			err = fmt.Errorf("variable ${%s} has no values", name)
			return m
		}
		if format == ":singlequote" {
			q := make([]string, len(vs))
			for i, v := range vs {
				q[i] = "'" + strings.ReplaceAll(v, "'", "\\'") + "'"
			}
			return strings.Join(q, ",")
		}
		return vs[0]
	})
	if err != nil {
		return "", err
	}
	if m := leftover.FindString(sql); m != "" {
		return "", fmt.Errorf("unexpanded %q left in the query", m)
	}
	return sql, nil
}

// runQuery runs q and checks its columns; it returns the rows' first
// column as strings (for variables).
func (r *sinkRig) runQuery(t *testing.T, q dashQuery, values map[string][]string) []string {
	t.Helper()
	sql, err := expand(q.sql, r.chcfg.Database, values)
	if err != nil {
		t.Errorf("%s: %v\n%s", q.where, err, q.sql)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := r.ch.Query(ctx, sql)
	if err != nil {
		t.Errorf("%s: %v\n%s", q.where, err, sql)
		return nil
	}
	defer rows.Close()
	cols := rows.Columns()
	if q.timeSeries && (len(cols) < 2 || cols[0] != "time") {
		t.Errorf("%s: a time series must return time first and a value, got columns %v", q.where, cols)
	}
	for _, c := range q.wantCols {
		if !slices.Contains(cols, c) {
			t.Errorf("%s: no column %q in %v", q.where, c, cols)
		}
	}
	var first []string
	n := 0
	types := rows.ColumnTypes()
	for rows.Next() {
		n++
		dest := make([]any, len(cols))
		for i, ct := range types {
			dest[i] = newScanDest(ct.ScanType())
		}
		if err := rows.Scan(dest...); err != nil {
			t.Errorf("%s: scan: %v", q.where, err)
			return nil
		}
		first = append(first, fmt.Sprint(deref(dest[0])))
	}
	if err := rows.Err(); err != nil {
		t.Errorf("%s: %v", q.where, err)
	}
	if n == 0 {
		t.Errorf("%s: no rows (columns %v)\n%s", q.where, cols, sql)
	}
	return first
}

// TestDashboardAndAlertQueriesRunOnClickHouse runs every SQL query of every
// dashboard (panels, template variables, annotations) and of every Grafana
// alert rule against the real ClickHouse, filled with traffic of every
// kind through the real sink; each must succeed, return rows and the
// columns it is used with. It also checks every dashboard's structure.
func TestDashboardAndAlertQueriesRunOnClickHouse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "dashboards", "grafana", "*.json"))
	if len(files) < 6 {
		t.Fatalf("%d dashboards in dashboards/grafana, want the 6 of the issue", len(files))
	}
	r := newSinkRig(t, "  group: dash-sink\n  batch_interval: 200ms\n")
	fillForDashboards(t, r)

	uids := map[string]string{}
	queries := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		name := filepath.Base(file)
		uid, _ := d["uid"].(string)
		if uid == "" || d["title"] == "" || d["title"] == nil {
			t.Errorf("%s: uid %q, title %v", name, uid, d["title"])
		}
		if other, dup := uids[uid]; dup {
			t.Errorf("%s and %s share uid %q", name, other, uid)
		}
		uids[uid] = name
		if v, _ := d["schemaVersion"].(float64); v < 36 {
			t.Errorf("%s: schemaVersion %v, want a current one (>= 36)", name, v)
		}
		// Template variables first: their values feed the panels.
		values := map[string][]string{}
		templ, _ := d["templating"].(map[string]any)
		vars, _ := templ["list"].([]any)
		for _, v := range vars {
			v, _ := v.(map[string]any)
			vname, _ := v["name"].(string)
			if v["type"] != "query" || !isClickHouse(v["datasource"]) {
				continue
			}
			sql := queryText(v["query"])
			if sql == "" {
				t.Errorf("%s: variable %s has no SQL", name, vname)
				continue
			}
			values[vname] = r.runQuery(t, dashQuery{where: name + " variable " + vname, sql: sql}, values)
			queries++
		}
		ann, _ := d["annotations"].(map[string]any)
		anns, _ := ann["list"].([]any)
		for _, a := range anns {
			a, _ := a.(map[string]any)
			if !isClickHouse(a["datasource"]) {
				continue
			}
			for _, tq := range targetsOf(a) {
				r.runQuery(t, dashQuery{where: fmt.Sprintf("%s annotation %v", name, a["name"]), sql: tq, wantCols: []string{"time", "text"}}, values)
				queries++
			}
		}
		ids := map[float64]bool{}
		for _, p := range panelsOf(d) {
			id, _ := p["id"].(float64)
			title, _ := p["title"].(string)
			where := fmt.Sprintf("%s panel %v %q", name, id, title)
			if id == 0 || ids[id] {
				t.Errorf("%s: missing or duplicate id", where)
			}
			ids[id] = true
			if p["datasource"] == nil {
				t.Errorf("%s: no datasource", where)
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			for _, tg := range targets {
				tg, _ := tg.(map[string]any)
				ds := tg["datasource"]
				if ds == nil {
					ds = p["datasource"]
				}
				if !isClickHouse(ds) {
					if expr, _ := tg["expr"].(string); expr == "" {
						t.Errorf("%s: a non-ClickHouse target without expr", where)
					}
					continue
				}
				sql, _ := tg["rawSql"].(string)
				format, _ := tg["format"].(float64)
				r.runQuery(t, dashQuery{where: where, sql: sql, timeSeries: format == 0}, values)
				queries++
			}
		}
	}

	alertFiles, _ := filepath.Glob(filepath.Join("..", "dashboards", "alerting", "*.yaml"))
	alerts := 0
	for _, file := range alertFiles {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					UID   string `yaml:"uid"`
					Title string `yaml:"title"`
					Data  []struct {
						DatasourceUID string         `yaml:"datasourceUid"`
						Model         map[string]any `yaml:"model"`
					} `yaml:"data"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, g := range doc.Groups {
			for _, rule := range g.Rules {
				for _, q := range rule.Data {
					if q.DatasourceUID != "burnrate-clickhouse" {
						continue
					}
					sql, _ := q.Model["rawSql"].(string)
					sql = strings.ReplaceAll(sql, "burnrate.", "${database}.")
					r.runQuery(t, dashQuery{where: "alert " + rule.Title, sql: sql, wantCols: []string{"value"}}, nil)
					alerts++
				}
			}
		}
	}
	if alerts < 5 {
		t.Errorf("%d ClickHouse alert queries, want the budget, forecast, anomaly and idle GPU rules", alerts)
	}
	t.Logf("%d dashboard queries and %d alert queries ran on ClickHouse %s", queries, alerts, "18.16")
}

func isClickHouse(ds any) bool {
	m, _ := ds.(map[string]any)
	return m["type"] == chDatasource
}

func queryText(q any) string {
	switch q := q.(type) {
	case string:
		return q
	case map[string]any:
		for _, k := range []string{"rawSql", "query"} {
			if s, _ := q[k].(string); s != "" {
				return s
			}
		}
	}
	return ""
}

func targetsOf(a map[string]any) []string {
	var out []string
	if tg, ok := a["target"].(map[string]any); ok {
		if s := queryText(tg); s != "" {
			out = append(out, s)
		}
	}
	if ts, ok := a["targets"].([]any); ok {
		for _, tg := range ts {
			if s := queryText(tg); s != "" {
				out = append(out, s)
			}
		}
	}
	if s := queryText(a["query"]); s != "" {
		out = append(out, s)
	}
	return out
}

// panelsOf lists every panel, rows' children included.
func panelsOf(d map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(ps []any)
	walk = func(ps []any) {
		for _, p := range ps {
			p, _ := p.(map[string]any)
			if p["type"] == "row" {
				sub, _ := p["panels"].([]any)
				walk(sub)
				continue
			}
			out = append(out, p)
		}
	}
	ps, _ := d["panels"].([]any)
	walk(ps)
	return out
}

func newScanDest(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(p any) any { return reflect.ValueOf(p).Elem().Interface() }
