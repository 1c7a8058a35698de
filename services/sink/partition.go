package sink

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// batch is a run of consecutive offsets of one partition: rows of one month
// (of the table's partition key), plus the records of the run that go to
// the dead-letter topic. Confirming a batch confirms every offset up to last.
type batch struct {
	rows   rows
	month  int // yyyymm of every row, in the server's time zone
	first  int64
	last   int64
	dead   []*kgo.Record
	opened time.Time
	// tried: an INSERT holding this batch failed, so it may have landed;
	// ClickHouse is asked before it is inserted again.
	tried bool
}

func (b *batch) size() int { return b.rows.len() + len(b.dead) }

// partition is one owned Kafka partition: the open batch (filled by the poll
// loop under Sink.mu) and the sealed batches waiting for its table's writer
// (under writer.mu).
type partition struct {
	tp topicPartition
	w  *writer

	// Poll-loop state, under Sink.mu.
	next            int64 // the next offset to accept; lower ones are duplicates
	cur             *batch
	warnedBackwards bool
	committed       int64

	// Writer state, under w.mu.
	queue  []*batch
	queued int // rows and dead letters in queue

	confirmed atomic.Int64 // offset after the last confirmed record
	hwm       atomic.Int64
}

func (p *partition) newBatch(first int64) *batch {
	return &batch{rows: p.w.rowsFromPool(), first: first, last: first - 1, opened: time.Now()}
}

// pendingRows counts rows read and not yet confirmed. Called under Sink.mu.
func (p *partition) pendingRows() int {
	p.w.mu.Lock()
	n := p.queued
	p.w.mu.Unlock()
	if p.cur != nil {
		n += p.cur.size()
	}
	return n
}

// writer lands one table's batches. It has one INSERT in flight at a time,
// and each INSERT takes, from every owned partition of the table, the
// batches at the head of its queue (in offset order) whose rows are of one
// month: one block, one part, all or nothing, and never a later batch of a
// partition without the earlier ones. Merging partitions keeps INSERTs few
// and large, which is what ClickHouse is fast at.
type writer struct {
	s   *Sink
	tbl *table
	sql string

	mu    sync.Mutex
	parts map[int32]*partition
	free  []rows
	busy  bool
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func newWriter(s *Sink, t *table) *writer {
	w := &writer{s: s, tbl: t, parts: map[int32]*partition{}, wake: make(chan struct{}, 1)}
	r := t.newRows()
	w.sql = insertSQL(s.db, t.name, r.columns())
	w.free = []rows{r}
	return w
}

func (w *writer) rowsFromPool() rows {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.free); n > 0 {
		r := w.free[n-1]
		w.free = w.free[:n-1]
		return r
	}
	return w.tbl.newRows()
}

// start runs the writer goroutine if it is not running.
func (w *writer) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return
	}
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go w.run(w.stop, w.done)
}

// stopAndWait stops retries, lets an attempt in flight finish and waits for
// the goroutine to exit. Queued batches stay queued.
func (w *writer) stopAndWait() {
	w.mu.Lock()
	stop, done := w.stop, w.done
	w.stop, w.done = nil, nil
	w.mu.Unlock()
	if done == nil {
		return
	}
	close(stop)
	<-done
}

func (w *writer) enqueue(p *partition, b *batch) {
	w.mu.Lock()
	p.queue = append(p.queue, b)
	p.queued += b.size()
	w.mu.Unlock()
	w.poke()
}

func (w *writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// idle reports whether nothing is queued or in flight.
func (w *writer) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy {
		return false
	}
	for _, p := range w.parts {
		if len(p.queue) > 0 {
			return false
		}
	}
	return true
}

type item struct {
	p *partition
	b *batch
}

func (w *writer) run(stop, done chan struct{}) {
	defer close(done)
	for {
		set, wait := w.collect()
		if len(set) == 0 {
			if !w.sleep(stop, wait) {
				return
			}
			continue
		}
		ok := w.deliver(set, stop)
		w.mu.Lock()
		w.busy = false
		if ok {
			for _, it := range set {
				p := it.p
				p.queue[0] = nil
				p.queue = p.queue[1:]
				p.queued -= it.b.size()
				it.b.rows.reset()
				w.free = append(w.free, it.b.rows)
				p.confirmed.Store(it.b.last + 1)
			}
		}
		w.mu.Unlock()
		if !ok {
			return
		}
	}
}

// sleep waits for a wake-up, for d (0: no limit) or for stop (false).
func (w *writer) sleep(stop <-chan struct{}, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-stop:
		return false
	case <-w.wake:
	case <-timer:
	}
	return true
}

// collect picks the next INSERT once there is enough to make it large
// (MaxInsertRows queued, or the oldest batch waited BatchInterval, or a
// flush): the oldest month among the queue heads, then from each partition
// (in id order) its leading batches of that month (or without rows), up to
// MaxInsertRows. Back-pressure (fetching paused) also makes it ready: the
// rows it waits for would never come. With nothing ready it says how long
// to wait.
func (w *writer) collect() ([]item, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int32, 0, len(w.parts))
	month := 0
	queued := 0
	var oldest time.Time
	for id, p := range w.parts {
		if len(p.queue) == 0 {
			continue
		}
		queued += p.queued
		if o := p.queue[0].opened; oldest.IsZero() || o.Before(oldest) {
			oldest = o
		}
		ids = append(ids, id)
		for _, b := range p.queue {
			if b.rows.len() > 0 {
				if month == 0 || b.month < month {
					month = b.month
				}
				break
			}
		}
	}
	if len(ids) == 0 {
		return nil, 0
	}
	if age := time.Since(oldest); queued < w.s.cfg.MaxInsertRows && age < w.s.cfg.BatchInterval && !w.s.flushing.Load() && !w.s.pausedFetch.Load() {
		return nil, w.s.cfg.BatchInterval - age
	}
	slices.Sort(ids)
	var set []item
	rows := 0
	for _, id := range ids {
		p := w.parts[id]
		for _, b := range p.queue {
			n := b.rows.len()
			if n > 0 && (b.month != month || (rows > 0 && rows+n > w.s.cfg.MaxInsertRows)) {
				break
			}
			set = append(set, item{p, b})
			rows += n
		}
	}
	if len(set) > 0 {
		w.busy = true
	}
	return set, 0
}

// deliver sends the dead letters, then inserts the rows, retrying until both
// are confirmed (true) or the writer is stopped (false). Batches of a failed
// INSERT are checked against ClickHouse before they are inserted again:
// each is entirely there or not at all, so the check is exact.
func (w *writer) deliver(set []item, stop <-chan struct{}) bool {
	s := w.s
	var dead []*kgo.Record
	for _, it := range set {
		dead = append(dead, it.b.dead...)
	}
	for attempt := 0; len(dead) > 0; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.InsertTimeout)
		err := s.cl.ProduceSync(ctx, dead...).FirstErr()
		cancel()
		if err == nil {
			s.m.deadLetters.WithLabelValues(w.tbl.topic).Add(float64(len(dead)))
			for _, it := range set {
				it.b.dead = nil
			}
			break
		}
		s.m.retries.WithLabelValues("dead_letter").Inc()
		s.log.Warn("dead-letter produce failed; retrying", zap.String("table", w.tbl.name), zap.Error(err))
		if !pause(stop, attempt, s.cfg.RetryBackoffMax) {
			return false
		}
	}

	todo := make([]*batch, 0, len(set))
	for _, it := range set {
		if it.b.rows.len() > 0 {
			todo = append(todo, it.b)
		}
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		left, err := w.dropLanded(todo, set)
		if err != nil {
			s.m.retries.WithLabelValues("progress").Inc()
			s.log.Warn("cannot check whether a failed INSERT landed; retrying", zap.String("table", w.tbl.name), zap.Error(err))
			if !pause(stop, attempt, s.cfg.RetryBackoffMax) {
				return false
			}
			continue
		}
		if todo = left; len(todo) == 0 {
			break
		}
		n := 0
		for _, b := range todo {
			b.tried = true
			n += b.rows.len()
		}
		t0 := time.Now()
		err = w.insert(todo)
		if err == nil {
			s.m.insertTime.WithLabelValues(w.tbl.name).Observe(time.Since(t0).Seconds())
			s.m.rows.WithLabelValues(w.tbl.name).Add(float64(n))
			s.m.batches.WithLabelValues(w.tbl.name).Inc()
			s.m.batchRows.WithLabelValues(w.tbl.name).Observe(float64(n))
			return true
		}
		s.m.retries.WithLabelValues("insert").Inc()
		s.log.Warn("INSERT failed; retrying", zap.String("table", w.tbl.name), zap.Int("rows", n),
			zap.Int("attempt", attempt+1), zap.Error(err))
		if !pause(stop, attempt, s.cfg.RetryBackoffMax) {
			return false
		}
	}
	return true
}

func (w *writer) insert(todo []*batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.InsertTimeout)
	defer cancel()
	ins, err := w.s.ch.PrepareBatch(ctx, w.sql)
	if err != nil {
		return err
	}
	for _, b := range todo {
		if err := b.rows.send(ins); err != nil {
			ins.Abort()
			return err
		}
	}
	return ins.Send()
}

// dropLanded asks ClickHouse, for every batch a failed INSERT held, whether
// its rows are there, and returns the batches still to insert.
func (w *writer) dropLanded(todo []*batch, set []item) ([]*batch, error) {
	out := todo[:0:0]
	for _, b := range todo {
		if !b.tried {
			out = append(out, b)
			continue
		}
		var part int32
		for _, it := range set {
			if it.b == b {
				part = it.p.tp.partition
			}
		}
		q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE toYYYYMM(%s) = %d AND kafka_partition = %d AND kafka_offset BETWEEN %d AND %d",
			w.s.db, w.tbl.name, w.tbl.timeColumn, b.month, part, b.first, b.last)
		ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.InsertTimeout)
		var n uint64
		err := w.s.ch.QueryRow(ctx, q).Scan(&n)
		cancel()
		if err != nil {
			return nil, err
		}
		switch {
		case n == 0:
			out = append(out, b)
		case n == uint64(b.rows.len()):
			w.s.log.Info("a failed INSERT had landed; not inserting it again", zap.String("table", w.tbl.name),
				zap.Int32("partition", part), zap.Int64("first_offset", b.first))
		default:
			// Cannot happen while one INSERT is one part; say so loudly
			// rather than insert the rest twice.
			w.s.log.Error("a batch is partly in ClickHouse; not inserting it again", zap.String("table", w.tbl.name),
				zap.Int32("partition", part), zap.Int64("first_offset", b.first), zap.Int64("last_offset", b.last),
				zap.Uint64("found", n), zap.Int("rows", b.rows.len()))
		}
	}
	return out, nil
}

// pause waits before the next attempt; false when stop closed first.
func pause(stop <-chan struct{}, attempt int, limit time.Duration) bool {
	t := time.NewTimer(backoff(attempt, limit))
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

const maxErrorHeader = 4096

// deadLetter wraps a record that failed to decode or validate for the
// dead-letter topic: same key and value, the reason and source in headers.
func (s *Sink) deadLetter(r *kgo.Record, err error) *kgo.Record {
	msg := err.Error()
	if len(msg) > maxErrorHeader {
		msg = msg[:maxErrorHeader]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return &kgo.Record{
		Topic: s.names.DeadLetter(),
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "burnrate.error", Value: []byte(msg)},
			{Key: "burnrate.source.topic", Value: []byte(r.Topic)},
			{Key: "burnrate.source.partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
			{Key: "burnrate.source.offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
			{Key: "burnrate.source.timestamp", Value: []byte(r.Timestamp.UTC().Format(time.RFC3339Nano))},
		},
	}
}
