package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/schemas/prices"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, harness.Need{ClickHouse: true}, &env) }

func frozen() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }

func migrated(t *testing.T) (driver.Conn, string) {
	t.Helper()
	cfg := env.ClickHouseConfig(t)
	conn, err := clickhouse.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := clickhouse.Migrate(context.Background(), conn, cfg.Database, frozen); err != nil {
		t.Fatal(err)
	}
	return conn, cfg.Database
}

// schema returns every table's engine and full definition.
func schema(t *testing.T, conn driver.Conn, db string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(),
		"SELECT name, engine, create_table_query FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var name, engine, create string
		if err := rows.Scan(&name, &engine, &create); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %s\n", name, engine, create)
	}
	return b.String()
}

func TestMigrateTwiceLeavesSchemaUnchanged(t *testing.T) {
	conn, db := migrated(t)
	before := schema(t, conn, db)
	for _, table := range []string{"usage_events", "gpu_samples", "anomalies", "verdicts", "budget_events", "prices",
		"usage_minute", "usage_hour", "usage_day", "gpu_hour", "gpu_day", clickhouse.LedgerTable} {
		if !strings.Contains(before, "\n"+table+" ") && !strings.HasPrefix(before, table+" ") {
			t.Errorf("table %s missing after migrate", table)
		}
	}
	res, err := clickhouse.Migrate(context.Background(), conn, db, frozen)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 {
		t.Errorf("second migrate applied %v, want nothing", res.Applied)
	}
	if after := schema(t, conn, db); after != before {
		t.Errorf("schema changed on second migrate:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	ms, _ := clickhouse.Migrations()
	if res.Current != ms[len(ms)-1].Version {
		t.Errorf("current version %d, want %d", res.Current, ms[len(ms)-1].Version)
	}
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+clickhouse.LedgerTable+" (version, name, checksum, applied_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(uint32(9999), "9999_future.sql", "x", frozen()); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	_, err = clickhouse.Migrate(ctx, conn, db, frozen)
	if err == nil || !strings.Contains(err.Error(), "upgrade burnrate") || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("want a refusal naming migration 9999, got %v", err)
	}
}

func TestMigrateRefusesEditedMigration(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "ALTER TABLE "+db+"."+clickhouse.LedgerTable+" UPDATE checksum = 'deadbeefdeadbeef' WHERE version = 1"); err != nil {
		// 18.16 supports ALTER UPDATE (mutations); wait for it below.
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := clickhouse.Migrate(ctx, conn, db, frozen)
		if err != nil && strings.Contains(err.Error(), "was changed after it was applied") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want a refusal for the edited migration, got %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type fixture struct {
	at                             time.Time
	team, app, model, status       string
	input, cached, output, reasons uint64
	cost                           int64
}

func TestRollupsSumExactly(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	rows := []fixture{
		{base.Add(5 * time.Second), "payments", "checkout", "gpt-4o", "ok", 1000, 200, 300, 0, 4_250_000},
		{base.Add(50 * time.Second), "payments", "checkout", "gpt-4o", "ok", 2000, 0, 100, 0, 6_000_000},
		{base.Add(70 * time.Second), "payments", "checkout", "gpt-4o", "upstream_error", 10, 0, 0, 0, 0},
		{base.Add(2 * time.Hour), "payments", "refunds", "claude-sonnet-4", "ok", 500, 1500, 700, 0, 12_345_678},
		{base.Add(3 * time.Hour), "search", "rag", "o3", "ok", 100, 0, 900, 800, 9_000_001},
		{base.Add(3*time.Hour + time.Second), "search", "rag", "o3", "blocked", 0, 0, 0, 0, 0},
		{base.Add(26 * time.Hour), "search", "rag", "o3", "ok", 1, 0, 1, 0, 7},
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (id, occurred_at, occurred_at_nanos, received_at, team, app, env, provider, served_model, status, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nano_usd, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if err := batch.Append(uuid.New(), r.at, uint32(r.at.Nanosecond()), r.at, r.team, r.app, "prod", "openai", r.model, r.status,
			r.input, r.cached, r.output, r.reasons, r.cost, int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	type agg struct {
		requests, errors, blocked, input, cached, output, reasoning uint64
		cost                                                        int64
	}
	want := func(bucket func(time.Time) time.Time) map[string]agg {
		m := map[string]agg{}
		for _, r := range rows {
			k := bucket(r.at).Format(time.RFC3339) + "|" + r.team + "|" + r.app + "|" + r.model
			a := m[k]
			a.requests++
			if r.status == "upstream_error" {
				a.errors++
			}
			if r.status == "blocked" {
				a.blocked++
			}
			a.input += r.input
			a.cached += r.cached
			a.output += r.output
			a.reasoning += r.reasons
			a.cost += r.cost
			m[k] = a
		}
		return m
	}
	got := func(table string) map[string]agg {
		q := "SELECT bucket, team, app, model, sum(requests), sum(errors), sum(blocked), sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), sum(reasoning_tokens), sum(cost_nano_usd) FROM " +
			db + "." + table + " GROUP BY bucket, team, app, model"
		rs, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		m := map[string]agg{}
		for rs.Next() {
			var bucket time.Time
			var team, app, model string
			var a agg
			if err := rs.Scan(&bucket, &team, &app, &model, &a.requests, &a.errors, &a.blocked, &a.input, &a.cached, &a.output, &a.reasoning, &a.cost); err != nil {
				t.Fatal(err)
			}
			m[bucket.UTC().Format(time.RFC3339)+"|"+team+"|"+app+"|"+model] = a
		}
		return m
	}
	f := func(table string, bucket func(time.Time) time.Time) {
		t.Helper()
		w, g := want(bucket), got(table)
		if len(w) != len(g) {
			t.Errorf("%s: %d groups, want %d: %v", table, len(g), len(w), g)
		}
		for k, wa := range w {
			if g[k] != wa {
				t.Errorf("%s %s: got %+v, want %+v", table, k, g[k], wa)
			}
		}
	}
	f("usage_minute", func(t time.Time) time.Time { return t.Truncate(time.Minute) })
	f("usage_hour", func(t time.Time) time.Time { return t.Truncate(time.Hour) })
	f("usage_day", func(t time.Time) time.Time { return t.Truncate(24 * time.Hour) })

	var total int64
	if err := conn.QueryRow(ctx, "SELECT sum(cost_nano_usd) FROM "+db+".usage_day").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != 4_250_000+6_000_000+12_345_678+9_000_001+7 {
		t.Errorf("day rollup total %d nano-USD", total)
	}
}

func TestGPURollupsSumExactly(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".gpu_samples (id, occurred_at, node, gpu_uuid, gpu_model, team, interval_ms, gpu_util, gr_engine_active, cost_nano_usd, idle_cost_nano_usd)")
	if err != nil {
		t.Fatal(err)
	}
	// Two 10 s samples of one busy GPU (75 % GR active) and one idle GPU.
	add := func(gpu, team string, util float64, offset time.Duration, cost, idle int64) {
		if err := batch.Append(uuid.New(), at.Add(offset), "node-a", gpu, "NVIDIA H100 80GB HBM3", team, uint32(10_000), util, util, cost, idle); err != nil {
			t.Fatal(err)
		}
	}
	add("GPU-1", "ml", 0.75, 0, 6_944_444, 1_736_111)
	add("GPU-1", "ml", 0.75, 10*time.Second, 6_944_444, 1_736_111)
	add("GPU-2", "__idle__", 0, 0, 6_944_444, 6_944_444)
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var gpuMS uint64
	var idleMS float64
	var cost, idle int64
	err = conn.QueryRow(ctx, "SELECT sum(gpu_ms), sum(idle_ms), sum(cost_nano_usd), sum(idle_cost_nano_usd) FROM "+db+".gpu_hour WHERE team = 'ml'").Scan(&gpuMS, &idleMS, &cost, &idle)
	if err != nil {
		t.Fatal(err)
	}
	if gpuMS != 20_000 || idleMS != 5_000 || cost != 13_888_888 || idle != 3_472_222 {
		t.Errorf("ml gpu_hour: gpu_ms=%d idle_ms=%v cost=%d idle=%d", gpuMS, idleMS, cost, idle)
	}
	err = conn.QueryRow(ctx, "SELECT sum(gpu_ms), sum(idle_ms), sum(idle_cost_nano_usd) FROM "+db+".gpu_day WHERE team = '__idle__'").Scan(&gpuMS, &idleMS, &idle)
	if err != nil {
		t.Fatal(err)
	}
	if gpuMS != 10_000 || idleMS != 10_000 || idle != 6_944_444 {
		t.Errorf("idle gpu_day: gpu_ms=%d idle_ms=%v idle=%d", gpuMS, idleMS, idle)
	}
}

func TestLoadPricesIsIdempotentAndJoinable(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	cat, err := prices.Load("")
	if err != nil {
		t.Fatal(err)
	}
	n, err := clickhouse.LoadPrices(ctx, conn, db, cat, frozen())
	if err != nil || n == 0 {
		t.Fatalf("first load: %d rows, %v", n, err)
	}
	again, err := clickhouse.LoadPrices(ctx, conn, db, cat, frozen())
	if err != nil || again != 0 {
		t.Fatalf("second load: %d rows, %v; want 0", again, err)
	}
	var count uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".prices").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if int(count) != n {
		t.Errorf("prices table has %d rows, loaded %d", count, n)
	}
	// A finance-style join: re-price a call from the table.
	var perM int64
	err = conn.QueryRow(ctx, "SELECT nano_usd_per_unit FROM "+db+".prices WHERE provider = 'openai' AND model = 'gpt-4o' AND category = 'cached_input' AND min_context_tokens = 0").Scan(&perM)
	if err != nil || perM != 1_250_000_000 {
		t.Errorf("gpt-4o cached_input = %d nano-USD per 1M tokens, %v", perM, err)
	}
}
