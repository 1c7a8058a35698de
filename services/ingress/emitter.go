package ingress

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/ingress/spool"
)

// Spool is the part of the on-disk spool the emitter uses.
type Spool interface {
	Append(r spool.Record) error
	Peek(max int) ([]spool.Record, spool.Cursor, error)
	Commit(c spool.Cursor) error
	Len() int64
}

// ErrSpoolFull is returned by Emit when an event can be neither produced
// nor spooled.
var ErrSpoolFull = errors.New("usage spool is full")

// Producer is the part of a franz-go client the emitter uses.
type Producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	BufferedProduceRecords() int64
	Ping(ctx context.Context) error
	Flush(ctx context.Context) error
}

// KafkaEmitter produces usage events asynchronously (idempotent producer,
// compression, linger) and never waits on Kafka: while Kafka is unreachable
// new events go to the on-disk spool, and they are replayed in order when it
// returns. Records already handed to the client stay with it and are
// retried by it (no delivery timeout), so an outage neither loses nor
// duplicates events.
type KafkaEmitter struct {
	cl       Producer
	topic    string
	spool    Spool
	dropFull bool
	log      *zap.Logger
	// maxBuffered: beyond this many records held by the client, new
	// events go to the spool instead (the client's own cap is higher).
	maxBuffered int64

	mu       sync.Mutex // serialises spool appends with the switch back to direct
	spooling atomic.Bool
	full     atomic.Bool
	lastAck  atomic.Int64 // unix nanos of the last acknowledged produce

	produced, spooled, replayed, dropped, produceErrors prometheus.Counter
	modeGauge                                           prometheus.Gauge
}

// EmitterDeps wires an emitter.
type EmitterDeps struct {
	Producer Producer
	Topic    string
	Spool    Spool
	// DropWhenFull keeps serving and drops events when the spool is full;
	// otherwise Accepting turns false and the gateway refuses calls.
	DropWhenFull bool
	Log          *zap.Logger
	Registerer   prometheus.Registerer
}

// NewKafkaEmitter builds the emitter; call Run to start its replay loop.
func NewKafkaEmitter(d EmitterDeps) *KafkaEmitter {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	e := &KafkaEmitter{cl: d.Producer, topic: d.Topic, spool: d.Spool, dropFull: d.DropWhenFull, log: d.Log, maxBuffered: 20_000,
		produced:      c("burnrate_ingress_events_produced_total", "Usage events acknowledged by Kafka."),
		spooled:       c("burnrate_ingress_events_spooled_total", "Usage events written to the on-disk spool."),
		replayed:      c("burnrate_ingress_events_replayed_total", "Spooled usage events produced to Kafka."),
		dropped:       c("burnrate_ingress_events_dropped_total", "Usage events dropped because the spool was full (when_full: drop)."),
		produceErrors: c("burnrate_ingress_produce_errors_total", "Produce attempts that failed (the event then went to the spool)."),
		modeGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "burnrate_ingress_spooling",
			Help: "1 while usage events go to the spool because Kafka is unreachable."}),
	}
	e.lastAck.Store(time.Now().UnixNano())
	if d.Registerer != nil {
		d.Registerer.MustRegister(e.produced, e.spooled, e.replayed, e.dropped, e.produceErrors, e.modeGauge)
	}
	return e
}

func recordKey(u *events.Usage) []byte {
	if u.Attribution.AgentRunID != "" {
		return []byte(u.Attribution.AgentRunID)
	}
	return []byte(u.Attribution.VirtualKeyID)
}

// Emit hands the event to Kafka or, while Kafka is away, to the spool.
func (e *KafkaEmitter) Emit(u *events.Usage) error {
	value, err := events.Encode(u)
	if err != nil {
		return fmt.Errorf("emit: encode %s: %w", u.ID, err)
	}
	rec := &kgo.Record{Topic: e.topic, Key: recordKey(u), Value: value}
	if !e.spooling.Load() {
		if e.cl.BufferedProduceRecords() < e.maxBuffered {
			e.cl.TryProduce(context.Background(), rec, e.promise)
			return nil
		}
		e.startSpooling("producer buffer full")
	}
	e.mu.Lock()
	if !e.spooling.Load() {
		// The replayer drained the spool and switched back meanwhile.
		e.mu.Unlock()
		e.cl.TryProduce(context.Background(), rec, e.promise)
		return nil
	}
	err = e.appendLocked(rec.Key, rec.Value)
	e.mu.Unlock()
	return err
}

// promise runs on the client's promise goroutine.
func (e *KafkaEmitter) promise(r *kgo.Record, err error) {
	if err == nil {
		e.lastAck.Store(time.Now().UnixNano())
		e.produced.Inc()
		return
	}
	// With no delivery timeout set, a record fails only when the buffer is
	// full (never sent) or the client closes: keep it on disk.
	e.produceErrors.Inc()
	e.startSpooling("produce failed: " + err.Error())
	if serr := e.toSpool(r.Key, r.Value); serr != nil {
		e.log.Error("usage event lost", zap.Error(serr))
	}
}

func (e *KafkaEmitter) toSpool(key, value []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.appendLocked(key, value)
}

// appendLocked writes one record to the spool; e.mu is held.
func (e *KafkaEmitter) appendLocked(key, value []byte) error {
	if err := e.spool.Append(spool.Record{Key: key, Value: value}); err != nil {
		if errors.Is(err, spool.ErrFull) {
			e.full.Store(true)
			e.dropped.Inc()
			return ErrSpoolFull
		}
		return fmt.Errorf("emit: spool: %w", err)
	}
	e.spooled.Inc()
	return nil
}

// Accepting is false while the spool is full and the policy is fail-closed.
func (e *KafkaEmitter) Accepting() bool { return e.dropFull || !e.full.Load() }

func (e *KafkaEmitter) startSpooling(why string) {
	if !e.spooling.Swap(true) {
		e.modeGauge.Set(1)
		e.log.Warn("kafka unreachable: spooling usage events to disk", zap.String("why", why))
	}
}

// Run watches the producer and replays the spool until ctx ends, then
// flushes what the producer still holds.
func (e *KafkaEmitter) Run(ctx context.Context, stall time.Duration) error {
	if stall <= 0 {
		stall = 2 * time.Second
	}
	// Events spooled by an earlier run are replayed first.
	if e.spool.Len() > 0 {
		e.startSpooling("events left in the spool by an earlier run")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return e.shutdown()
		case <-tick.C:
		}
		buffered := e.cl.BufferedProduceRecords()
		if !e.spooling.Load() {
			// Records waiting longer than stall mean the broker is away.
			if buffered > 0 && time.Since(time.Unix(0, e.lastAck.Load())) > stall {
				e.startSpooling(fmt.Sprintf("%d events unacknowledged for %s", buffered, stall))
			}
			continue
		}
		if buffered > 0 {
			continue // the client drains its own buffer first, in order
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := e.cl.Ping(pctx)
		cancel()
		if err != nil {
			continue
		}
		if err := e.replay(ctx); err != nil {
			e.log.Warn("spool replay paused", zap.Error(err))
		}
	}
}

// replay produces the spool in order, batch by batch, committing each batch
// once Kafka acknowledged all of it, and switches back to direct producing
// when the spool is empty.
func (e *KafkaEmitter) replay(ctx context.Context) error {
	for ctx.Err() == nil {
		recs, cur, err := e.spool.Peek(1000)
		if err != nil {
			return fmt.Errorf("peek: %w", err)
		}
		if len(recs) == 0 {
			e.mu.Lock()
			if e.spool.Len() == 0 {
				e.spooling.Store(false)
				e.full.Store(false)
				e.modeGauge.Set(0)
				e.lastAck.Store(time.Now().UnixNano())
				e.log.Info("kafka back: spool drained, producing directly again")
			}
			e.mu.Unlock()
			if !e.spooling.Load() {
				return nil
			}
			continue
		}
		krs := make([]*kgo.Record, len(recs))
		for i, r := range recs {
			krs[i] = &kgo.Record{Topic: e.topic, Key: r.Key, Value: r.Value}
		}
		// No deadline: a cancelled produce would be ambiguous (written or
		// not), and replaying it again could duplicate it. The client
		// retries until the broker takes the batch.
		if err := e.cl.ProduceSync(context.WithoutCancel(ctx), krs...).FirstErr(); err != nil {
			return fmt.Errorf("produce %d spooled events: %w", len(krs), err)
		}
		if err := e.spool.Commit(cur); err != nil {
			return fmt.Errorf("commit spool: %w", err)
		}
		e.full.Store(false)
		e.replayed.Add(float64(len(krs)))
		e.lastAck.Store(time.Now().UnixNano())
	}
	return ctx.Err()
}

func (e *KafkaEmitter) shutdown() error {
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.cl.Flush(fctx); err != nil {
		return fmt.Errorf("emit: flush on shutdown: %w (unflushed events are spooled when the client closes)", err)
	}
	return nil
}
