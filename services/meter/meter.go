package meter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Deps are what Run needs from outside.
type Deps struct {
	Kafka      kclient.Config
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Run runs both stages until ctx is done: the spend stage (usage.v1 and
// gpu.v1 → spend.v1, agent-run stats, GPU idle anomalies) and the anomaly
// stage (spend.v1 → anomalies.v1). Each is a consumer group whose output,
// changelog and consumed offsets are committed in one Kafka transaction.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("meter config: %w", err)
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m := newMetrics(deps.Registerer)
	names := ktopics.WithPrefix(deps.Kafka.TopicPrefix)
	spend := &spendHandler{cfg: &cfg, names: names, m: m, parts: map[tp]*spendPartition{}}
	detect := &detectHandler{cfg: &cfg, names: names, m: m, parts: map[int32]*detectPartition{}}
	stages := []*stage{
		{name: "spend", group: cfg.Group, topics: []string{names.Usage(), names.GPU()}, h: spend},
		{name: "anomalies", group: cfg.Group + "-anomalies", topics: []string{names.Spend()}, h: detect},
	}
	errs := make(chan error, len(stages))
	for _, s := range stages {
		s.cfg, s.deps, s.names, s.m = &cfg, deps, names, m
		if err := s.open(); err != nil {
			for _, o := range stages {
				o.close()
			}
			return err
		}
	}
	for _, s := range stages {
		go func() { errs <- s.run(ctx) }()
	}
	var first error
	for range stages {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

type tp struct {
	topic     string
	partition int32
}

// handler is a stage's processing; the stage owns Kafka and transactions.
// Every method is called with the stage's lock held.
type handler interface {
	// process handles one record of a partition whose state is restored.
	process(r *kgo.Record, now time.Time)
	// flush returns the records to commit now: output and changelog.
	flush(now time.Time) []*kgo.Record
	// restore rebuilds a partition's state from its changelog entries.
	restore(t tp, entries map[string][]byte)
	// drop forgets partitions (revoked, or every one after an abort).
	drop(t *tp)
	// prefix is the changelog key prefix of a partition's state.
	prefix(t tp) string
	has(t tp) bool
}

// stage is one consumer group in a transactional session.
type stage struct {
	name, group string
	topics      []string
	h           handler
	cfg         *Config
	deps        Deps
	names       ktopics.Names
	m           *metrics

	sess *kgo.GroupTransactSession
	adm  *kadm.Client
	mu   sync.Mutex
}

func (s *stage) open() error {
	id := make([]byte, 6)
	rand.Read(id)
	host, _ := os.Hostname()
	txnID := fmt.Sprintf("%s-%s-%s", s.group, host, hex.EncodeToString(id))
	sess, err := kclient.NewGroupTransactSession(s.deps.Kafka, "meter-"+s.name,
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(30*time.Second),
		kgo.ConsumerGroup(s.group),
		kgo.ConsumeTopics(s.topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(s.cfg.SessionTimeout/3, 3*time.Second)),
		kgo.RecordPartitioner(changelogPartitioner{changelog: s.names.MeterState()}),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.revoked),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		return err
	}
	s.sess = sess
	s.adm = kadm.NewClient(sess.Client())
	return nil
}

func (s *stage) close() {
	if s.sess != nil {
		s.sess.Close()
	}
}

func (s *stage) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, ids := range lost {
		for _, id := range ids {
			t := tp{topic, id}
			s.h.drop(&t)
		}
	}
}

// run polls, processes and commits a transaction every FlushInterval.
func (s *stage) run(ctx context.Context) error {
	defer s.sess.Close()
	log := s.deps.Log.With(zap.String("stage", s.name))
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
		if !fetches.Empty() && !inTxn {
			if err := s.sess.Begin(); err != nil {
				return fmt.Errorf("meter %s: begin transaction: %w", s.name, err)
			}
			inTxn = true
		}
		now := s.deps.Now()
		var restoreErr error
		s.mu.Lock()
		fetches.EachPartition(func(f kgo.FetchTopicPartition) {
			if restoreErr != nil || len(f.Records) == 0 {
				return
			}
			t := tp{f.Topic, f.Partition}
			if !s.h.has(t) {
				if restoreErr = s.restore(ctx, t); restoreErr != nil {
					return
				}
			}
			for _, r := range f.Records {
				s.h.process(r, now)
			}
			s.m.events.WithLabelValues(s.name).Add(float64(len(f.Records)))
		})
		s.mu.Unlock()
		done := ctx.Err() != nil
		if restoreErr != nil {
			log.Warn("state restore failed; aborting the transaction to read again", zap.Error(restoreErr))
		}
		if inTxn && (restoreErr != nil || done || time.Since(lastFlush) >= s.cfg.FlushInterval) {
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
func (s *stage) commit(ctx context.Context, want bool, log *zap.Logger) {
	s.mu.Lock()
	recs := s.h.flush(s.deps.Now())
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
	if committed && err == nil {
		s.m.commits.WithLabelValues(s.name).Inc()
		return
	}
	s.m.aborts.WithLabelValues(s.name).Inc()
	log.Warn("transaction aborted; state is restored from the changelog and records are read again",
		zap.Error(errors.Join(err, prodErr)))
	s.mu.Lock()
	s.h.drop(nil)
	s.mu.Unlock()
}

// restore reads a partition's changelog (committed records only, up to the
// last stable offset) into its handler state.
func (s *stage) restore(ctx context.Context, t tp) error {
	t0 := time.Now()
	changelog := s.names.MeterState()
	ends, err := s.adm.ListCommittedOffsets(ctx, changelog)
	if err != nil {
		return fmt.Errorf("changelog end offsets: %w", err)
	}
	end, ok := ends.Lookup(changelog, t.partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("changelog %s has no partition %d (it needs at least as many partitions as every input topic): %v", changelog, t.partition, end.Err)
	}
	entries := map[string][]byte{}
	prefix := s.h.prefix(t)
	if end.Offset > 0 {
		cl, err := kclient.New(s.deps.Kafka, "meter-restore",
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{changelog: {t.partition: kgo.NewOffset().AtStart()}}),
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
				return fmt.Errorf("changelog %s/%d: read to offset %d: %w", changelog, t.partition, end.Offset, err)
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
	s.h.restore(t, entries)
	s.m.restores.WithLabelValues(s.name).Inc()
	s.m.restoreSeconds.WithLabelValues(s.name).Observe(time.Since(t0).Seconds())
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

// changelogRecord makes a changelog record (nil value: a delete).
func changelogRecord(topic string, partition int32, key string, v any) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key)}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("meter: changelog value for %s: %v", key, err)) // plain structs: cannot fail
		}
		r.Value = b
	}
	return r
}

func eventRecord(topic, key string, e events.Event) *kgo.Record {
	b, err := events.Encode(e)
	if err != nil {
		panic(fmt.Sprintf("meter: encode %s: %v", e.SchemaName(), err)) // built here: cannot fail
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

// spendHandler is the spend stage.
type spendHandler struct {
	cfg   *Config
	names ktopics.Names
	m     *metrics
	parts map[tp]*spendPartition
	subj  []*subject
	cache subjectCache
	u     events.Usage
	dec   events.UsageDecoder
	g     events.GPUSample
}

func (h *spendHandler) short(topic string) string {
	if topic == h.names.GPU() {
		return "gpu"
	}
	return "usage"
}

func (h *spendHandler) prefix(t tp) string {
	return "spend/" + h.short(t.topic) + "/" + strconv.Itoa(int(t.partition)) + "/"
}

func (h *spendHandler) has(t tp) bool { _, ok := h.parts[t]; return ok }

func (h *spendHandler) drop(t *tp) {
	if t == nil {
		clear(h.parts)
		return
	}
	delete(h.parts, *t)
}

func (h *spendHandler) restore(t tp, entries map[string][]byte) {
	p := newSpendPartition()
	for k, v := range entries {
		switch kind, id, _ := strings.Cut(k, "/"); kind {
		case "run":
			var r runState
			if json.Unmarshal(v, &r) == nil {
				p.runs[id] = &r
				if r.Stats.LastAt.After(p.maxEvent) {
					p.maxEvent = r.Stats.LastAt
				}
			}
		case "gpu":
			var g gpuIdle
			if json.Unmarshal(v, &g) == nil {
				p.gpus[id] = &g
			}
		}
	}
	h.parts[t] = p
}

func (h *spendHandler) process(r *kgo.Record, _ time.Time) {
	t := tp{r.Topic, r.Partition}
	p := h.parts[t]
	var late bool
	if r.Topic == h.names.GPU() {
		if err := events.DecodeGPUSampleInto(r.Value, &h.g); err != nil || h.g.Validate() != nil {
			h.m.invalid.WithLabelValues("gpu").Inc()
			return
		}
		late = p.addGPU(&h.g, r.Offset, h.cfg, &h.cache)
	} else {
		if err := h.dec.Decode(r.Value, &h.u); err != nil || h.u.Validate() != nil {
			h.m.invalid.WithLabelValues("usage").Inc()
			return
		}
		h.subj = h.cache.subjects(h.subj[:0], &h.u, h.cfg.Combinations)
		late = p.addUsage(&h.u, r.Offset, h.cfg, h.subj)
	}
	if late {
		h.m.late.WithLabelValues("spend").Inc()
	}
}

func (h *spendHandler) flush(now time.Time) []*kgo.Record {
	var out []*kgo.Record
	changelog := h.names.MeterState()
	runs := 0
	for t, p := range h.parts {
		for _, s := range p.flush(t.topic, t.partition, now.UTC()) {
			out = append(out, eventRecord(h.names.Spend(), s.Subject, s))
		}
		for _, a := range p.anomal {
			out = append(out, eventRecord(h.names.Anomalies(), a.Subject, a))
			h.m.anomalies.WithLabelValues(a.Metric).Inc()
		}
		p.anomal = nil
		prefix := h.prefix(t)
		for _, id := range p.expireRuns(h.cfg.RunIdleTTL) {
			out = append(out, changelogRecord(changelog, t.partition, prefix+"run/"+id, nil))
			delete(p.dirtyRuns, id)
		}
		for id := range p.dirtyRuns {
			out = append(out, changelogRecord(changelog, t.partition, prefix+"run/"+id, p.runs[id]))
		}
		for id := range p.dirtyGPUs {
			out = append(out, changelogRecord(changelog, t.partition, prefix+"gpu/"+id, p.gpus[id]))
		}
		clear(p.dirtyRuns)
		clear(p.dirtyGPUs)
		runs += len(p.runs)
	}
	h.m.runs.Set(float64(runs))
	var newest time.Time
	for _, p := range h.parts {
		if p.maxEvent.After(newest) {
			newest = p.maxEvent
		}
	}
	if !newest.IsZero() {
		h.m.watermarkLag.Set(now.Sub(newest).Seconds())
	}
	return out
}

// detectHandler is the anomaly stage.
type detectHandler struct {
	cfg   *Config
	names ktopics.Names
	m     *metrics
	parts map[int32]*detectPartition
	s     events.Spend
}

func (h *detectHandler) prefix(t tp) string {
	return "anomalies/" + strconv.Itoa(int(t.partition)) + "/"
}

func (h *detectHandler) has(t tp) bool { _, ok := h.parts[t.partition]; return ok }

func (h *detectHandler) drop(t *tp) {
	if t == nil {
		clear(h.parts)
		return
	}
	delete(h.parts, t.partition)
}

func (h *detectHandler) restore(t tp, entries map[string][]byte) {
	p := newDetectPartition()
	for subject, v := range entries {
		var st subjectState
		if json.Unmarshal(v, &st) == nil {
			if st.Open == nil {
				st.Open = map[int64]*agg{}
			}
			if st.Metrics == nil {
				st.Metrics = map[string]*series{}
			}
			p.subjects[subject] = &st
			for w := range st.Open {
				p.watermark = max(p.watermark, w)
			}
		}
	}
	h.parts[t.partition] = p
}

func (h *detectHandler) process(r *kgo.Record, now time.Time) {
	if err := events.DecodeSpendInto(r.Value, &h.s); err != nil || h.s.Validate() != nil {
		h.m.invalid.WithLabelValues("spend").Inc()
		return
	}
	if h.s.Events == 0 || !watched(h.s.Subject, h.cfg.Anomaly.Subjects) {
		return
	}
	p := h.parts[r.Partition]
	if p.add(&h.s, &h.cfg.Anomaly, h.cfg.AllowedLateness, now) {
		h.m.late.WithLabelValues("anomalies").Inc()
	}
}

func (h *detectHandler) flush(now time.Time) []*kgo.Record {
	var out []*kgo.Record
	changelog := h.names.MeterState()
	open := 0
	for id, p := range h.parts {
		p.closeWindows(&h.cfg.Anomaly, h.cfg.AllowedLateness, now)
		for _, a := range p.anomalies {
			out = append(out, eventRecord(h.names.Anomalies(), a.Subject, a))
			h.m.anomalies.WithLabelValues(a.Metric).Inc()
		}
		p.anomalies = nil
		prefix := h.prefix(tp{partition: id})
		for subject := range p.dirty {
			out = append(out, changelogRecord(changelog, id, prefix+subject, p.subjects[subject]))
		}
		clear(p.dirty)
		for _, st := range p.subjects {
			open += len(st.Open)
		}
	}
	h.m.openWindows.Set(float64(open))
	return out
}
