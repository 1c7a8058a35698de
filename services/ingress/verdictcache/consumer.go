package verdictcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// ConsumerConfig says where the verdicts topic is and how to answer before
// the cache has caught up.
type ConsumerConfig struct {
	// Kafka is the shared kafka section; its TopicPrefix names the topic.
	Kafka kclient.Config
	// FailOpen: while not caught up, allow calls (true) or block them with
	// ReasonNotReady (false).
	FailOpen bool
}

// Validate names the bad field.
func (c ConsumerConfig) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// ConsumerDeps are the consumer's collaborators.
type ConsumerDeps struct {
	Log        *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// Consumer keeps a Cache equal to the verdicts topic: every partition, from
// the start, without a consumer group (every ingress needs every verdict),
// reading only committed records.
type Consumer struct {
	cfg   ConsumerConfig
	cache *Cache
	log   *zap.Logger
	topic string
	m     *metrics

	started     atomic.Int64 // unix nanos when Run started
	lastApplied atomic.Int64 // unix nanos of the last record applied

	readyOnce sync.Once
	readyCh   chan struct{}
}

// NewConsumer checks cfg, registers the metrics and marks cache not ready
// (answering by cfg.FailOpen) until Run has caught up.
func NewConsumer(cfg ConsumerConfig, cache *Cache, deps ConsumerDeps) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("verdictcache: %w", err)
	}
	if cache == nil {
		return nil, errors.New("verdictcache: consumer needs a cache")
	}
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	c := &Consumer{
		cfg:     cfg,
		cache:   cache,
		log:     log.With(zap.String("component", "verdictcache")),
		topic:   ktopics.WithPrefix(cfg.Kafka.TopicPrefix).Verdicts(),
		readyCh: make(chan struct{}),
	}
	c.started.Store(cache.now().UnixNano())
	m, err := newMetrics(deps.Registerer, c)
	if err != nil {
		return nil, fmt.Errorf("verdictcache: %w", err)
	}
	c.m = m
	cache.SetFailOpen(cfg.FailOpen)
	cache.SetReady(false)
	return c, nil
}

// Run is NewConsumer followed by Consumer.Run.
func Run(ctx context.Context, cfg ConsumerConfig, cache *Cache, deps ConsumerDeps) error {
	c, err := NewConsumer(cfg, cache, deps)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// Ready reports whether the cache holds every verdict committed before Run
// started.
func (c *Consumer) Ready() bool {
	select {
	case <-c.readyCh:
		return true
	default:
		return false
	}
}

// WaitReady returns nil once Ready, or ctx's error.
func (c *Consumer) WaitReady(ctx context.Context) error {
	select {
	case <-c.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("verdictcache: wait ready: %w", ctx.Err())
	}
}

func (c *Consumer) markReady() {
	c.readyOnce.Do(func() {
		c.cache.SetReady(true)
		close(c.readyCh)
		c.log.Info("verdict cache caught up",
			zap.String("topic", c.topic), zap.Int("subjects", c.cache.Len()),
			zap.Duration("took", time.Duration(c.cache.now().UnixNano()-c.started.Load())))
	})
}

// Run consumes until ctx ends, then returns nil. Kafka errors are logged and
// retried, never returned: the cache keeps answering from what it has.
func (c *Consumer) Run(ctx context.Context) error {
	c.started.Store(c.cache.now().UnixNano())
	cl, err := kclient.New(c.cfg.Kafka, "verdictcache",
		kgo.ConsumeTopics(c.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are the last offsets of a transactional
		// topic; keeping them is how catch-up sees the end.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return fmt.Errorf("verdictcache: %w", err)
	}
	defer cl.Close()

	targets, err := c.catchUpTargets(ctx, kadm.NewClient(cl))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if len(targets) == 0 {
		c.markReady()
	}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			c.log.Warn("fetch verdicts", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
		})
		c.applyFetches(fetches, targets)
		if len(targets) == 0 {
			c.markReady()
		}
	}
}

// catchUpTargets lists, per partition that holds records, the end offset a
// read_committed reader can reach now (the last stable offset: equal to the
// high watermark unless a transaction is open). It retries until ctx ends.
func (c *Consumer) catchUpTargets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	backoff := 250 * time.Millisecond
	for {
		targets, err := listTargets(ctx, adm, c.topic)
		if err == nil {
			return targets, nil
		}
		c.log.Warn("list verdicts end offsets; retrying", zap.String("topic", c.topic), zap.Duration("in", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("verdictcache: list end offsets of %s: %w", c.topic, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func listTargets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	targets := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); !ok || o.Offset > s.Offset {
			targets[o.Partition] = o.Offset
		}
	})
	return targets, nil
}

// applyFetches writes one snapshot per poll and strikes off the partitions
// that reached their catch-up target.
func (c *Consumer) applyFetches(fetches kgo.Fetches, targets map[int32]int64) {
	var data bool
	fetches.EachRecord(func(r *kgo.Record) {
		if end, ok := targets[r.Partition]; ok && r.Offset >= end-1 {
			delete(targets, r.Partition)
		}
		data = data || !r.Attrs.IsControl()
	})
	if !data {
		return
	}
	c.cache.update(func(b *batch) {
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				c.applyRecord(b, r)
			}
		})
	})
	c.lastApplied.Store(c.cache.now().UnixNano())
}

func (c *Consumer) applyRecord(b *batch, r *kgo.Record) {
	if r.Value == nil {
		if len(r.Key) == 0 {
			c.bad(r, errors.New("tombstone without a key"))
			return
		}
		b.delete(string(r.Key))
		c.m.applied.WithLabelValues("tombstone").Inc()
		return
	}
	v, err := events.DecodeVerdict(r.Value)
	if err == nil {
		err = v.Validate()
	}
	if err == nil && string(r.Key) != v.Subject {
		err = fmt.Errorf("key %q is not the subject %q", r.Key, v.Subject)
	}
	if err == nil && !b.apply(v) {
		err = fmt.Errorf("unknown action %q", v.Action)
	}
	if err != nil {
		c.bad(r, err)
		return
	}
	c.m.applied.WithLabelValues(string(v.Action)).Inc()
}

func (c *Consumer) bad(r *kgo.Record, err error) {
	c.m.bad.Inc()
	c.log.Warn("skipped bad verdict record", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
}

// ageSeconds is the time since the last record was applied (since Run
// started when none was).
func (c *Consumer) ageSeconds() float64 {
	last := c.lastApplied.Load()
	if last == 0 {
		last = c.started.Load()
	}
	return time.Duration(c.cache.now().UnixNano() - last).Seconds()
}
