package sink

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// batch is a run of consecutive offsets of one partition: the rows to insert
// in one INSERT, plus the records of the run that go to the dead-letter
// topic. Confirming a batch confirms every offset up to last.
type batch struct {
	rows   rows
	month  int // yyyymm of every row, in the server's time zone
	first  int64
	last   int64
	dead   []*kgo.Record
	opened time.Time
}

func (b *batch) size() int { return b.rows.len() + len(b.dead) }

// partition is one owned Kafka partition: the open batch (filled by the poll
// loop under Sink.mu) and a writer goroutine that lands sealed batches in
// order, one at a time, so that ClickHouse never holds a later batch of the
// partition without every earlier one.
type partition struct {
	s    *Sink
	tp   topicPartition
	tbl  *table
	cols []string
	sql  string

	// Poll-loop state, under Sink.mu.
	next            int64 // the next offset to accept; lower ones are duplicates
	cur             *batch
	paused          bool
	warnedBackwards bool
	committed       int64

	mu     sync.Mutex
	queue  []*batch
	queued int // rows and dead letters in queue
	busy   bool
	free   []rows
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed bool

	confirmed atomic.Int64 // offset after the last confirmed record
	hwm       atomic.Int64
}

func newPartition(s *Sink, tp topicPartition, t *table, next int64) *partition {
	r := t.newRows()
	p := &partition{
		s: s, tp: tp, tbl: t, cols: r.columns(),
		next: next, committed: next,
		free: []rows{r},
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	p.sql = insertSQL(s.db, t.name, p.cols)
	p.confirmed.Store(next)
	return p
}

func (p *partition) newBatch(first int64) *batch {
	p.mu.Lock()
	var r rows
	if n := len(p.free); n > 0 {
		r = p.free[n-1]
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if r == nil {
		r = p.tbl.newRows()
	}
	return &batch{rows: r, first: first, last: first - 1, opened: time.Now()}
}

func (p *partition) enqueue(b *batch) {
	p.mu.Lock()
	p.queue = append(p.queue, b)
	p.queued += b.size()
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// pendingRows counts rows read and not yet confirmed. Called under Sink.mu.
func (p *partition) pendingRows() int {
	p.mu.Lock()
	n := p.queued
	p.mu.Unlock()
	if p.cur != nil {
		n += p.cur.size()
	}
	return n
}

// drained is closed once the queue is empty and nothing is in flight.
func (p *partition) drained() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			p.mu.Lock()
			idle := len(p.queue) == 0 && !p.busy
			p.mu.Unlock()
			if idle {
				return
			}
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return ch
}

// stopAndWait stops retries, lets an attempt in flight finish and waits for
// the writer to exit. Batches not confirmed are dropped.
func (p *partition) stopAndWait() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	<-p.done
}

// write lands queued batches in offset order until stopped.
func (p *partition) write() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.queue) == 0 {
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-p.wake:
			}
			p.mu.Lock()
		}
		b := p.queue[0]
		p.busy = true
		p.mu.Unlock()

		ok := p.deliver(b)

		p.mu.Lock()
		p.busy = false
		if !ok {
			p.mu.Unlock()
			return
		}
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.queued -= b.size()
		b.rows.reset()
		p.free = append(p.free, b.rows)
		p.mu.Unlock()
		p.confirmed.Store(b.last + 1)
	}
}

// deliver sends the dead letters, then inserts the rows, retrying until both
// are confirmed (true) or the partition is stopped (false). After a failed
// INSERT it asks ClickHouse whether the batch landed before trying again:
// an INSERT is all or nothing, so the answer is exact.
func (p *partition) deliver(b *batch) bool {
	s := p.s
	for attempt := 0; len(b.dead) > 0; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.InsertTimeout)
		err := s.cl.ProduceSync(ctx, b.dead...).FirstErr()
		cancel()
		if err == nil {
			s.m.deadLetters.WithLabelValues(p.tbl.topic).Add(float64(len(b.dead)))
			break
		}
		s.m.retries.WithLabelValues("dead_letter").Inc()
		s.log.Warn("dead-letter produce failed; retrying", zap.String("topic", p.tp.topic), zap.Int32("partition", p.tp.partition), zap.Error(err))
		if !p.backoff(attempt) {
			return false
		}
	}
	if b.rows.len() == 0 {
		return true
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			landed, err := p.landed(b)
			if err != nil {
				s.m.retries.WithLabelValues("progress").Inc()
				s.log.Warn("cannot check whether a failed INSERT landed; retrying", zap.String("table", p.tbl.name), zap.Error(err))
				if !p.backoff(attempt) {
					return false
				}
				continue
			}
			if landed {
				break
			}
		}
		t0 := time.Now()
		err := p.insert(b)
		if err == nil {
			s.m.insertTime.WithLabelValues(p.tbl.name).Observe(time.Since(t0).Seconds())
			break
		}
		s.m.retries.WithLabelValues("insert").Inc()
		s.log.Warn("INSERT failed; retrying", zap.String("table", p.tbl.name), zap.Int32("partition", p.tp.partition),
			zap.Int64("first_offset", b.first), zap.Int64("last_offset", b.last), zap.Int("attempt", attempt+1), zap.Error(err))
		if !p.backoff(attempt) {
			return false
		}
	}
	n := float64(b.rows.len())
	s.m.rows.WithLabelValues(p.tbl.name).Add(n)
	s.m.batches.WithLabelValues(p.tbl.name).Inc()
	s.m.batchRows.WithLabelValues(p.tbl.name).Observe(n)
	return true
}

func (p *partition) insert(b *batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.InsertTimeout)
	defer cancel()
	ins, err := p.s.ch.PrepareBatch(ctx, p.sql)
	if err != nil {
		return err
	}
	if err := b.rows.send(ins); err != nil {
		ins.Abort()
		return err
	}
	return ins.Send()
}

// landed counts the batch's rows in the table: all of them or none.
func (p *partition) landed(b *batch) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.InsertTimeout)
	defer cancel()
	var n uint64
	q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE kafka_partition = %d AND kafka_offset >= %d AND kafka_offset <= %d",
		p.s.db, p.tbl.name, p.tp.partition, b.first, b.last)
	if err := p.s.ch.QueryRow(ctx, q).Scan(&n); err != nil {
		return false, err
	}
	switch {
	case n == 0:
		return false, nil
	case n == uint64(b.rows.len()):
		p.s.log.Info("a failed INSERT had landed; not inserting it again", zap.String("table", p.tbl.name),
			zap.Int32("partition", p.tp.partition), zap.Int64("first_offset", b.first))
		return true, nil
	default:
		// Cannot happen while one INSERT is one part; say so loudly rather
		// than insert the rest twice.
		p.s.log.Error("a batch is partly in ClickHouse; not inserting it again", zap.String("table", p.tbl.name),
			zap.Int32("partition", p.tp.partition), zap.Int64("first_offset", b.first), zap.Int64("last_offset", b.last),
			zap.Uint64("found", n), zap.Int("rows", b.rows.len()))
		return true, nil
	}
}

// backoff waits before the next attempt; false when the partition stopped.
func (p *partition) backoff(attempt int) bool {
	t := time.NewTimer(backoff(attempt, p.s.cfg.RetryBackoffMax))
	defer t.Stop()
	select {
	case <-p.stop:
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
