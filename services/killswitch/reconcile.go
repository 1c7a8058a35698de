package killswitch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"
)

// subjectColumns maps the meter's subject keys to usage_events columns.
var subjectColumns = map[string]string{
	"key": "virtual_key_id", "team": "team", "app": "app", "user": "user", "customer": "customer", "env": "env",
	"model": "if(served_model != '', served_model, requested_model)", "agent_run": "agent_run_id",
}

// subjectFilter turns "team=a,model=b" into a WHERE clause and its args;
// ok is false for a key ClickHouse cannot filter on.
func subjectFilter(subject string) (string, []any, bool) {
	var conds []string
	var args []any
	for _, kv := range strings.Split(subject, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if tag, ok := strings.CutPrefix(k, "tag."); ok {
			conds = append(conds, "tag_values[indexOf(tag_keys, ?)] = ?")
			args = append(args, tag, v)
			continue
		}
		col, ok := subjectColumns[k]
		if !ok {
			return "", nil, false
		}
		conds = append(conds, col+" = ?")
		args = append(args, v)
	}
	return strings.Join(conds, " AND "), args, true
}

// reconcile compares the current period of every budget held here with the
// sum of usage_events in ClickHouse, once per interval, and exports the
// drift per budget. It reads state under the stage lock and queries
// outside it.
func reconcile(ctx context.Context, conn driver.Conn, db string, interval time.Duration, locked func(func()), eng *engine, now func() time.Time, m *metrics, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var bs []jsonBudget
		locked(func() { bs = eng.snapshot(now()) })
		drift := map[string]int64{}
		failed := false
		for _, b := range bs {
			where, args, ok := subjectFilter(b.Subject)
			if !ok || b.LimitNanoUSD == 0 {
				continue
			}
			q := fmt.Sprintf("SELECT toInt64(sum(cost_nano_usd)) FROM %s.usage_events WHERE occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?) AND %s", db, where)
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var sum int64
			err := conn.QueryRow(qctx, q, append([]any{b.PeriodStart.Unix(), b.PeriodEnd.Unix()}, args...)...).Scan(&sum)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("reconciliation query failed", zap.String("budget", b.Budget), zap.String("subject", b.Subject), zap.Error(err))
				}
				failed = true
				break
			}
			drift[b.Budget] += b.SpentNanoUSD - sum
		}
		if failed {
			m.reconcile.WithLabelValues("error").Inc()
			continue
		}
		m.reconcile.WithLabelValues("ok").Inc()
		for name, d := range drift {
			m.drift.WithLabelValues(name).Set(float64(d))
		}
	}
}
