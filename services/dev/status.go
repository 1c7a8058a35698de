package dev

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/encoding/json"
)

// Status is the demo's live summary, from ClickHouse.
type Status struct {
	UpdatedAt      time.Time         `json:"updated_at"`
	Teams          []TeamSpend       `json:"teams"`
	BlockedTeams   []string          `json:"blocked_teams"` // teams whose own calls (not an agent run's) were refused
	Verdicts       map[string]uint64 `json:"verdicts"`      // by action
	LoopsBroken    uint64            `json:"loops_broken"`
	Anomalies      uint64            `json:"anomalies"`
	IdleGPUs       uint64            `json:"idle_gpus"` // GPUs with an idle anomaly
	GPUIdleCostUSD float64           `json:"gpu_idle_cost_usd"`
	GPUCostUSD     float64           `json:"gpu_cost_usd"`
	Endpoints      map[string]string `json:"endpoints"`
}

// TeamSpend is one team's model spend so far.
type TeamSpend struct {
	Team       string  `json:"team"`
	USD        float64 `json:"usd"`
	Requests   uint64  `json:"requests"`
	Blocked    uint64  `json:"blocked"`     // refused by the team's budget (verdict or lease)
	RunBlocked uint64  `json:"run_blocked"` // refused because their agent run was stopped
}

// summarize reads the summary from ClickHouse.
func summarize(ctx context.Context, conn driver.Conn, db string) (Status, error) {
	st := Status{UpdatedAt: time.Now().UTC(), Verdicts: map[string]uint64{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT team, toInt64(sum(cost_nano_usd)), count(), countIf(status = 'blocked' AND agent_run_id = ''), "+
		"countIf(status = 'blocked' AND agent_run_id != '') FROM "+db+".usage_events GROUP BY team ORDER BY team")
	if err != nil {
		return st, err
	}
	for rows.Next() {
		var t TeamSpend
		var nano int64
		if err := rows.Scan(&t.Team, &nano, &t.Requests, &t.Blocked, &t.RunBlocked); err != nil {
			rows.Close()
			return st, err
		}
		t.USD = float64(nano) / 1e9
		st.Teams = append(st.Teams, t)
		if t.Blocked > 0 {
			st.BlockedTeams = append(st.BlockedTeams, t.Team)
		}
	}
	rows.Close()
	rows, err = conn.Query(ctx, "SELECT action, count() FROM "+db+".verdicts GROUP BY action")
	if err != nil {
		return st, err
	}
	for rows.Next() {
		var a string
		var n uint64
		if err := rows.Scan(&a, &n); err != nil {
			rows.Close()
			return st, err
		}
		st.Verdicts[a] = n
	}
	rows.Close()
	var idle, cost int64
	for _, q := range []struct {
		sql  string
		dest []any
	}{
		{"SELECT count() FROM " + db + ".budget_events WHERE kind = 'loop_break'", []any{&st.LoopsBroken}},
		{"SELECT count() FROM " + db + ".anomalies", []any{&st.Anomalies}},
		{"SELECT uniqExact(subject) FROM " + db + ".anomalies WHERE metric = 'gpu_idle_fraction'", []any{&st.IdleGPUs}},
		{"SELECT toInt64(sum(idle_cost_nano_usd)), toInt64(sum(cost_nano_usd)) FROM " + db + ".gpu_samples", []any{&idle, &cost}},
	} {
		if err := conn.QueryRow(ctx, q.sql).Scan(q.dest...); err != nil {
			return st, err
		}
	}
	st.GPUIdleCostUSD, st.GPUCostUSD = float64(idle)/1e9, float64(cost)/1e9
	return st, nil
}

// print writes the summary for the terminal.
func (st Status) print(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "── %s ─────────────────────────────────────────\n", st.UpdatedAt.Local().Format("15:04:05"))
	sort.Slice(st.Teams, func(i, j int) bool { return st.Teams[i].USD > st.Teams[j].USD })
	for _, t := range st.Teams {
		mark := ""
		if t.Blocked > 0 {
			mark = fmt.Sprintf("  BUDGET BLOCKED (%d calls refused)", t.Blocked)
		}
		if t.RunBlocked > 0 {
			mark += fmt.Sprintf("  runaway agent stopped (%d calls refused)", t.RunBlocked)
		}
		fmt.Fprintf(&b, "  %-12s $%9.4f  %6d calls%s\n", t.Team, t.USD, t.Requests, mark)
	}
	var vs []string
	for a, n := range st.Verdicts {
		vs = append(vs, fmt.Sprintf("%s %d", a, n))
	}
	sort.Strings(vs)
	fmt.Fprintf(&b, "  verdicts: %s | loops broken: %d | anomalies: %d (idle GPUs %d)\n", orNone(strings.Join(vs, ", ")), st.LoopsBroken, st.Anomalies, st.IdleGPUs)
	fmt.Fprintf(&b, "  GPUs: $%.4f, of which idle $%.4f\n", st.GPUCostUSD, st.GPUIdleCostUSD)
	io.WriteString(w, b.String())
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}

// reporter refreshes the summary, prints it every interval and serves it
// as JSON on addr (empty: not served).
type reporter struct {
	mu  sync.Mutex
	cur Status
}

func (r *reporter) run(ctx context.Context, conn driver.Conn, db string, endpoints map[string]string, out io.Writer, every time.Duration) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := summarize(ctx, conn, db)
		if err != nil {
			continue
		}
		st.Endpoints = endpoints
		r.mu.Lock()
		r.cur = st
		r.mu.Unlock()
		if time.Since(last) >= every {
			st.print(out)
			last = time.Now()
		}
	}
}

func (r *reporter) serve(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dev: --status-addr %s: %w", addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		b, _ := json.Marshal(r.cur)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	return "http://" + ln.Addr().String(), nil
}
