package meter

import (
	"strings"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

// subject is a budget subject ("team=payments"). The cache hands out one
// pointer per subject, so delta lookups hash a pointer, not the string.
type subject struct {
	name string
	// last is the delta this subject got last, so a stream of events of
	// one subject skips the deltas map: valid while part, window and the
	// partition's flush generation match.
	last struct {
		part   *spendPartition
		gen    uint64
		window int64
		d      *delta
	}
}

// spendKey is one subject in one window.
type spendKey struct {
	subject *subject
	window  int64 // unix seconds of the window start
}

// delta is what one partition counted for a spendKey since the last flush.
type delta struct {
	cost, tokens, input, events, errors int64
}

// spendPartition is the spend stage's state for one input partition. The
// deltas are published and cleared at every flush (in the transaction that
// commits the offsets); runs and GPU idle counters are cumulative and go to
// the changelog.
type spendPartition struct {
	deltas    map[spendKey]*delta
	gen       uint64 // flushes so far (subject.last)
	runs      map[string]*runState
	gpus      map[string]*gpuIdle
	dirtyRuns map[string]bool // run ids changed since the last flush (for the changelog)
	dirtyGPUs map[string]bool // GPU UUIDs changed since the last flush
	maxEvent  time.Time       // newest event time seen: the watermark is this minus the allowed lateness
	first     int64           // first offset counted since the last flush (-1: none)
	last      int64
	anomal    []events.Anomaly // GPU idle anomalies waiting for the flush
}

func newSpendPartition() *spendPartition {
	return &spendPartition{
		deltas: map[spendKey]*delta{}, runs: map[string]*runState{}, gpus: map[string]*gpuIdle{},
		dirtyRuns: map[string]bool{}, dirtyGPUs: map[string]bool{}, first: -1,
	}
}

func windowOf(t time.Time) int64 { return t.Truncate(Window).Unix() }

// TagSubjectKey is the subject key of attribution tag k: "tag.region" in
// "tag.region=eu-west-1".
func TagSubjectKey(k string) string { return "tag." + k }

// subjectValue makes an attribution value safe inside "k=v,k=v".
func subjectValue(v string) string {
	if !strings.ContainsAny(v, ",=") {
		return v
	}
	return strings.NewReplacer(",", "_", "=", "_").Replace(v)
}

// usageValue returns the attribution value of key for u ("" when unset).
func usageValue(u *events.Usage, key string) string {
	a := &u.Attribution
	switch key {
	case "key":
		return a.VirtualKeyID
	case "team":
		return a.Team
	case "app":
		return a.App
	case "user":
		return a.User
	case "customer":
		return a.Customer
	case "model":
		if u.ServedModel != "" {
			return u.ServedModel
		}
		return u.RequestedModel
	case "env":
		return a.Env
	}
	return ""
}

// usageSubjects returns the names of every budget subject a usage event
// counts toward (what subjectCache.subjects and the run subject give).
func usageSubjects(dst []string, u *events.Usage, combos [][]string, tagKeys []string) []string {
	var c subjectCache
	for _, s := range c.subjects(nil, u, combos, tagKeys) {
		dst = append(dst, s.name)
	}
	if id := u.Attribution.AgentRunID; id != "" {
		dst = append(dst, runSubject(subjectValue(id)).name)
	}
	return dst
}

func runSubject(id string) *subject { return &subject{name: "agent_run=" + id} }

// maxCachedSubjects bounds a subjectCache; past it the cache starts over
// (a subject then has two pointers for a while: its deltas are published
// as two records, which add up the same).
const maxCachedSubjects = 1 << 16

// subjectCache keeps the subjects already built, so a steady stream of
// events allocates none.
type subjectCache struct {
	single map[string]map[string]*subject        // key → value → subject (keys other than subjectKeys)
	fixed  [len(subjectKeys)]map[string]*subject // subjectKeys[i] → value → subject
	combo  map[string]*subject                   // "k=v,k=v" → subject
	n      int
	buf    []byte
}

func (c *subjectCache) reset() {
	if c.n >= maxCachedSubjects || c.single == nil {
		c.single, c.combo, c.n = map[string]map[string]*subject{}, map[string]*subject{}, 0
		for i := range c.fixed {
			c.fixed[i] = map[string]*subject{}
		}
	}
}

// oneOf is one for subjectKeys[i], one map lookup instead of two.
func (c *subjectCache) oneOf(i int, v string) *subject {
	s, ok := c.fixed[i][v]
	if !ok {
		s = &subject{name: subjectKeys[i] + "=" + subjectValue(v)}
		c.fixed[i][v] = s
		c.n++
	}
	return s
}

func (c *subjectCache) one(k, v string) *subject {
	m := c.single[k]
	if m == nil {
		m = map[string]*subject{}
		c.single[k] = m
	}
	s, ok := m[v]
	if !ok {
		s = &subject{name: k + "=" + subjectValue(v)}
		m[v] = s
		c.n++
	}
	return s
}

// subjects appends every subject a usage event counts toward: each
// attribution key that is set and the configured combinations whose keys
// are all set. The agent run's subject lives with the run.
func (c *subjectCache) subjects(dst []*subject, u *events.Usage, combos [][]string, tagKeys []string) []*subject {
	c.reset()
	for i, k := range subjectKeys {
		if v := usageValue(u, k); v != "" {
			dst = append(dst, c.oneOf(i, v))
		}
	}
	for _, k := range tagKeys {
		if v := u.Attribution.Tags[k]; v != "" {
			dst = append(dst, c.one(TagSubjectKey(k), v))
		}
	}
	buf := c.buf
combos:
	for _, combo := range combos {
		buf = buf[:0]
		for i, k := range combo {
			v := usageValue(u, k)
			if v == "" {
				continue combos
			}
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, k...)
			buf = append(buf, '=')
			buf = append(buf, subjectValue(v)...)
		}
		s, ok := c.combo[string(buf)] // no allocation for the lookup
		if !ok {
			s = &subject{name: string(buf)}
			c.combo[s.name] = s
			c.n++
		}
		dst = append(dst, s)
	}
	c.buf = buf
	return dst
}

// addUsage counts one usage event. It reports whether the event was late
// (its window already closed by the watermark).
func (p *spendPartition) addUsage(u *events.Usage, offset int64, cfg *Config, subjects []*subject) (late bool) {
	p.track(offset)
	late = p.advance(u.OccurredAt, cfg.AllowedLateness)
	w := windowOf(u.OccurredAt)
	input := u.Tokens.Input + u.Tokens.CachedInput + u.Tokens.CacheWrite5m + u.Tokens.CacheWrite1h
	var errs int64
	if u.Status == events.StatusUpstreamError {
		errs = 1
	}
	add := func(s *subject) {
		d := p.delta(s, w)
		d.cost += u.Cost.TotalNanoUSD
		d.tokens += u.Tokens.Total()
		d.input += input
		d.events++
		d.errors += errs
	}
	for _, s := range subjects {
		add(s)
	}
	if id := subjectValue(u.Attribution.AgentRunID); id != "" {
		r := p.runs[id]
		if r == nil {
			r = &runState{}
			p.runs[id] = r
		}
		if r.subject == nil {
			r.subject = runSubject(id)
		}
		add(r.subject)
		r.add(u)
		p.dirtyRuns[id] = true
	}
	return late
}

// delta returns the subject's delta in window w, creating it.
func (p *spendPartition) delta(s *subject, w int64) *delta {
	if l := &s.last; l.part == p && l.gen == p.gen && l.window == w {
		return l.d
	}
	k := spendKey{s, w}
	d := p.deltas[k]
	if d == nil {
		d = &delta{}
		p.deltas[k] = d
	}
	s.last.part, s.last.gen, s.last.window, s.last.d = p, p.gen, w, d
	return d
}

// addGPU counts one GPU sample toward team= and app= (when configured) and
// feeds the GPU's idle detector.
func (p *spendPartition) addGPU(g *events.GPUSample, offset int64, cfg *Config, c *subjectCache) (late bool) {
	p.track(offset)
	late = p.advance(g.OccurredAt, cfg.AllowedLateness)
	if cfg.GPUSpend {
		w := windowOf(g.OccurredAt)
		c.reset()
		for _, kv := range [2][2]string{{"team", g.Attribution.Team}, {"app", g.Attribution.App}} {
			if kv[1] == "" {
				continue
			}
			d := p.delta(c.one(kv[0], kv[1]), w)
			d.cost += g.CostNanoUSD
			d.events++
		}
	}
	st := p.gpus[g.GPUUUID]
	if st == nil {
		st = &gpuIdle{}
		p.gpus[g.GPUUUID] = st
	}
	if a, ok := st.add(g, cfg.Anomaly); ok {
		p.anomal = append(p.anomal, a)
	}
	p.dirtyGPUs[g.GPUUUID] = true
	return late
}

func (p *spendPartition) track(offset int64) {
	if p.first < 0 {
		p.first = offset
	}
	p.last = offset
}

// advance moves the watermark and reports whether t is behind it.
func (p *spendPartition) advance(t time.Time, lateness time.Duration) bool {
	if t.After(p.maxEvent) {
		p.maxEvent = t
	}
	watermark := p.maxEvent.Add(-lateness)
	return !t.Truncate(Window).Add(Window).After(watermark)
}

// expireRuns forgets runs idle for ttl of event time.
func (p *spendPartition) expireRuns(ttl time.Duration) (expired []string) {
	for id, r := range p.runs {
		if p.maxEvent.Sub(r.Stats.LastAt) > ttl {
			delete(p.runs, id)
			expired = append(expired, id)
		}
	}
	return expired
}

// runState is one agent run, cumulative.
type runState struct {
	subject *subject         // agent_run=<id>, built once
	Stats   events.RunStats  `json:"stats"`
	Prompts map[string]int64 `json:"prompts,omitempty"` // calls per prompt fingerprint (at most maxPrompts)
	// PerSecond counts calls by event-time second, for the 60 seconds up to
	// Second (the newest second seen), indexed by second mod 60.
	PerSecond [60]int64 `json:"per_second"`
	Second    int64     `json:"second"`
}

const maxPrompts = 256

func (r *runState) add(u *events.Usage) {
	s := &r.Stats
	t := u.OccurredAt
	if s.Calls == 0 || t.Before(s.FirstAt) {
		s.FirstAt = t
	}
	if t.After(s.LastAt) {
		s.LastAt = t
	}
	s.Calls++
	s.Tokens += u.Tokens.Total()
	s.CostNanoUSD += u.Cost.TotalNanoUSD
	s.MaxStep = max(s.MaxStep, u.Attribution.AgentStep)
	if fp := u.PromptFingerprint; fp != "" {
		if r.Prompts == nil {
			r.Prompts = map[string]int64{}
		}
		if _, ok := r.Prompts[fp]; ok || len(r.Prompts) < maxPrompts {
			r.Prompts[fp]++
			if n := r.Prompts[fp]; n > s.MaxRepeats {
				s.MaxRepeats, s.RepeatedPrompt = n, fp
			}
		}
	}
	sec := t.Unix()
	if sec > r.Second {
		for x := max(r.Second+1, sec-59); x <= sec; x++ {
			r.PerSecond[x%60] = 0
		}
		r.Second = sec
	}
	if sec > r.Second-60 {
		r.PerSecond[sec%60]++
	}
	s.CallsLastMin = 0
	for _, n := range r.PerSecond {
		s.CallsLastMin += n
	}
}

// gpuIdle follows one GPU minute by minute.
type gpuIdle struct {
	Minute      int64   `json:"minute"` // unix seconds of the minute being summed
	IdleMS      float64 `json:"idle_ms"`
	TotalMS     float64 `json:"total_ms"`
	Consecutive int     `json:"consecutive"` // idle minutes in a row before Minute
	Fired       bool    `json:"fired"`
	Team        string  `json:"team,omitempty"`
	Node        string  `json:"node,omitempty"`
}

// add sums a sample into its minute; when a later minute starts, the
// finished one is judged. It returns an anomaly the first time a GPU has
// been idle for GPUIdleMinutes minutes in a row.
func (g *gpuIdle) add(s *events.GPUSample, cfg Anomaly) (events.Anomaly, bool) {
	m := windowOf(s.OccurredAt)
	var out events.Anomaly
	fired := false
	if m > g.Minute && g.TotalMS > 0 {
		frac := g.IdleMS / g.TotalMS
		if frac >= cfg.GPUIdleFraction && (m-g.Minute) <= int64(Window.Seconds())*2 {
			g.Consecutive++
		} else if frac >= cfg.GPUIdleFraction {
			g.Consecutive = 1 // a gap in samples restarts the count
		} else {
			g.Consecutive, g.Fired = 0, false
		}
		if g.Consecutive >= cfg.GPUIdleMinutes && !g.Fired {
			g.Fired, fired = true, true
			end := time.Unix(g.Minute, 0).UTC().Add(Window)
			out = events.Anomaly{
				Schema: events.SchemaAnomaly, ID: events.NewID(end), Subject: "gpu=" + subjectValue(s.GPUUUID),
				Metric: "gpu_idle_fraction", Observed: frac, Baseline: cfg.GPUIdleFraction, Score: float64(g.Consecutive),
				WindowStart: end.Add(-time.Duration(g.Consecutive) * Window), WindowEnd: end,
				Detector: events.DetectorThreshold, DetectedAt: time.Now().UTC(), Severity: events.SeverityWarning,
			}
		}
		g.IdleMS, g.TotalMS = 0, 0
	}
	if m >= g.Minute {
		g.Minute = m
		busy := s.GrEngineActive
		if busy == 0 {
			busy = s.GPUUtil
		}
		g.IdleMS += (1 - busy) * float64(s.IntervalMS)
		g.TotalMS += float64(s.IntervalMS)
		g.Team, g.Node = s.Attribution.Team, s.Node
	}
	return out, fired
}

// flush turns the deltas into spend.v1 events (runs get their stats on the
// agent_run subject) and clears them.
func (p *spendPartition) flush(topic string, partition int32, now time.Time) []events.Spend {
	out := make([]events.Spend, 0, len(p.deltas))
	var src *events.SourceRange
	if p.first >= 0 {
		src = &events.SourceRange{Topic: topic, Partition: partition, FirstOffset: p.first, LastOffset: p.last}
	}
	for k, d := range p.deltas {
		start := time.Unix(k.window, 0).UTC()
		s := events.Spend{
			Schema: events.SchemaSpend, Subject: k.subject.name, WindowStart: start, WindowEnd: start.Add(Window),
			DeltaNanoUSD: d.cost, DeltaTokens: d.tokens, Events: d.events, InputTokens: d.input, Errors: d.errors,
			Source: src, ProducedAt: now,
		}
		if id, ok := strings.CutPrefix(k.subject.name, "agent_run="); ok {
			if r := p.runs[id]; r != nil && windowOf(r.Stats.LastAt) == k.window {
				stats := r.Stats
				s.Run = &stats
			}
		}
		out = append(out, s)
	}
	clear(p.deltas)
	p.gen++ // every subject's cached delta is stale now
	p.first = -1
	return out
}
