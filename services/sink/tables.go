package sink

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// ClickHouse DateTime is a UInt32 of seconds: rows outside this range would
// wrap silently, so they go to the dead-letter topic instead.
var (
	minDateTime = time.Unix(0, 0).UTC()
	maxDateTime = time.Unix(1<<32-1, 0).UTC()
)

// table maps one topic to one raw table. Every row carries the Kafka
// partition and offset it came from; that is what progress is read from.
type table struct {
	topic string // catalog name without prefix
	name  string // ClickHouse table
	// timeColumn picks the month partition (PARTITION BY toYYYYMM(it)).
	timeColumn string
	// compacted topics use null values as deletes (tombstones): skipped.
	compacted bool
	// newRows returns an empty, reusable column set for one batch.
	newRows func() rows
}

// rows is one batch's columns for one table.
type rows interface {
	// decode parses and validates one record value and keeps it pending;
	// it returns the time that picks the row's ClickHouse partition.
	decode(value []byte) (time.Time, error)
	// add appends the pending row.
	add(partition int32, offset int64)
	len() int
	columns() []string
	// send appends every column to a prepared INSERT.
	send(b driver.Batch) error
	reset()
}

// tables lists what the sink writes, by topic name without prefix.
var tables = []table{
	{topic: ktopics.Usage, name: "usage_events", timeColumn: "occurred_at", newRows: func() rows { d := new(events.UsageDecoder); return newColumns(usageColumns, d.Decode, usageTime) }},
	{topic: ktopics.GPU, name: "gpu_samples", timeColumn: "occurred_at", newRows: func() rows { return newColumns(gpuColumns, events.DecodeGPUSampleInto, gpuTime) }},
	{topic: ktopics.Anomalies, name: "anomalies", timeColumn: "detected_at", newRows: func() rows { return newColumns(anomalyColumns, events.DecodeAnomalyInto, anomalyTime) }},
	{topic: ktopics.Verdicts, name: "verdicts", timeColumn: "issued_at", compacted: true, newRows: func() rows { return newColumns(verdictColumns, events.DecodeVerdictInto, verdictTime) }},
	{topic: ktopics.BudgetEvents, name: "budget_events", timeColumn: "occurred_at", newRows: func() rows {
		return newColumns(budgetEventColumns, events.DecodeBudgetEventInto, budgetEventTime)
	}},
}

func usageTime(u *events.Usage) time.Time             { return u.OccurredAt }
func gpuTime(g *events.GPUSample) time.Time           { return g.OccurredAt }
func anomalyTime(a *events.Anomaly) time.Time         { return a.DetectedAt }
func verdictTime(v *events.Verdict) time.Time         { return v.IssuedAt }
func budgetEventTime(e *events.BudgetEvent) time.Time { return e.OccurredAt }

// validator is what every event type offers.
type validator interface{ Validate() error }

// columns is a generic columnar batch: one typed slice per column, filled
// row by row and handed to clickhouse-go whole (no per-cell boxing).
type columns[T validator] struct {
	cols    []column[T]
	decodeF func([]byte, *T) error
	timeF   func(*T) time.Time
	pending T
	n       int
	// partition and offset are the two columns every table ends with.
	partitions []int32
	offsets    []int64
}

func newColumns[T validator](defs func() []column[T], decode func([]byte, *T) error, at func(*T) time.Time) *columns[T] {
	return &columns[T]{cols: defs(), decodeF: decode, timeF: at}
}

func (c *columns[T]) decode(value []byte) (time.Time, error) {
	if err := c.decodeF(value, &c.pending); err != nil {
		return time.Time{}, err
	}
	if err := c.pending.Validate(); err != nil {
		return time.Time{}, err
	}
	for _, col := range c.cols {
		if err := col.check(&c.pending); err != nil {
			return time.Time{}, err
		}
	}
	return c.timeF(&c.pending), nil
}

func (c *columns[T]) add(partition int32, offset int64) {
	for _, col := range c.cols {
		col.add(&c.pending)
	}
	c.partitions = append(c.partitions, partition)
	c.offsets = append(c.offsets, offset)
	c.n++
}

func (c *columns[T]) len() int { return c.n }

func (c *columns[T]) columns() []string {
	names := make([]string, 0, len(c.cols)+2)
	for _, col := range c.cols {
		names = append(names, col.name())
	}
	return append(names, "kafka_partition", "kafka_offset")
}

func (c *columns[T]) send(b driver.Batch) error {
	for i, col := range c.cols {
		if err := b.Column(i).Append(col.values()); err != nil {
			return fmt.Errorf("column %s: %w", col.name(), err)
		}
	}
	if err := b.Column(len(c.cols)).Append(c.partitions); err != nil {
		return fmt.Errorf("column kafka_partition: %w", err)
	}
	if err := b.Column(len(c.cols) + 1).Append(c.offsets); err != nil {
		return fmt.Errorf("column kafka_offset: %w", err)
	}
	return nil
}

func (c *columns[T]) reset() {
	for _, col := range c.cols {
		col.reset()
	}
	c.partitions = c.partitions[:0]
	c.offsets = c.offsets[:0]
	c.n = 0
}

// column is one ClickHouse column filled from events of type T.
type column[T any] interface {
	name() string
	check(*T) error
	add(*T)
	values() any
	reset()
}

type col[T, V any] struct {
	n    string
	get  func(*T) V
	ok   func(V) error // nil: every value fits
	vals []V
}

func (c *col[T, V]) name() string { return c.n }
func (c *col[T, V]) add(v *T)     { c.vals = append(c.vals, c.get(v)) }
func (c *col[T, V]) values() any  { return c.vals }
func (c *col[T, V]) reset()       { c.vals = c.vals[:0] }
func (c *col[T, V]) check(v *T) error {
	if c.ok == nil {
		return nil
	}
	if err := c.ok(c.get(v)); err != nil {
		return fmt.Errorf("%s: %w", c.n, err)
	}
	return nil
}

func mk[T, V any](name string, get func(*T) V) column[T] {
	return &col[T, V]{n: name, get: get}
}

// lowCard is a string column whose values repeat (team, model, status...):
// each distinct value is kept once, so a batch holds one pointer per cell
// instead of one allocation per cell, and the decoded copies die young.
func lowCard[T any](name string, get func(*T) string) column[T] {
	in := &interner{m: make(map[string]string, 64)}
	return &col[T, string]{n: name, get: func(v *T) string { return in.intern(get(v)) }}
}

// maxInterned bounds an interner: a column that turns out not to repeat
// starts over instead of growing without end.
const maxInterned = 4096

type interner struct{ m map[string]string }

func (in *interner) intern(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) >= maxInterned {
		clear(in.m)
	}
	in.m[s] = s
	return s
}

// dateTime is a DateTime column; values outside its range are refused.
func dateTime[T any](name string, get func(*T) time.Time) column[T] {
	return &col[T, time.Time]{n: name, get: get, ok: func(t time.Time) error {
		if t.Before(minDateTime) || t.After(maxDateTime) {
			return fmt.Errorf("%s is outside the ClickHouse DateTime range (%s to %s)",
				t.Format(time.RFC3339), minDateTime.Format(time.RFC3339), maxDateTime.Format(time.RFC3339))
		}
		return nil
	}}
}

func unsigned[T any](name string, get func(*T) int64) column[T] {
	return &col[T, uint64]{n: name, get: func(v *T) uint64 { return uint64(get(v)) }}
}

func u32[T any](name string, get func(*T) int64) column[T] {
	return &col[T, uint32]{n: name, get: func(v *T) uint32 { return uint32(get(v)) }}
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// clamp32 keeps a non-negative int64 within UInt32 (latencies over 49 days
// are not real; validation already refused negatives).
func clamp32(v int64) int64 {
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return v
}

func usageColumns() []column[events.Usage] {
	type U = events.Usage
	return []column[U]{
		mk("id", func(u *U) string { return u.ID }),
		dateTime("occurred_at", func(u *U) time.Time { return u.OccurredAt }),
		mk("occurred_at_nanos", func(u *U) uint32 { return uint32(u.OccurredAt.Nanosecond()) }),
		dateTime("received_at", func(u *U) time.Time { return u.ReceivedAt }),
		lowCard("org", func(u *U) string { return u.Attribution.Org }),
		lowCard("team", func(u *U) string { return u.Attribution.Team }),
		lowCard("app", func(u *U) string { return u.Attribution.App }),
		lowCard("env", func(u *U) string { return u.Attribution.Env }),
		lowCard("user", func(u *U) string { return u.Attribution.User }),
		lowCard("customer", func(u *U) string { return u.Attribution.Customer }),
		lowCard("feature", func(u *U) string { return u.Attribution.Feature }),
		lowCard("virtual_key_id", func(u *U) string { return u.Attribution.VirtualKeyID }),
		mk("agent_run_id", func(u *U) string { return u.Attribution.AgentRunID }),
		u32("agent_step", func(u *U) int64 { return clamp32(int64(u.Attribution.AgentStep)) }),
		mk("tag_keys", func(u *U) []string { k, _ := sortedTags(u.Attribution.Tags); return k }),
		mk("tag_values", func(u *U) []string { _, v := sortedTags(u.Attribution.Tags); return v }),
		lowCard("provider", func(u *U) string { return u.Provider }),
		lowCard("requested_model", func(u *U) string { return u.RequestedModel }),
		lowCard("served_model", func(u *U) string { return u.ServedModel }),
		lowCard("route", func(u *U) string { return u.Route }),
		unsigned("input_tokens", func(u *U) int64 { return u.Tokens.Input }),
		unsigned("cached_input_tokens", func(u *U) int64 { return u.Tokens.CachedInput }),
		unsigned("cache_write_5m_tokens", func(u *U) int64 { return u.Tokens.CacheWrite5m }),
		unsigned("cache_write_1h_tokens", func(u *U) int64 { return u.Tokens.CacheWrite1h }),
		unsigned("output_tokens", func(u *U) int64 { return u.Tokens.Output }),
		unsigned("reasoning_tokens", func(u *U) int64 { return u.Tokens.Reasoning }),
		mk("cost_nano_usd", func(u *U) int64 { return u.Cost.TotalNanoUSD }),
		lowCard("price_version", func(u *U) string { return u.Cost.PriceVersion }),
		mk("estimated", func(u *U) uint8 { return flag(u.Cost.Estimated) }),
		mk("unpriced", func(u *U) uint8 { return flag(u.Cost.Unpriced) }),
		u32("latency_ms", func(u *U) int64 { return clamp32(u.LatencyMS) }),
		u32("ttft_ms", func(u *U) int64 { return clamp32(u.TTFTMS) }),
		lowCard("status", func(u *U) string { return string(u.Status) }),
		mk("stream", func(u *U) uint8 { return flag(u.Stream) }),
		mk("prompt_fingerprint", func(u *U) string { return u.PromptFingerprint }),
		mk("error", func(u *U) string { return u.Error }),
	}
}

// sortedTags splits tags into parallel key and value arrays, keys sorted,
// so that tag_values[indexOf(tag_keys, 'k')] works in SQL.
func sortedTags(tags map[string]string) (keys, values []string) {
	if len(tags) == 0 {
		return []string{}, []string{}
	}
	keys = make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	values = make([]string, len(keys))
	for i, k := range keys {
		values[i] = tags[k]
	}
	return keys, values
}

func gpuColumns() []column[events.GPUSample] {
	type G = events.GPUSample
	return []column[G]{
		mk("id", func(g *G) string { return g.ID }),
		dateTime("occurred_at", func(g *G) time.Time { return g.OccurredAt }),
		mk("occurred_at_nanos", func(g *G) uint32 { return uint32(g.OccurredAt.Nanosecond()) }),
		lowCard("node", func(g *G) string { return g.Node }),
		mk("gpu_uuid", func(g *G) string { return g.GPUUUID }),
		mk("gpu_index", func(g *G) uint16 { return uint16(g.GPUIndex) }),
		lowCard("gpu_model", func(g *G) string { return g.GPUModel }),
		lowCard("mig_profile", func(g *G) string { return g.MIGProfile }),
		mk("mig_instance", func(g *G) string { return g.MIGInstance }),
		lowCard("team", func(g *G) string { return g.Attribution.Team }),
		lowCard("app", func(g *G) string { return g.Attribution.App }),
		lowCard("namespace", func(g *G) string { return g.Attribution.Namespace }),
		mk("pod", func(g *G) string { return g.Attribution.Pod }),
		mk("container", func(g *G) string { return g.Attribution.Container }),
		u32("interval_ms", func(g *G) int64 { return clamp32(g.IntervalMS) }),
		mk("gpu_util", func(g *G) float64 { return g.GPUUtil }),
		mk("gr_engine_active", func(g *G) float64 { return g.GrEngineActive }),
		mk("sm_active", func(g *G) float64 { return g.SMActive }),
		mk("tensor_active", func(g *G) float64 { return g.TensorActive }),
		mk("dram_active", func(g *G) float64 { return g.DRAMActive }),
		unsigned("fb_used_bytes", func(g *G) int64 { return g.FBUsedBytes }),
		unsigned("fb_free_bytes", func(g *G) int64 { return g.FBFreeBytes }),
		mk("power_watts", func(g *G) float64 { return g.PowerWatts }),
		mk("energy_joules", func(g *G) float64 { return g.EnergyJoules }),
		mk("cost_nano_usd", func(g *G) int64 { return g.CostNanoUSD }),
		mk("idle_cost_nano_usd", func(g *G) int64 { return g.IdleCostNanoUSD }),
		lowCard("price_version", func(g *G) string { return g.PriceVersion }),
		lowCard("source", func(g *G) string { return string(g.Source) }),
	}
}

func anomalyColumns() []column[events.Anomaly] {
	type A = events.Anomaly
	return []column[A]{
		mk("id", func(a *A) string { return a.ID }),
		dateTime("detected_at", func(a *A) time.Time { return a.DetectedAt }),
		mk("subject", func(a *A) string { return a.Subject }),
		mk("metric", func(a *A) string { return a.Metric }),
		mk("observed", func(a *A) float64 { return a.Observed }),
		mk("baseline", func(a *A) float64 { return a.Baseline }),
		mk("score", func(a *A) float64 { return a.Score }),
		dateTime("window_start", func(a *A) time.Time { return a.WindowStart }),
		dateTime("window_end", func(a *A) time.Time { return a.WindowEnd }),
		mk("detector", func(a *A) string { return string(a.Detector) }),
		mk("severity", func(a *A) string { return string(a.Severity) }),
	}
}

func verdictColumns() []column[events.Verdict] {
	type V = events.Verdict
	lease := func(v *V) events.Lease {
		if v.Lease == nil {
			return events.Lease{}
		}
		return *v.Lease
	}
	return []column[V]{
		mk("id", func(v *V) string { return v.ID }),
		dateTime("issued_at", func(v *V) time.Time { return v.IssuedAt }),
		dateTime("expires_at", func(v *V) time.Time { return v.ExpiresAt }),
		mk("subject", func(v *V) string { return v.Subject }),
		mk("action", func(v *V) string { return string(v.Action) }),
		mk("reason", func(v *V) string { return v.Reason }),
		mk("limit_nano_usd", func(v *V) int64 { return v.LimitNanoUSD }),
		mk("spent_nano_usd", func(v *V) int64 { return v.SpentNanoUSD }),
		mk("downgrade_to", func(v *V) string { return v.DowngradeTo }),
		u32("throttle_per_min", func(v *V) int64 { return clamp32(int64(v.ThrottlePerMin)) }),
		mk("lease_remaining_nano_usd", func(v *V) int64 { return lease(v).RemainingNanoUSD }),
		u32("lease_instances", func(v *V) int64 { return clamp32(int64(lease(v).Instances)) }),
		mk("issued_by", func(v *V) string { return v.IssuedBy }),
	}
}

func budgetEventColumns() []column[events.BudgetEvent] {
	type E = events.BudgetEvent
	// Events without a budget have no period: 1970-01-01 in ClickHouse.
	orEpoch := func(t *time.Time) time.Time {
		if t == nil {
			return minDateTime
		}
		return *t
	}
	return []column[E]{
		mk("id", func(e *E) string { return e.ID }),
		dateTime("occurred_at", func(e *E) time.Time { return e.OccurredAt }),
		mk("subject", func(e *E) string { return e.Subject }),
		lowCard("period", func(e *E) string { return string(e.Period) }),
		dateTime("period_start", func(e *E) time.Time { return orEpoch(e.PeriodStart) }),
		lowCard("kind", func(e *E) string { return string(e.Kind) }),
		mk("threshold_pct", func(e *E) uint8 { return uint8(e.ThresholdPct) }),
		mk("limit_nano_usd", func(e *E) int64 { return e.LimitNanoUSD }),
		mk("spent_nano_usd", func(e *E) int64 { return e.SpentNanoUSD }),
		mk("forecast_nano_usd", func(e *E) int64 { return e.ForecastNanoUSD }),
		mk("reason", func(e *E) string { return e.Reason }),
		mk("actor", func(e *E) string { return e.Actor }),
		lowCard("severity", func(e *E) string { return string(e.Severity) }),
		mk("budget", func(e *E) string { return e.Budget }),
		dateTime("period_end", func(e *E) time.Time { return orEpoch(e.PeriodEnd) }),
	}
}

// insertSQL names every column, as ClickHouse 18.16 needs for native inserts.
func insertSQL(db, table string, cols []string) string {
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", db, table, strings.Join(cols, ", "))
}
