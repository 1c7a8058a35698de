package sink_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/sink"
	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, harness.Need{Kafka: true, ClickHouse: true}, &env) }

type fixture struct {
	kcfg  kclient.Config
	chcfg clickhouse.Config
	names ktopics.Names
	cl    *kgo.Client
	ch    driver.Conn
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{kcfg: env.KafkaConfig(t), chcfg: env.ClickHouseConfig(t)}
	f.names = ktopics.WithPrefix(f.kcfg.TopicPrefix)
	cl, err := kclient.New(f.kcfg, "test", kgo.DefaultProduceTopic(f.names.Usage()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.cl = cl
	if _, err := ktopics.Ensure(ctx, kadm.NewClient(cl), f.kcfg.TopicPrefix, ktopics.Catalog()); err != nil {
		t.Fatal(err)
	}
	ch, err := clickhouse.Open(f.chcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	f.ch = ch
	if _, err := clickhouse.Migrate(ctx, ch, f.chcfg.Database, time.Now); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := f.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// start runs a sink replica until the returned stop is called; stop waits
// for Run to return and fails the test on an error.
func (f *fixture) start(t *testing.T, cfg sink.Config, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sink.New(ctx, cfg, sink.Deps{Kafka: f.kcfg, ClickHouse: f.chcfg, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sink.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("sink did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (f *fixture) count(t *testing.T, q string) uint64 {
	t.Helper()
	var n uint64
	if err := f.ch.QueryRow(context.Background(), strings.ReplaceAll(q, "{db}", f.chcfg.Database)).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (f *fixture) waitCount(t *testing.T, q string, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got uint64
	for time.Now().Before(deadline) {
		if got = f.count(t, q); got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s = %d after %s, want %d", q, got, within, want)
}

func fastConfig() sink.Config {
	cfg := sink.DefaultConfig()
	cfg.Group = "sink-test"
	cfg.BatchRows = 100
	cfg.MaxPendingRows = 1000
	cfg.MaxInsertRows = 1000
	cfg.BatchInterval = 100 * time.Millisecond
	cfg.RetryBackoffMax = 500 * time.Millisecond
	return cfg
}

func TestSinkWritesEveryTopicAndDeadLettersTheRest(t *testing.T) {
	f := setup(t)
	at := time.Date(2026, 10, 31, 23, 59, 0, 0, time.UTC) // batches must cut at the month change
	var recs []*kgo.Record
	var wantCost int64
	for i := 0; i < 1000; i++ {
		r, u := sinktest.UsageRecord(f.names.Usage(), i, at.Add(time.Duration(i)*200*time.Millisecond))
		r.Key = []byte("bad") // one partition: dead letters keep their order
		recs = append(recs, r)
		wantCost += u.Cost.TotalNanoUSD
	}
	bad, wantErrs := sinktest.Bad(f.names.Usage(), at)
	// Interleave the bad records among the good ones.
	for i, b := range bad {
		recs = append(recs[:100*(i+1)], append([]*kgo.Record{b}, recs[100*(i+1):]...)...)
	}
	for i := 0; i < 600; i++ { // 8 GPUs every 10 s, across the month end
		recs = append(recs, sinktest.Record(f.names.GPU(), fmt.Sprint(i%8), sinktest.GPU(i, at.Add(time.Duration(i/8)*10*time.Second))))
	}
	for i := 0; i < 12; i++ {
		recs = append(recs, sinktest.Record(f.names.Anomalies(), "team", sinktest.Anomaly(i, at)))
		recs = append(recs, sinktest.Record(f.names.Verdicts(), fmt.Sprint("team=", i), sinktest.Verdict(i, at)))
		e := sinktest.BudgetEvent(i, at)
		recs = append(recs, sinktest.Record(f.names.BudgetEvents(), e.Subject, e))
	}
	recs = append(recs, &kgo.Record{Topic: f.names.Verdicts(), Key: []byte("team=0")}) // tombstone
	f.produce(t, recs...)

	reg := prometheus.NewRegistry()
	f.start(t, fastConfig(), reg)

	f.waitCount(t, "SELECT count() FROM {db}.usage_events", 1000, 60*time.Second)
	f.waitCount(t, "SELECT count() FROM {db}.gpu_samples", 600, 10*time.Second)
	f.waitCount(t, "SELECT count() FROM {db}.anomalies", 12, 10*time.Second)
	f.waitCount(t, "SELECT count() FROM {db}.verdicts", 12, 10*time.Second)
	f.waitCount(t, "SELECT count() FROM {db}.budget_events", 12, 10*time.Second)
	if got := f.count(t, "SELECT count() FROM {db}.budget_events WHERE kind = 'loop_break' AND budget = '' AND period_start = toDateTime(0)"); got != 6 {
		t.Errorf("%d loop breaks without a period, want 6", got)
	}
	if got := f.count(t, "SELECT toUInt64(sum(cost_nano_usd)) FROM {db}.usage_events"); int64(got) != wantCost {
		t.Errorf("cost sum %d, want %d", got, wantCost)
	}
	if got := f.count(t, "SELECT uniqExact(id) FROM {db}.usage_events"); got != 1000 {
		t.Errorf("%d distinct ids, want 1000", got)
	}
	if got := f.count(t, "SELECT count() FROM {db}.usage_events WHERE toYYYYMM(occurred_at) = 202611"); got == 0 || got == 1000 {
		t.Errorf("the fixture must straddle a month change; %d rows in November", got)
	}
	// The rollup part is written right after the raw part of each INSERT.
	f.waitCount(t, "SELECT toUInt64(sum(requests)) FROM {db}.usage_minute", 1000, 10*time.Second)

	// An INSERT writes the views one after another (gpu_minute, created
	// last, comes last): wait for each before comparing.
	for _, rollup := range []string{"gpu_hour", "gpu_day", "gpu_minute"} {
		f.waitCount(t, "SELECT toUInt64(sum(samples)) FROM {db}."+rollup, 600, 10*time.Second)
	}
	for _, r := range []struct{ table, bucket string }{{"gpu_minute", "toStartOfMinute"}, {"gpu_hour", "toStartOfHour"}, {"gpu_day", "toStartOfDay"}} {
		f.sameAggregates(t, r.table,
			"SELECT bucket, team, app, namespace, node, gpu_model, sum(samples), sum(gpu_ms), sum(util_ms), sum(idle_ms), sum(cost_nano_usd), sum(idle_cost_nano_usd) FROM {db}."+r.table+
				" GROUP BY bucket, team, app, namespace, node, gpu_model ORDER BY bucket, team, app, namespace, node, gpu_model",
			"SELECT "+r.bucket+"(occurred_at) AS bucket, team, app, namespace, node, gpu_model, toUInt64(count()), sum(toUInt64(interval_ms)), sum(gpu_util * interval_ms), "+
				"sum((1 - if(gr_engine_active > 0, gr_engine_active, gpu_util)) * interval_ms), sum(cost_nano_usd), sum(idle_cost_nano_usd) FROM {db}.gpu_samples"+
				" GROUP BY bucket, team, app, namespace, node, gpu_model ORDER BY bucket, team, app, namespace, node, gpu_model")
	}

	// Every bad record is in the dead-letter topic, with its reason and source.
	dl := f.readDeadLetters(t, len(bad))
	for i, r := range dl {
		h := headers(r)
		if !strings.Contains(h["burnrate.error"], wantErrs[i]) {
			t.Errorf("dead letter %d: error %q does not mention %q", i, h["burnrate.error"], wantErrs[i])
		}
		if h["burnrate.source.topic"] != f.names.Usage() || h["burnrate.source.partition"] == "" || h["burnrate.source.offset"] == "" {
			t.Errorf("dead letter %d: source headers %v", i, h)
		}
		if string(r.Value) != string(bad[i].Value) {
			t.Errorf("dead letter %d: value changed: %q", i, r.Value)
		}
	}
	if got := testutil.ToFloat64(counter(t, reg, "burnrate_sink_dead_letters_total")); got != float64(len(bad)) {
		t.Errorf("dead_letters_total %v, want %d", got, len(bad))
	}
	if got := testutil.ToFloat64(counter(t, reg, "burnrate_sink_skipped_records_total")); got != 1 {
		t.Errorf("skipped (tombstone) %v, want 1", got)
	}
}

// Progress lives in ClickHouse: a replica of a brand-new group (no committed
// offsets at all) starts after what the table holds, not from the start.
func TestSinkResumesFromClickHouseNotFromKafkaOffsets(t *testing.T) {
	f := setup(t)
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	batch := func(from, n int) {
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			r, _ := sinktest.UsageRecord(f.names.Usage(), i, at.Add(time.Duration(i)*time.Second))
			recs = append(recs, r)
		}
		f.produce(t, recs...)
	}
	batch(0, 700)
	cfg := fastConfig()
	stop := f.start(t, cfg, nil)
	f.waitCount(t, "SELECT count() FROM {db}.usage_events", 700, 60*time.Second)
	stop()

	batch(700, 300)
	cfg.Group = "sink-test-other-group"
	stop = f.start(t, cfg, nil)
	f.waitCount(t, "SELECT count() FROM {db}.usage_events", 1000, 60*time.Second)
	time.Sleep(time.Second) // anything re-read would land by now
	stop()
	if got := f.count(t, "SELECT count() FROM {db}.usage_events"); got != 1000 {
		t.Fatalf("%d rows, want 1000: a new group re-read what ClickHouse already held", got)
	}
	if got := f.count(t, "SELECT uniqExact(id) FROM {db}.usage_events"); got != 1000 {
		t.Fatalf("%d distinct ids, want 1000", got)
	}
}

// Two replicas share the partitions; one leaves mid-stream; nothing is
// lost or doubled.
func TestSinkRebalanceKeepsExactlyOnce(t *testing.T) {
	f := setup(t)
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	cfg := fastConfig()
	stopA := f.start(t, cfg, nil)
	total := 0
	send := func(n int) {
		var recs []*kgo.Record
		for i := total; i < total+n; i++ {
			r, _ := sinktest.UsageRecord(f.names.Usage(), i, at.Add(time.Duration(i)*time.Millisecond))
			recs = append(recs, r)
		}
		total += n
		f.produce(t, recs...)
	}
	send(2000)
	stopB := f.start(t, cfg, nil)
	for i := 0; i < 10; i++ {
		send(300)
		time.Sleep(200 * time.Millisecond)
	}
	stopA()
	send(1000)
	f.waitCount(t, "SELECT count() FROM {db}.usage_events", uint64(total), 60*time.Second)
	stopB()
	if got := f.count(t, "SELECT uniqExact(id) FROM {db}.usage_events"); got != uint64(total) {
		t.Fatalf("%d distinct ids, want %d", got, total)
	}
}

// gpuRow is one group of a GPU rollup.
type gpuRow struct {
	bucket                            time.Time
	team, app, namespace, node, model string
	samples, gpuMS                    uint64
	utilMS, idleMS                    float64
	cost, idleCost                    int64
}

// sameAggregates compares a rollup's groups with the raw table's: integers
// exactly, utilisation-weighted sums to 1e-9 relative (float sums depend on
// the order ClickHouse adds them in).
func (f *fixture) sameAggregates(t *testing.T, table, rollupQ, rawQ string) {
	t.Helper()
	read := func(q string) []gpuRow {
		rows, err := f.ch.Query(context.Background(), strings.ReplaceAll(q, "{db}", f.chcfg.Database))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []gpuRow
		for rows.Next() {
			var r gpuRow
			if err := rows.Scan(&r.bucket, &r.team, &r.app, &r.namespace, &r.node, &r.model, &r.samples, &r.gpuMS, &r.utilMS, &r.idleMS, &r.cost, &r.idleCost); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	got, want := read(rollupQ), read(rawQ)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("%s: %d groups, raw table gives %d", table, len(got), len(want))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	for i := range got {
		g, w := got[i], want[i]
		if g.bucket != w.bucket || g.team != w.team || g.app != w.app || g.namespace != w.namespace || g.node != w.node || g.model != w.model ||
			g.samples != w.samples || g.gpuMS != w.gpuMS || g.cost != w.cost || g.idleCost != w.idleCost || !near(g.utilMS, w.utilMS) || !near(g.idleMS, w.idleMS) {
			t.Errorf("%s group %d: %+v, raw table gives %+v", table, i, g, w)
		}
	}
}

func (f *fixture) readDeadLetters(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	cl, err := kclient.New(f.kcfg, "dlq-reader", kgo.ConsumeTopics(f.names.DeadLetter()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) != n {
		t.Fatalf("dead-letter topic has %d records, want %d", len(out), n)
	}
	// One source partition, so source offsets order them as produced.
	return out
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// counter sums every series of a metric family.
func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
	c.Add(sum)
	return c
}
