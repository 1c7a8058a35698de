package gpuagent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Deps are what Run needs from outside.
type Deps struct {
	Kafka      kclient.Config
	Pricer     *prices.Pricer
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// Open opens a source by name; nil uses the real ones.
	Open func(name string) (Source, error)
}

// Run samples the node's GPUs every interval and produces gpu.v1 until ctx
// is done. No source available is not an error: it is logged and tried
// again every retry_interval.
func Run(ctx context.Context, cfg Config, d Deps) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gpu-agent config: %w", err)
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Open == nil {
		d.Open = cfg.open
	}
	names := ktopics.WithPrefix(d.Kafka.TopicPrefix)
	cl, err := kclient.New(d.Kafka, "gpu-agent", kgo.DefaultProduceTopic(names.GPU()), kgo.ProducerLinger(50*time.Millisecond))
	if err != nil {
		return fmt.Errorf("gpu-agent: %w", err)
	}
	defer cl.Close()
	a := &agent{cfg: cfg, d: d, m: newMetrics(d.Registerer), last: map[string]int64{}, unpriced: map[string]bool{}}
	defer a.closeSource()
	if cfg.KubeletSocket != "" {
		k, err := dialKubelet(cfg.KubeletSocket)
		if err != nil {
			return fmt.Errorf("gpu-agent: %w", err)
		}
		defer k.close()
		a.kubelet = k
	}
	period := time.Duration(float64(cfg.Interval) / cfg.TimeScale)
	tick := time.NewTicker(period)
	defer tick.Stop()
	eventTime := d.Now().UTC()
	var nextTry time.Time
	for {
		if a.src == nil && !d.Now().Before(nextTry) {
			a.pick()
			nextTry = d.Now().Add(cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return cl.Flush(fctx)
		case <-tick.C:
		}
		if cfg.TimeScale > 1 {
			eventTime = eventTime.Add(cfg.Interval)
		} else {
			eventTime = d.Now().UTC()
		}
		if a.src == nil {
			continue
		}
		samples, err := a.sample(ctx, eventTime)
		if err != nil {
			a.m.readErrors.Inc()
			d.Log.Warn("GPU read failed", zap.String("source", string(a.src.Kind())), zap.Error(err))
			if errors.Is(err, ErrUnavailable) {
				a.closeSource()
				nextTry = time.Time{}
			}
			continue
		}
		for _, s := range samples {
			b, err := events.Encode(&s)
			if err != nil {
				d.Log.Error("encode gpu.v1", zap.Error(err))
				continue
			}
			cl.Produce(ctx, &kgo.Record{Key: []byte(s.GPUUUID), Value: b}, func(_ *kgo.Record, err error) {
				if err != nil && !errors.Is(err, context.Canceled) {
					a.m.produceErrors.Inc()
					d.Log.Warn("gpu.v1 produce failed", zap.Error(err))
				}
			})
			a.m.samples.WithLabelValues(string(s.Source)).Inc()
			a.m.cost.Add(float64(s.CostNanoUSD))
			a.m.idleCost.Add(float64(s.IdleCostNanoUSD))
		}
	}
}

type agent struct {
	cfg      Config
	d        Deps
	m        *metrics
	src      Source
	last     map[string]int64 // GPU key → energy counter at the last reading (mJ)
	unpriced map[string]bool
	kubelet  *kubelet // nil: no pod-resources socket
	kubeErr  bool     // the last List failed (logged once)
}

func (a *agent) closeSource() {
	if a.src != nil {
		a.src.Close()
		a.m.up.WithLabelValues(string(a.src.Kind())).Set(0)
		a.src = nil
	}
}

// pick opens the first source that works, logging why the others did not.
func (a *agent) pick() {
	var why []string
	for _, name := range a.cfg.order() {
		s, err := a.d.Open(name)
		if err != nil {
			a.d.Log.Warn("GPU source unavailable; trying the next", zap.String("source", name), zap.Error(err))
			why = append(why, err.Error())
			continue
		}
		a.src = s
		a.m.up.WithLabelValues(string(s.Kind())).Set(1)
		a.d.Log.Info("GPU source", zap.String("source", name))
		return
	}
	a.d.Log.Error("no GPU source available; running without one and trying again", zap.Duration("retry_interval", a.cfg.RetryInterval),
		zap.Strings("sources", a.cfg.order()), zap.String("why", strings.Join(why, "; ")))
}

// open opens the real source called name; the exporter is probed once so
// that one not answering counts as unavailable.
func (c Config) open(name string) (Source, error) {
	switch name {
	case "dcgm":
		return OpenDCGM(DCGMConfig{Address: c.DCGMAddress})
	case "nvml":
		return OpenNVML()
	case "dcgm-exporter":
		s := NewExporterSource(c.ExporterURL, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.Read(ctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown GPU source %q", name)
}

// sample reads the source and prices one interval ending at t.
func (a *agent) sample(ctx context.Context, t time.Time) ([]events.GPUSample, error) {
	rs, err := a.src.Read(ctx)
	if err != nil && (len(rs) == 0 || errors.Is(err, ErrUnavailable)) {
		return nil, err
	}
	if err != nil { // some GPUs could not be read: sample the others
		a.m.readErrors.Inc()
		a.d.Log.Warn("some GPUs not read this interval", zap.Int("read", len(rs)), zap.Error(err))
	}
	if a.kubelet != nil {
		owners, err := a.kubelet.owners(ctx)
		if err != nil {
			if !a.kubeErr {
				a.d.Log.Warn("GPU owners unknown this interval: kubelet pod-resources failed", zap.Error(err))
			}
		} else {
			attach(rs, owners)
		}
		a.kubeErr = err != nil
	}
	cat := a.d.Pricer.Catalog()
	node := a.cfg.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	out := make([]events.GPUSample, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		n := node
		if a.cfg.Node == "" && r.Hostname != "" {
			n = r.Hostname
		}
		s := a.price(r, t, n, cat)
		out = append(out, s)
	}
	return out, nil
}

// price turns one reading into a gpu.v1 event for an interval ending at t.
func (a *agent) price(r *Reading, t time.Time, node string, cat *prices.Catalog) events.GPUSample {
	ms := a.cfg.Interval.Milliseconds()
	s := events.GPUSample{Schema: events.SchemaGPU, ID: events.NewID(t), OccurredAt: t, Node: node, GPUUUID: r.UUID,
		GPUIndex: r.Index, GPUModel: r.Model, MIGProfile: r.MIGProfile, MIGInstance: r.MIGInstance,
		Attribution: a.attribute(r), IntervalMS: ms,
		GPUUtil: known(r.Util), GrEngineActive: known(r.GrEngineActive), SMActive: known(r.SMActive),
		TensorActive: known(r.TensorActive), DRAMActive: known(r.DRAMActive),
		FBUsedBytes: max(r.FBUsedBytes, 0), FBFreeBytes: max(r.FBFreeBytes, 0), PowerWatts: max(r.PowerWatts, 0),
		PriceVersion: cat.Version(), Source: a.src.Kind()}
	if s.GPUModel == "" {
		s.GPUModel = "unknown"
	}
	s.EnergyJoules = s.PowerWatts * float64(ms) / 1000
	if r.EnergyMillijoules >= 0 {
		if prev, ok := a.last[r.UUID]; ok && r.EnergyMillijoules >= prev {
			s.EnergyJoules = float64(r.EnergyMillijoules-prev) / 1000
		}
		a.last[r.UUID] = r.EnergyMillijoules
	}
	hourly, ok := cat.GPUHourly(r.Model, a.cfg.InstanceType)
	if !ok {
		if !a.unpriced[r.Model] {
			a.unpriced[r.Model] = true
			a.d.Log.Warn("no price for this GPU model: its cost is 0 (add it to prices.override_file gpus)", zap.String("gpu_model", r.Model))
		}
		return s
	}
	if r.MIGProfile != "" {
		hourly = migShare(hourly, r.MIGProfile, r.Model)
	}
	s.CostNanoUSD = prices.GPUCost(hourly, ms)
	s.IdleCostNanoUSD = IdleCost(s.CostNanoUSD, s.GrEngineActive, s.GPUUtil, s.Attribution.Team == IdleTeam)
	return s
}

// IdleCost is the part of cost spent idle: cost × (1 − GR engine active),
// falling back to GPU utilisation when the GR engine is not reported (0);
// all of it for a GPU no workload holds. Rounded half away from zero.
func IdleCost(cost int64, grEngineActive, util float64, unallocated bool) int64 {
	if unallocated {
		return cost
	}
	busy := grEngineActive
	if busy <= 0 {
		busy = util
	}
	return int64(math.Round(float64(cost) * (1 - min(max(busy, 0), 1))))
}

// migShare prices a MIG instance by its compute slices: "3g.40gb" on a GPU
// of 7 slices is 3/7 of the GPU (A30s have 4).
func migShare(hourly int64, profile, model string) int64 {
	g, _, ok := strings.Cut(profile, "g.")
	n, err := strconv.Atoi(g)
	if !ok || err != nil || n <= 0 {
		return hourly
	}
	slices := int64(7)
	if strings.Contains(model, "A30") {
		slices = 4
	}
	return hourly * int64(min(n, int(slices))) / slices
}

// attribute applies the rules: first match wins; else the namespace is the
// team; a GPU no workload holds goes to IdleTeam.
func (a *agent) attribute(r *Reading) events.Workload {
	w := events.Workload{Namespace: r.Namespace, Pod: r.Pod, Container: r.Container}
	if r.Pod == "" && r.Namespace == "" {
		w.Team = IdleTeam
		return w
	}
	for _, rule := range a.cfg.Attribution {
		if rule.matches(r) {
			w.Team, w.App = rule.Team, rule.App
			return w
		}
	}
	w.Team = r.Namespace
	return w
}

func (rule Rule) matches(r *Reading) bool {
	if rule.Namespace != "" {
		if ok, _ := path.Match(rule.Namespace, r.Namespace); !ok {
			return false
		}
	}
	if rule.Pod != "" {
		if ok, _ := path.Match(rule.Pod, r.Pod); !ok {
			return false
		}
	}
	for k, v := range rule.Labels {
		if r.Labels[k] != v {
			return false
		}
	}
	return true
}

// known maps an unreported fraction (negative) to 0.
func known(f float64) float64 {
	if f < 0 {
		return 0
	}
	return min(f, 1)
}

type metrics struct {
	samples       *prometheus.CounterVec
	up            *prometheus.GaugeVec
	readErrors    prometheus.Counter
	produceErrors prometheus.Counter
	cost          prometheus.Counter
	idleCost      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burnrate_gpuagent_samples_total",
			Help: "gpu.v1 events produced, by source."}, []string{"source"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "burnrate_gpuagent_source_up",
			Help: "1 for the GPU source in use."}, []string{"source"}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_gpuagent_read_errors_total",
			Help: "Failed reads of the GPU source."}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_gpuagent_produce_errors_total",
			Help: "gpu.v1 records Kafka did not take."}),
		cost: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_gpuagent_cost_nano_usd_total",
			Help: "GPU cost sampled, nano-USD."}),
		idleCost: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_gpuagent_idle_cost_nano_usd_total",
			Help: "The idle part of the GPU cost sampled, nano-USD."}),
	}
	for _, s := range []events.GPUSource{events.GPUSourceDCGM, events.GPUSourceDCGMExporter, events.GPUSourceNVML} {
		m.samples.WithLabelValues(string(s)) // at 0 from the start, for rate() and alerts
		m.up.WithLabelValues(string(s))
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.up, m.readErrors, m.produceErrors, m.cost, m.idleCost)
	}
	return m
}
