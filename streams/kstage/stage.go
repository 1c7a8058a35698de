// Package kstage runs a stateful Kafka-to-Kafka stage exactly once: a
// consumer group in a franz-go GroupTransactSession whose output records,
// changelog records and consumed offsets commit in one transaction, with
// each input partition's state restored from its changelog partition when
// the partition is assigned. The meter's two stages and the killswitch are
// stages.
//
// The changelog has at least as many partitions as every input topic and a
// state record goes to the partition of the input partition it belongs to
// (a manual partitioner), so a replica that takes input partition p reads
// changelog partition p only. After an aborted transaction every state is
// dropped and restored again: nothing that did not commit survives.
// kstage never decodes records; the Handler owns their meaning.
package kstage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/streams/kclient"
)

// TP is one input topic partition.
type TP struct {
	Topic     string
	Partition int32
}

// Handler is a stage's processing; the stage owns Kafka and transactions.
// Every method is called with the stage's lock held.
type Handler interface {
	// Process handles one record of a partition whose state is restored.
	Process(r *kgo.Record, now time.Time)
	// Flush returns the records to commit now: output and changelog.
	Flush(now time.Time) []*kgo.Record
	// Restore rebuilds a partition's state from its changelog entries
	// (key without Prefix → latest value).
	Restore(t TP, entries map[string][]byte)
	// Drop forgets a partition (revoked), or every one (nil, after an abort).
	Drop(t *TP)
	// Prefix is the changelog key prefix of a partition's state.
	Prefix(t TP) string
	// Has reports whether a partition's state is restored.
	Has(t TP) bool
}

// Ticker is a Handler that also has work without input (timers, requests
// from an admin API): when Due says so, the stage opens a transaction and
// flushes even though no record arrived.
type Ticker interface {
	Due(now time.Time) bool
}

// Committer is a Handler that wants to know how each transaction ended
// (to send notifications only for what committed).
type Committer interface {
	Committed(ok bool)
}

// Metrics are a service's stage series, each labelled by stage name.
type Metrics struct {
	Events         *prometheus.CounterVec
	Commits        *prometheus.CounterVec
	Aborts         *prometheus.CounterVec
	Restores       *prometheus.CounterVec
	RestoreSeconds *prometheus.HistogramVec
}

// NewMetrics makes the series under namespace (e.g. "burnrate_meter") and
// registers them on reg when it is not nil; changelog names the state topic
// in the help texts.
func NewMetrics(reg prometheus.Registerer, namespace, changelog string) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: namespace + "_events_total", Help: "Input records processed, by stage.",
		}, []string{"stage"}),
		Commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: namespace + "_transactions_committed_total", Help: "Transactions committed, by stage.",
		}, []string{"stage"}),
		Aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: namespace + "_transactions_aborted_total", Help: "Transactions aborted (rebalance, fencing, errors), by stage; their input is read again.",
		}, []string{"stage"}),
		Restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: namespace + "_state_restores_total", Help: "Partition states rebuilt from " + changelog + ", by stage.",
		}, []string{"stage"}),
		RestoreSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: namespace + "_state_restore_seconds", Help: "Time to rebuild a partition's state from " + changelog + ".",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Commits, m.Aborts, m.Restores, m.RestoreSeconds)
	}
	return m
}

// Config says what a stage reads and how often it commits.
type Config struct {
	Name      string // stage name: metrics label, client id suffix
	Service   string // client id prefix, e.g. "meter"
	Group     string
	Topics    []string
	Changelog string // full topic name
	// FlushInterval is the longest a transaction stays open.
	FlushInterval  time.Duration
	SessionTimeout time.Duration
	Kafka          kclient.Config
	Log            *zap.Logger
	Now            func() time.Time
	Metrics        *Metrics
	// EagerRestore restores a partition's state as soon as it is assigned
	// (for handlers with work before the first record, see Ticker) instead
	// of when its first record arrives.
	EagerRestore bool
	// Options are extra client options (e.g. a partitioner for output
	// topics other than the changelog).
	Options []kgo.Opt
}

// Stage is one consumer group in a transactional session.
type Stage struct {
	cfg  Config
	h    Handler
	sess *kgo.GroupTransactSession
	adm  *kadm.Client
	mu   sync.Mutex

	amu      sync.Mutex
	assigned map[TP]bool // for EagerRestore
}

// Open connects the stage's session; Run starts consuming.
func Open(cfg Config, h Handler) (*Stage, error) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil, "unregistered", cfg.Changelog)
	}
	s := &Stage{cfg: cfg, h: h, assigned: map[TP]bool{}}
	for _, c := range []*prometheus.CounterVec{cfg.Metrics.Events, cfg.Metrics.Commits, cfg.Metrics.Aborts, cfg.Metrics.Restores} {
		c.WithLabelValues(cfg.Name) // at 0 from the start, for rate() and alerts
	}
	id := make([]byte, 6)
	rand.Read(id)
	host, _ := os.Hostname()
	txnID := fmt.Sprintf("%s-%s-%s", cfg.Group, host, hex.EncodeToString(id))
	opts := append([]kgo.Opt{
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(30 * time.Second),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(cfg.SessionTimeout/3, 3*time.Second)),
		kgo.RecordPartitioner(changelogPartitioner{changelog: cfg.Changelog}),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.revoked),
		kgo.OnPartitionsAssigned(s.assign),
		kgo.ProducerLinger(5 * time.Millisecond),
	}, cfg.Options...)
	sess, err := kclient.NewGroupTransactSession(cfg.Kafka, cfg.Service+"-"+cfg.Name, opts...)
	if err != nil {
		return nil, err
	}
	s.sess = sess
	s.adm = kadm.NewClient(sess.Client())
	return s, nil
}

// Close leaves the group; Run closes it too.
func (s *Stage) Close() { s.sess.Close() }

// Locked runs fn with the handler lock held, for readers outside the
// stage (an admin API).
func (s *Stage) Locked(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

func (s *Stage) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.amu.Lock()
	defer s.amu.Unlock()
	for topic, ids := range lost {
		for _, id := range ids {
			t := TP{topic, id}
			s.h.Drop(&t)
			delete(s.assigned, t)
		}
	}
}

func (s *Stage) assign(_ context.Context, _ *kgo.Client, got map[string][]int32) {
	s.amu.Lock()
	defer s.amu.Unlock()
	for topic, ids := range got {
		for _, id := range ids {
			s.assigned[TP{topic, id}] = true
		}
	}
}

// restoreAssigned restores every assigned partition not restored yet.
func (s *Stage) restoreAssigned(ctx context.Context) error {
	s.amu.Lock()
	var todo []TP
	for t := range s.assigned {
		todo = append(todo, t)
	}
	s.amu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range todo {
		if !s.h.Has(t) {
			if err := s.restore(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run polls, processes and commits a transaction at least every
// FlushInterval while there is input, until ctx is done.
func (s *Stage) Run(ctx context.Context) error {
	defer s.sess.Close()
	log := s.cfg.Log.With(zap.String("stage", s.cfg.Name))
	ticker, _ := s.h.(Ticker)
	inTxn := false
	lastFlush := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval/2)
		fetches := s.sess.PollRecords(pctx, 10000)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
			}
		})
		if s.cfg.EagerRestore && !inTxn {
			if err := s.restoreAssigned(ctx); err != nil && ctx.Err() == nil {
				log.Warn("state restore failed; trying again", zap.Error(err))
			}
		}
		now := s.cfg.Now()
		due := false
		if ticker != nil {
			s.mu.Lock()
			due = ticker.Due(now)
			s.mu.Unlock()
		}
		if (!fetches.Empty() || due) && !inTxn {
			if err := s.sess.Begin(); err != nil {
				return fmt.Errorf("%s %s: begin transaction: %w", s.cfg.Service, s.cfg.Name, err)
			}
			inTxn = true
		}
		var restoreErr error
		s.mu.Lock()
		fetches.EachPartition(func(f kgo.FetchTopicPartition) {
			if restoreErr != nil || len(f.Records) == 0 {
				return
			}
			t := TP{f.Topic, f.Partition}
			if !s.h.Has(t) {
				if restoreErr = s.restore(ctx, t); restoreErr != nil {
					return
				}
			}
			for _, r := range f.Records {
				s.h.Process(r, now)
			}
			s.cfg.Metrics.Events.WithLabelValues(s.cfg.Name).Add(float64(len(f.Records)))
		})
		s.mu.Unlock()
		done := ctx.Err() != nil
		if restoreErr != nil {
			log.Warn("state restore failed; aborting the transaction to read again", zap.Error(restoreErr))
		}
		if inTxn && (restoreErr != nil || done || due || time.Since(lastFlush) >= s.cfg.FlushInterval) {
			s.commit(ctx, restoreErr == nil, log)
			inTxn = false
			lastFlush = time.Now()
		}
		if done {
			return nil
		}
	}
}

// commit produces the flush and ends the transaction. Whatever did not
// commit is forgotten and read again from the committed offsets.
func (s *Stage) commit(ctx context.Context, want bool, log *zap.Logger) {
	s.mu.Lock()
	recs := s.h.Flush(s.cfg.Now())
	s.mu.Unlock()
	var (
		pmu     sync.Mutex
		prodErr error
	)
	pctx := context.WithoutCancel(ctx)
	for _, r := range recs {
		s.sess.Produce(pctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				pmu.Lock()
				prodErr = err
				pmu.Unlock()
			}
		})
	}
	if err := s.sess.Client().Flush(pctx); err != nil {
		prodErr = err
	}
	try := kgo.TryCommit
	if !want || prodErr != nil {
		try = kgo.TryAbort
	}
	ectx, cancel := context.WithTimeout(pctx, 30*time.Second)
	committed, err := s.sess.End(ectx, try)
	cancel()
	ok := committed && err == nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, is := s.h.(Committer); is {
		c.Committed(ok)
	}
	if ok {
		s.cfg.Metrics.Commits.WithLabelValues(s.cfg.Name).Inc()
		return
	}
	s.cfg.Metrics.Aborts.WithLabelValues(s.cfg.Name).Inc()
	log.Warn("transaction aborted; state is restored from the changelog and records are read again",
		zap.Error(errors.Join(err, prodErr)))
	s.h.Drop(nil)
}

// restore reads a partition's changelog (committed records only, up to the
// last stable offset) into its handler state.
func (s *Stage) restore(ctx context.Context, t TP) error {
	t0 := time.Now()
	changelog := s.cfg.Changelog
	ends, err := s.adm.ListCommittedOffsets(ctx, changelog)
	if err != nil {
		return fmt.Errorf("changelog end offsets: %w", err)
	}
	end, ok := ends.Lookup(changelog, t.Partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("changelog %s has no partition %d (it needs at least as many partitions as every input topic): %v", changelog, t.Partition, end.Err)
	}
	entries := map[string][]byte{}
	prefix := s.h.Prefix(t)
	if end.Offset > 0 {
		cl, err := kclient.New(s.cfg.Kafka, s.cfg.Service+"-restore",
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{changelog: {t.Partition: kgo.NewOffset().AtStart()}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords()) // transaction markers take offsets: seeing them reaches the end
		if err != nil {
			return err
		}
		defer cl.Close()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
	read:
		for {
			fs := cl.PollFetches(rctx)
			if err := rctx.Err(); err != nil {
				return fmt.Errorf("changelog %s/%d: read to offset %d: %w", changelog, t.Partition, end.Offset, err)
			}
			for it := fs.RecordIter(); !it.Done(); {
				r := it.Next()
				if k := string(r.Key); !r.Attrs.IsControl() && strings.HasPrefix(k, prefix) {
					if r.Value == nil {
						delete(entries, k[len(prefix):])
					} else {
						entries[k[len(prefix):]] = r.Value
					}
				}
				if r.Offset >= end.Offset-1 {
					break read
				}
			}
		}
	}
	s.h.Restore(t, entries)
	s.cfg.Metrics.Restores.WithLabelValues(s.cfg.Name).Inc()
	s.cfg.Metrics.RestoreSeconds.WithLabelValues(s.cfg.Name).Observe(time.Since(t0).Seconds())
	return nil
}

// changelogPartitioner writes changelog records to the partition they name
// (the input partition) and hashes keys like Kafka's default elsewhere.
type changelogPartitioner struct{ changelog string }

func (c changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == c.changelog {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return kgo.StickyKeyPartitioner(nil).ForTopic(topic)
}

// ChangelogRecord makes a changelog record for input partition partition
// (nil value: a delete).
func ChangelogRecord(topic string, partition int32, key string, v any) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key)}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("kstage: changelog value for %s: %v", key, err)) // plain structs: cannot fail
		}
		r.Value = b
	}
	return r
}
