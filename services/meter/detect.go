package meter

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

// The per-minute metrics of a subject that the detectors watch.
const (
	MetricCost       = "cost_nano_usd_per_min"
	MetricTokens     = "tokens_per_min"
	MetricAvgInput   = "avg_input_tokens_per_call"
	MetricErrorRate  = "error_rate"
	MetricGPUIdle    = "gpu_idle_fraction"
	minMADFraction   = 0.02 // MAD is floored at 2 % of the median: flat series are not infinitely sensitive
	calmWindows      = 5    // windows in band that end an incident
	errorRateFloor   = 0.10 // an error-rate anomaly must be at least 10 points over baseline (80 calls at 1 % errors see 4 errors in a minute about once an hour)
	relativeMinimum  = 0.5  // and every anomaly at least 50 % over its baseline
	severeMultiplier = 2    // score at twice the threshold: critical
)

// agg sums a subject's spend deltas in one window.
type agg struct {
	Cost   int64 `json:"cost"`
	Tokens int64 `json:"tokens"`
	Input  int64 `json:"input"`
	Calls  int64 `json:"calls"`
	Errors int64 `json:"errors"`
}

// series is one metric's history.
type series struct {
	Hist []float64 `json:"hist"` // the last History values, oldest first
	Mean float64   `json:"mean"` // EWMA
	Var  float64   `json:"var"`  // EWMA variance
	N    int       `json:"n"`
}

func (s *series) push(x float64, history int, alpha float64) {
	s.Hist = append(s.Hist, x)
	if len(s.Hist) > history {
		s.Hist = s.Hist[len(s.Hist)-history:]
	}
	if s.N == 0 {
		s.Mean, s.Var = x, 0
	} else {
		d := x - s.Mean
		s.Mean += alpha * d
		s.Var = (1 - alpha) * (s.Var + alpha*d*d)
	}
	s.N++
}

// robust returns the median of the history and the robust z-score of x.
func (s *series) robust(x float64) (median, z float64) {
	h := slices.Clone(s.Hist)
	slices.Sort(h)
	median = quantileSorted(h)
	dev := make([]float64, len(h))
	for i, v := range h {
		dev[i] = math.Abs(v - median)
	}
	slices.Sort(dev)
	mad := max(quantileSorted(dev), minMADFraction*math.Abs(median), 1e-9)
	return median, 0.6745 * (x - median) / mad
}

func quantileSorted(v []float64) float64 {
	n := len(v)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// subjectState is one subject's open windows and detector state.
type subjectState struct {
	Open    map[int64]*agg     `json:"open"` // window start (unix s) → sums
	Metrics map[string]*series `json:"metrics"`
	// Active: an anomaly was raised and the subject has not been calm for
	// calmWindows windows since; no second anomaly is raised meanwhile.
	Active    bool  `json:"active,omitempty"`
	Calm      int   `json:"calm,omitempty"`
	ActiveFor int   `json:"active_for,omitempty"`
	FastFired int64 `json:"fast_fired,omitempty"` // window the EWMA fast path fired in
}

// detectPartition is the anomaly stage's state for one spend.v1 partition.
type detectPartition struct {
	subjects  map[string]*subjectState
	watermark int64 // newest window start seen (unix s)
	dirty     map[string]bool
	anomalies []events.Anomaly
}

func newDetectPartition() *detectPartition {
	return &detectPartition{subjects: map[string]*subjectState{}, dirty: map[string]bool{}}
}

// watched reports whether a spend subject is a single key the config
// watches ("app=checkout", not "team=a,model=b").
func watched(subject string, keys []string) bool {
	k, v, ok := strings.Cut(subject, "=")
	return ok && !strings.Contains(v, ",") && slices.Contains(keys, k)
}

// add counts one spend delta. It reports a late delta (its window already
// judged). Closing windows and the EWMA fast path may queue anomalies.
func (p *detectPartition) add(s *events.Spend, cfg *Anomaly, lateness time.Duration, now time.Time) (late bool) {
	w := s.WindowStart.Unix()
	st := p.subjects[s.Subject]
	if st == nil {
		st = &subjectState{Open: map[int64]*agg{}, Metrics: map[string]*series{}}
		p.subjects[s.Subject] = st
	}
	p.dirty[s.Subject] = true
	if w > p.watermark {
		p.watermark = w
	}
	closeBefore := p.closeBefore(lateness)
	if w < closeBefore {
		return true
	}
	a := st.Open[w]
	if a == nil {
		a = &agg{}
		st.Open[w] = a
	}
	a.Cost += s.DeltaNanoUSD
	a.Tokens += s.DeltaTokens
	a.Input += s.InputTokens
	a.Calls += s.Events
	a.Errors += s.Errors
	if an, ok := st.fastPath(s.Subject, w, a, cfg, now); ok {
		p.anomalies = append(p.anomalies, an)
	}
	return false
}

// closeBefore is the first window still open: windows that ended more than
// lateness (at least one window) before the newest window are judged.
func (p *detectPartition) closeBefore(lateness time.Duration) int64 {
	lag := max(int64(math.Ceil(lateness.Seconds()/Window.Seconds())), 1)
	return p.watermark - lag*int64(Window.Seconds())
}

// closeWindows judges every window that the watermark has passed.
func (p *detectPartition) closeWindows(cfg *Anomaly, lateness time.Duration, now time.Time) int {
	limit := p.closeBefore(lateness)
	closed := 0
	for subject, st := range p.subjects {
		var due []int64
		for w := range st.Open {
			if w < limit {
				due = append(due, w)
			}
		}
		if len(due) == 0 {
			continue
		}
		slices.Sort(due)
		for _, w := range due {
			if an, ok := st.judge(subject, w, st.Open[w], cfg, now); ok {
				p.anomalies = append(p.anomalies, an)
			}
			delete(st.Open, w)
			closed++
		}
		p.dirty[subject] = true
	}
	return closed
}

// values returns the metrics of a closed window that can be judged.
func values(a *agg, cfg *Anomaly) map[string]float64 {
	v := map[string]float64{MetricCost: float64(a.Cost), MetricTokens: float64(a.Tokens)}
	if a.Calls >= cfg.MinCalls {
		v[MetricAvgInput] = float64(a.Input) / float64(a.Calls)
		v[MetricErrorRate] = float64(a.Errors) / float64(a.Calls)
	}
	return v
}

// judge runs the MAD detector on a closed window, updates the baselines
// and returns at most one anomaly per incident: the metric with the highest
// score.
func (st *subjectState) judge(subject string, w int64, a *agg, cfg *Anomaly, now time.Time) (events.Anomaly, bool) {
	var best events.Anomaly
	found := false
	vals := values(a, cfg)
	anomalous := map[string]bool{}
	for _, m := range []string{MetricCost, MetricTokens, MetricAvgInput, MetricErrorRate} {
		x, ok := vals[m]
		if !ok {
			continue
		}
		s := st.Metrics[m]
		if s == nil {
			s = &series{}
			st.Metrics[m] = s
		}
		if len(s.Hist) >= cfg.Warmup {
			median, z := s.robust(x)
			if z >= cfg.MADThreshold && meaningful(m, x, median, cfg) {
				anomalous[m] = true
				if !found || z > best.Score {
					best = anomaly(subject, m, x, median, z, w, events.DetectorMAD, cfg.MADThreshold, now)
					found = true
				}
			}
		}
	}
	for m, x := range vals {
		s := st.Metrics[m]
		// Anomalous values stay out of the baseline, unless the incident has
		// lasted half the history: then it is the new normal.
		if !anomalous[m] || st.ActiveFor >= cfg.History/2 {
			s.push(x, cfg.History, cfg.EWMAAlpha)
		}
	}
	switch {
	case len(anomalous) > 0 && st.Active:
		st.ActiveFor++
		st.Calm = 0
		return events.Anomaly{}, false
	case len(anomalous) > 0:
		if st.FastFired == w { // the fast path already raised this incident
			st.Active, st.ActiveFor, st.Calm = true, 1, 0
			return events.Anomaly{}, false
		}
		st.Active, st.ActiveFor, st.Calm = true, 1, 0
		return best, found
	case st.Active:
		st.Calm++
		if st.Calm >= calmWindows {
			st.Active, st.ActiveFor, st.Calm = false, 0, 0
		}
	}
	return events.Anomaly{}, false
}

// fastPath checks the open window's running cost and tokens against the
// EWMA baseline: a spike is raised while the minute is still going.
func (st *subjectState) fastPath(subject string, w int64, a *agg, cfg *Anomaly, now time.Time) (events.Anomaly, bool) {
	if st.Active || st.FastFired == w {
		return events.Anomaly{}, false
	}
	for _, m := range []string{MetricCost, MetricTokens} {
		s := st.Metrics[m]
		if s == nil || s.N < cfg.Warmup {
			continue
		}
		x := float64(a.Cost)
		if m == MetricTokens {
			x = float64(a.Tokens)
		}
		sd := max(math.Sqrt(s.Var), minMADFraction*math.Abs(s.Mean), 1e-9)
		score := (x - s.Mean) / sd
		if score >= cfg.EWMAThreshold && meaningful(m, x, s.Mean, cfg) {
			st.FastFired = w
			st.Active, st.ActiveFor, st.Calm = true, 1, 0
			return anomaly(subject, m, x, s.Mean, score, w, events.DetectorEWMA, cfg.EWMAThreshold, now), true
		}
	}
	return events.Anomaly{}, false
}

// meaningful applies the floors: a cost anomaly must exceed its baseline by
// MinExcessUSD; an error-rate one by errorRateFloor; every one by 50 %.
func meaningful(metric string, x, baseline float64, cfg *Anomaly) bool {
	if x < baseline*(1+relativeMinimum) {
		return false
	}
	switch metric {
	case MetricCost:
		return x-baseline >= cfg.MinExcessUSD*1e9
	case MetricErrorRate:
		return x-baseline >= errorRateFloor
	}
	return true
}

func anomaly(subject, metric string, x, baseline, score float64, w int64, d events.Detector, threshold float64, now time.Time) events.Anomaly {
	start := time.Unix(w, 0).UTC()
	sev := events.SeverityWarning
	if score >= severeMultiplier*threshold {
		sev = events.SeverityCritical
	}
	if math.IsInf(score, 0) || math.IsNaN(score) {
		score = math.MaxFloat64
	}
	return events.Anomaly{
		Schema: events.SchemaAnomaly, ID: events.NewID(now), Subject: subject, Metric: metric,
		Observed: x, Baseline: baseline, Score: score, WindowStart: start, WindowEnd: start.Add(Window),
		Detector: d, DetectedAt: now.UTC(), Severity: sev,
	}
}
