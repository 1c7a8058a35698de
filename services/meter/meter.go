package meter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/kstage"
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
	base := kstage.Config{Service: "meter", Changelog: names.MeterState(), FlushInterval: cfg.FlushInterval,
		SessionTimeout: cfg.SessionTimeout, Kafka: deps.Kafka, Log: deps.Log, Now: deps.Now, Metrics: m.stage}
	spendCfg, detectCfg := base, base
	spendCfg.Name, spendCfg.Group, spendCfg.Topics = "spend", cfg.Group, []string{names.Usage(), names.GPU()}
	detectCfg.Name, detectCfg.Group, detectCfg.Topics = "anomalies", cfg.Group+"-anomalies", []string{names.Spend()}
	var stages []*kstage.Stage
	for _, c := range []struct {
		cfg kstage.Config
		h   kstage.Handler
	}{{spendCfg, spend}, {detectCfg, detect}} {
		st, err := kstage.Open(c.cfg, c.h)
		if err != nil {
			for _, o := range stages {
				o.Close()
			}
			return fmt.Errorf("meter: %w", err)
		}
		stages = append(stages, st)
	}
	errs := make(chan error, len(stages))
	for _, s := range stages {
		go func() { errs <- s.Run(ctx) }()
	}
	var first error
	for range stages {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

type tp = kstage.TP

func changelogRecord(topic string, partition int32, key string, v any) *kgo.Record {
	return kstage.ChangelogRecord(topic, partition, key, v)
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

func (h *spendHandler) Prefix(t tp) string {
	return "spend/" + h.short(t.Topic) + "/" + strconv.Itoa(int(t.Partition)) + "/"
}

func (h *spendHandler) Has(t tp) bool { _, ok := h.parts[t]; return ok }

func (h *spendHandler) Drop(t *tp) {
	if t == nil {
		clear(h.parts)
		return
	}
	delete(h.parts, *t)
}

func (h *spendHandler) Restore(t tp, entries map[string][]byte) {
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

func (h *spendHandler) Process(r *kgo.Record, _ time.Time) {
	t := tp{Topic: r.Topic, Partition: r.Partition}
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
		h.subj = h.cache.subjects(h.subj[:0], &h.u, h.cfg.Combinations, h.cfg.TagKeys)
		late = p.addUsage(&h.u, r.Offset, h.cfg, h.subj)
	}
	if late {
		h.m.late.WithLabelValues("spend").Inc()
	}
}

func (h *spendHandler) Flush(now time.Time) []*kgo.Record {
	var out []*kgo.Record
	changelog := h.names.MeterState()
	runs := 0
	for t, p := range h.parts {
		for _, s := range p.flush(t.Topic, t.Partition, now.UTC()) {
			out = append(out, eventRecord(h.names.Spend(), s.Subject, s))
		}
		for _, a := range p.anomal {
			out = append(out, eventRecord(h.names.Anomalies(), a.Subject, a))
			h.m.anomalies.WithLabelValues(a.Metric).Inc()
		}
		p.anomal = nil
		prefix := h.Prefix(t)
		for _, id := range p.expireRuns(h.cfg.RunIdleTTL) {
			out = append(out, changelogRecord(changelog, t.Partition, prefix+"run/"+id, nil))
			delete(p.dirtyRuns, id)
		}
		for id := range p.dirtyRuns {
			out = append(out, changelogRecord(changelog, t.Partition, prefix+"run/"+id, p.runs[id]))
		}
		for id := range p.dirtyGPUs {
			out = append(out, changelogRecord(changelog, t.Partition, prefix+"gpu/"+id, p.gpus[id]))
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

func (h *detectHandler) Prefix(t tp) string {
	return "anomalies/" + strconv.Itoa(int(t.Partition)) + "/"
}

func (h *detectHandler) Has(t tp) bool { _, ok := h.parts[t.Partition]; return ok }

func (h *detectHandler) Drop(t *tp) {
	if t == nil {
		clear(h.parts)
		return
	}
	delete(h.parts, t.Partition)
}

func (h *detectHandler) Restore(t tp, entries map[string][]byte) {
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
	h.parts[t.Partition] = p
}

func (h *detectHandler) Process(r *kgo.Record, now time.Time) {
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

func (h *detectHandler) Flush(now time.Time) []*kgo.Record {
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
		prefix := h.Prefix(tp{Partition: id})
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
