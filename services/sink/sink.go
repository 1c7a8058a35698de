package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // the server's time zone decides month partitions

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Deps are what Run needs from outside.
type Deps struct {
	Kafka      kclient.Config
	ClickHouse clickhouse.Config
	Log        *zap.Logger
	Registerer prometheus.Registerer
}

type topicPartition struct {
	topic     string
	partition int32
}

// Sink is one replica of the consumer group.
type Sink struct {
	cfg   Config
	log   *zap.Logger
	m     *metrics
	db    string
	ch    driver.Conn
	cl    *kgo.Client
	names ktopics.Names
	loc   *time.Location // the server's time zone: toYYYYMM uses it

	byTopic map[string]*table    // full topic name → table
	writers map[string][]*writer // full topic name → its table's writers (lanes)

	mu    sync.Mutex
	parts map[topicPartition]*partition

	flushing    atomic.Bool // shutting down: writers insert what they have
	pausedFetch atomic.Bool // back-pressure: writers insert what they have
}

// Run consumes until ctx is done, then stops gracefully: it seals every open
// batch, waits up to ShutdownTimeout for them to land, commits and leaves
// the group.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New checks the config, connects to ClickHouse (whose tables must exist:
// run `burnrate migrate` first) and creates the Kafka client.
func New(ctx context.Context, cfg Config, deps Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink config: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{
		cfg:     cfg,
		log:     log,
		m:       newMetrics(deps.Registerer),
		db:      deps.ClickHouse.Database,
		names:   ktopics.WithPrefix(deps.Kafka.TopicPrefix),
		byTopic: map[string]*table{},
		writers: map[string][]*writer{},
		parts:   map[topicPartition]*partition{},
	}
	for i := range tables {
		s.byTopic[s.names.Full(tables[i].topic)] = &tables[i]
	}

	ch, err := clickhouse.Open(deps.ClickHouse)
	if err != nil {
		return nil, err
	}
	s.ch = ch
	for full, t := range s.byTopic {
		for range cfg.InsertConcurrency {
			s.writers[full] = append(s.writers[full], newWriter(s, t))
		}
	}
	if err := s.checkServer(ctx); err != nil {
		ch.Close()
		return nil, err
	}

	topics := make([]string, 0, len(s.byTopic))
	for full := range s.byTopic {
		topics = append(topics, full)
	}
	cl, err := kclient.New(deps.Kafka, "sink",
		kgo.ConsumerGroup(cfg.Group),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(cfg.SessionTimeout/3, 3*time.Second)),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(s.adjustOffsets),
		kgo.OnPartitionsRevoked(s.dropPartitions),
		kgo.OnPartitionsLost(s.dropPartitions),
		kgo.FetchMaxBytes(16<<20), // compressed: JSON inflates ~5x in memory
		kgo.FetchMaxPartitionBytes(4<<20),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()),
	)
	if err != nil {
		ch.Close()
		return nil, err
	}
	s.cl = cl
	return s, nil
}

func lookupTable(topic string) *table {
	for i := range tables {
		if tables[i].topic == topic {
			return &tables[i]
		}
	}
	return nil
}

// checkServer reads the server's time zone and fails early, with the fix,
// when a table is missing.
func (s *Sink) checkServer(ctx context.Context) error {
	var tz string
	if err := s.ch.QueryRow(ctx, "SELECT timezone()").Scan(&tz); err != nil {
		return fmt.Errorf("sink: clickhouse: %w", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return fmt.Errorf("sink: clickhouse server time zone %q: %w", tz, err)
	}
	s.loc = loc
	for _, t := range s.byTopic {
		if _, err := s.progress(ctx, t, nil); err != nil {
			return fmt.Errorf("sink: table %s.%s: %w (run `burnrate migrate` first)", s.db, t.name, err)
		}
	}
	return nil
}

// Run is the poll loop; see the package doc for why it is correct.
func (s *Sink) Run(ctx context.Context) error {
	defer s.ch.Close()
	commitDone := make(chan struct{})
	commitCtx, stopCommits := context.WithCancel(context.Background())
	go func() {
		defer close(commitDone)
		s.commitLoop(commitCtx)
	}()

	wait := min(max(s.cfg.BatchInterval/4, 20*time.Millisecond), 250*time.Millisecond)
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := s.cl.PollRecords(pctx, 20000)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			s.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		s.mu.Lock()
		fetches.EachPartition(s.take)
		s.sealDue(time.Now())
		s.backPressure()
		s.mu.Unlock()
		s.cl.AllowRebalance()
	}
	s.shutdown()
	stopCommits()
	<-commitDone
	s.commit(context.Background(), true)
	s.cl.Close()
	return nil
}

// shutdown seals every open batch and waits for the writers to land them.
func (s *Sink) shutdown() {
	s.flushing.Store(true)
	s.mu.Lock()
	for _, p := range s.parts {
		s.seal(p)
	}
	s.mu.Unlock()
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	for _, w := range s.allWriters() {
		for !w.idle() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !w.idle() {
			s.log.Warn("shutdown timeout: rows not yet in ClickHouse are left to the next owner", zap.String("table", w.tbl.name))
		}
		w.stopAndWait()
	}
}

// take appends one fetched partition's records to its open batch.
// Called with s.mu held.
func (s *Sink) take(f kgo.FetchTopicPartition) {
	p := s.parts[topicPartition{f.Topic, f.Partition}]
	if p == nil {
		return // revoked while the fetch was buffered
	}
	p.hwm.Store(f.HighWatermark)
	for _, r := range f.Records {
		if r.Offset < p.next {
			if s.m != nil {
				s.m.skipped.WithLabelValues("duplicate").Inc()
			}
			if !p.warnedBackwards {
				p.warnedBackwards = true
				s.log.Warn("skipping records at offsets ClickHouse already holds (offsets went backwards: topic recreated or a stale fetch)",
					zap.String("topic", f.Topic), zap.Int32("partition", f.Partition),
					zap.Int64("offset", r.Offset), zap.Int64("next", p.next))
			}
			continue
		}
		p.next = r.Offset + 1
		s.add(p, r)
	}
}

// add puts one record into the partition's open batch, or into its
// dead letters. A batch never spans two months of the table's partition key,
// so one INSERT is one part: it lands whole or not at all.
func (s *Sink) add(p *partition, r *kgo.Record) {
	if p.cur == nil {
		p.cur = p.newBatch(r.Offset)
	}
	b := p.cur
	if r.Value == nil && p.w.tbl.compacted {
		s.m.skipped.WithLabelValues("tombstone").Inc()
		b.last = r.Offset
		return
	}
	at, err := b.rows.decode(r.Value)
	if err != nil {
		b.dead = append(b.dead, s.deadLetter(r, err))
		b.last = r.Offset
		return
	}
	month := yyyymm(at.In(s.loc))
	if b.rows.len() > 0 && month != b.month {
		s.seal(p)
		p.cur = p.newBatch(r.Offset)
		b = p.cur
		if _, err := b.rows.decode(r.Value); err != nil { // decoded fine a moment ago
			panic(fmt.Sprintf("sink: record decoded differently twice: %v", err))
		}
	}
	b.month = month
	b.rows.add(r.Partition, r.Offset)
	b.last = r.Offset
	if b.rows.len() >= s.cfg.BatchRows {
		s.seal(p)
	}
}

func yyyymm(t time.Time) int { return t.Year()*100 + int(t.Month()) }

// sealDue seals batches whose first record has waited BatchInterval.
func (s *Sink) sealDue(now time.Time) {
	for _, p := range s.parts {
		if p.cur != nil && now.Sub(p.cur.opened) >= s.cfg.BatchInterval {
			s.seal(p)
		}
	}
}

// seal hands the open batch to the partition's writer.
func (s *Sink) seal(p *partition) {
	if p.cur == nil {
		return
	}
	b := p.cur
	p.cur = nil
	p.w.enqueue(p, b)
}

// backPressure pauses fetching while MaxPendingRows rows wait for
// ClickHouse and resumes it once they are under half of that.
func (s *Sink) backPressure() {
	total := 0
	for _, p := range s.parts {
		total += p.pendingRows()
	}
	s.m.pendingRows.Set(float64(total))
	paused := s.pausedFetch.Load()
	switch {
	case !paused && total >= s.cfg.MaxPendingRows:
		paused = true
		s.pausedFetch.Store(true)
		s.cl.PauseFetchTopics(s.topics()...)
		for _, w := range s.allWriters() {
			w.poke()
		}
	case paused && total < s.cfg.MaxPendingRows/2:
		paused = false
		s.pausedFetch.Store(false)
		s.cl.ResumeFetchTopics(s.topics()...)
	}
	if paused {
		s.m.paused.Set(float64(len(s.parts)))
	} else {
		s.m.paused.Set(0)
	}
}

func (s *Sink) topics() []string {
	out := make([]string, 0, len(s.byTopic))
	for full := range s.byTopic {
		out = append(out, full)
	}
	return out
}

func addTP(m map[string][]int32, tp topicPartition) map[string][]int32 {
	if m == nil {
		m = map[string][]int32{}
	}
	m[tp.topic] = append(m[tp.topic], tp.partition)
	return m
}

// adjustOffsets runs when partitions are assigned, before fetching starts:
// each starts right after the last offset ClickHouse holds for it (or at the
// committed offset when that is further, which only records that went to
// the dead-letter topic can make it).
func (s *Sink) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		t := s.byTopic[topic]
		if t == nil {
			continue
		}
		ids := make([]int32, 0, len(parts))
		for id := range parts {
			ids = append(ids, id)
		}
		var maxes map[int32]int64
		for attempt := 0; ; attempt++ {
			var err error
			if maxes, err = s.progress(ctx, t, ids); err == nil {
				break
			}
			s.m.retries.WithLabelValues("progress").Inc()
			s.log.Warn("cannot read progress from ClickHouse; retrying before consuming",
				zap.String("table", t.name), zap.Error(err))
			if !sleep(ctx, backoff(attempt, s.cfg.RetryBackoffMax)) {
				return nil, ctx.Err()
			}
		}
		for id, o := range parts {
			start := o.EpochOffset().Offset // committed, or a negative reset sentinel
			if m, ok := maxes[id]; ok && m+1 > start {
				start = m + 1
				parts[id] = kgo.NewOffset().At(start).WithEpoch(-1)
			}
			start = max(start, 0)
			s.assign(topicPartition{topic, id}, t, start)
			s.log.Info("partition assigned", zap.String("topic", topic), zap.Int32("partition", id), zap.Int64("from_offset", start))
		}
	}
	return offsets, nil
}

// progress returns, per Kafka partition, the highest offset in the table.
// ids nil reads nothing but checks the table exists.
func (s *Sink) progress(ctx context.Context, t *table, ids []int32) (map[int32]int64, error) {
	where := "0"
	if len(ids) > 0 {
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = strconv.Itoa(int(id))
		}
		where = "kafka_partition IN (" + strings.Join(strs, ",") + ")"
	}
	q := fmt.Sprintf("SELECT kafka_partition, max(kafka_offset) FROM %s.%s WHERE %s GROUP BY kafka_partition", s.db, t.name, where)
	rows, err := s.ch.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return nil, err
		}
		out[p] = o
	}
	return out, rows.Err()
}

func (s *Sink) allWriters() []*writer {
	var out []*writer
	for _, ws := range s.writers {
		out = append(out, ws...)
	}
	return out
}

// writerOf picks the lane of a partition: lanes insert concurrently, each
// holding a fixed subset of the partitions.
func (s *Sink) writerOf(tp topicPartition) *writer {
	ws := s.writers[tp.topic]
	return ws[int(tp.partition)%len(ws)]
}

// assign adds a newly owned partition to its table's writer.
func (s *Sink) assign(tp topicPartition, t *table, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.writerOf(tp)
	p := &partition{tp: tp, w: w, next: next, committed: next}
	p.confirmed.Store(next)
	s.parts[tp] = p
	w.mu.Lock()
	w.parts[tp.partition] = p
	w.mu.Unlock()
	w.start()
	s.m.owned.Set(float64(len(s.parts)))
}

// dropPartitions runs on revoke and on loss: the writers stop retrying, the
// INSERT in flight (if any) finishes, and whatever of the lost partitions
// has not landed is dropped; their next owner reads ClickHouse and starts
// after what landed. The other partitions keep their queues.
func (s *Sink) dropPartitions(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, ids := range lost {
		for _, id := range ids {
			tp := topicPartition{topic, id}
			p := s.parts[tp]
			if p == nil {
				continue
			}
			w := p.w
			w.stopAndWait()
			w.mu.Lock()
			delete(s.parts, tp)
			delete(w.parts, id)
			remaining := len(w.parts)
			w.mu.Unlock()
			if remaining > 0 {
				w.start()
			}
			s.m.lag.DeleteLabelValues(topic, strconv.Itoa(int(id)))
			s.log.Info("partition released", zap.String("topic", topic), zap.Int32("partition", id),
				zap.Int64("confirmed_offset", p.confirmed.Load()), zap.Int("dropped_unconfirmed", p.queued))
		}
	}
	s.m.owned.Set(float64(len(s.parts)))
}

// commitLoop commits confirmed offsets every second. Kafka offsets are only
// for lag tools and for dead-letter-only tails: ClickHouse is the truth.
func (s *Sink) commitLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.commit(ctx, false)
		}
	}
}

func (s *Sink) commit(ctx context.Context, final bool) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	s.mu.Lock()
	for tp, p := range s.parts {
		c := p.confirmed.Load()
		if hwm := p.hwm.Load(); hwm > 0 {
			s.m.lag.WithLabelValues(tp.topic, strconv.Itoa(int(tp.partition))).Set(float64(max(hwm-c, 0)))
		}
		if c <= p.committed {
			continue
		}
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: c}
		p.committed = c
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if final {
		cctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	}
	defer cancel()
	s.cl.CommitOffsetsSync(cctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("offset commit failed (progress is in ClickHouse; only lag tools see this)", zap.Error(err))
		}
	})
}

func backoff(attempt int, limit time.Duration) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 10)
	return min(d, limit)
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
