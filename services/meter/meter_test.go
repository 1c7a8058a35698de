package meter

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/ktopics"
)

func TestUsageSubjectsCoverEveryKeyCombinationAndRun(t *testing.T) {
	u := events.Usage{ServedModel: "gpt-4o", RequestedModel: "fast", Attribution: events.Attribution{
		Team: "payments", App: "checkout", User: "u1", VirtualKeyID: "vk_1", Env: "prod", AgentRunID: "run,7",
	}}
	u.Attribution.Tags = events.Tags{"region": "eu-west-1", "tier": "gold"}
	got := usageSubjects(nil, &u, [][]string{{"team", "model"}, {"team", "customer"}}, []string{"region", "cost-center"})
	want := []string{"key=vk_1", "team=payments", "app=checkout", "user=u1", "model=gpt-4o", "env=prod", "tag.region=eu-west-1", "team=payments,model=gpt-4o", "agent_run=run_7"}
	if !slices.Equal(got, want) {
		t.Errorf("subjects\n got %v\nwant %v", got, want)
	}
	for _, s := range got {
		sp := events.Spend{Schema: events.SchemaSpend, Subject: s, WindowStart: time.Unix(60, 0).UTC(), WindowEnd: time.Unix(120, 0).UTC(), Events: 1, ProducedAt: time.Unix(130, 0).UTC()}
		if err := sp.Validate(); err != nil {
			t.Errorf("subject %q is not a valid spend.v1 subject: %v", s, err)
		}
	}
}

func TestRunStatsCountRepeatsStepsAndTheLastMinute(t *testing.T) {
	var r runState
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		fp := "aaaa"
		if i%3 == 0 {
			fp = "bbbb"
		}
		r.add(&events.Usage{OccurredAt: t0.Add(time.Duration(i) * 5 * time.Second), PromptFingerprint: fp,
			Tokens: events.Tokens{Input: 10, Output: 5}, Cost: events.Cost{TotalNanoUSD: 100},
			Attribution: events.Attribution{AgentStep: i + 1}})
	}
	s := r.Stats
	if s.Calls != 30 || s.Tokens != 450 || s.CostNanoUSD != 3000 || s.MaxStep != 30 {
		t.Errorf("calls %d tokens %d cost %d steps %d", s.Calls, s.Tokens, s.CostNanoUSD, s.MaxStep)
	}
	if s.MaxRepeats != 20 || s.RepeatedPrompt != "aaaa" {
		t.Errorf("repeats %d of %q, want 20 of aaaa", s.MaxRepeats, s.RepeatedPrompt)
	}
	if s.CallsLastMin != 12 { // calls at 90..145 s: (145-90)/5+1
		t.Errorf("calls in the last minute %d, want 12", s.CallsLastMin)
	}
	if !s.FirstAt.Equal(t0) || !s.LastAt.Equal(t0.Add(145*time.Second)) {
		t.Errorf("first %s last %s", s.FirstAt, s.LastAt)
	}
}

func TestSpendDeltasSumExactlyAndLateEventsStillCount(t *testing.T) {
	cfg := DefaultConfig()
	p := newSpendPartition()
	t0 := time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)
	var (
		subj  []*subject
		cache subjectCache
	)
	add := func(at time.Time, cost int64) bool {
		u := events.Usage{OccurredAt: at, ServedModel: "m", Attribution: events.Attribution{Team: "a"}, Cost: events.Cost{TotalNanoUSD: cost},
			Tokens: events.Tokens{Input: 3, Output: 2}, Status: events.StatusOK}
		subj = cache.subjects(subj[:0], &u, cfg.Combinations, nil)
		return p.addUsage(&u, 1, &cfg, subj)
	}
	add(t0, 5)
	add(t0.Add(3*time.Minute), 7)
	if late := add(t0.Add(10*time.Second), 11); !late {
		t.Error("an event 3 minutes behind the newest one is late")
	}
	sum := map[string]int64{}
	for _, s := range p.flush("usage.v1", 0, t0) {
		sum[s.Subject] += s.DeltaNanoUSD
	}
	if sum["team=a"] != 23 || sum["model=m"] != 23 || sum["team=a,model=m"] != 23 {
		t.Errorf("sums %v", sum)
	}
	if len(p.flush("usage.v1", 0, t0)) != 0 {
		t.Error("a second flush repeated deltas")
	}
}

// replay runs usage events through the real spend and anomaly stage logic
// (4 spend partitions by key, 2 anomaly partitions by subject, a flush every
// 50 events) and returns the anomalies and the number of judged metric-minutes.
func replay(t *testing.T, cfg Config, gen func(i int) events.Usage, n int) []events.Anomaly {
	t.Helper()
	spend := make([]*spendPartition, 4)
	for i := range spend {
		spend[i] = newSpendPartition()
	}
	det := []*detectPartition{newDetectPartition(), newDetectPartition()}
	hash := func(s string, n int) int { h := fnv.New32a(); h.Write([]byte(s)); return int(h.Sum32()) % n }
	var out []events.Anomaly
	var (
		subj  []*subject
		cache subjectCache
	)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	flush := func() {
		for i, p := range spend {
			for _, s := range p.flush("usage.v1", int32(i), now) {
				if watched(s.Subject, cfg.Anomaly.Subjects) {
					det[hash(s.Subject, len(det))].add(&s, &cfg.Anomaly, cfg.AllowedLateness, now)
				}
			}
		}
		for _, d := range det {
			d.closeWindows(&cfg.Anomaly, cfg.AllowedLateness, now)
			out = append(out, d.anomalies...)
			d.anomalies = nil
		}
	}
	for i := 0; i < n; i++ {
		u := gen(i)
		subj = cache.subjects(subj[:0], &u, cfg.Combinations, nil)
		spend[hash(u.Attribution.VirtualKeyID, len(spend))].addUsage(&u, int64(i), &cfg, subj)
		if i%50 == 49 {
			flush()
		}
	}
	flush()
	return out
}

// steady makes traffic for 6 teams, each with its own app, about 80 calls
// a minute each, with noisy prompt sizes and costs; from jumpAt on (event
// time), app "app-2" sends prompts 8× longer.
func steady(seed uint64, start time.Time, jumpAt time.Duration) func(i int) events.Usage {
	rng := rand.New(rand.NewPCG(seed, 1))
	const perMinute = 6 * 80
	return func(i int) events.Usage {
		at := start.Add(time.Duration(i) * time.Minute / perMinute)
		team := i % 6
		in := int64(800 + rng.IntN(400))
		if at.Sub(start) >= jumpAt && team == 2 {
			in *= 8
		}
		out := int64(100 + rng.IntN(100))
		status := events.StatusOK
		if rng.IntN(100) == 0 {
			status = events.StatusUpstreamError
		}
		return events.Usage{
			OccurredAt: at, ServedModel: "gpt-4o", Status: status,
			Attribution: events.Attribution{Team: fmt.Sprintf("team-%d", team), App: fmt.Sprintf("app-%d", team), VirtualKeyID: fmt.Sprintf("vk-%d", i%37)},
			Tokens:      events.Tokens{Input: in, Output: out},
			Cost:        events.Cost{TotalNanoUSD: in*2500 + out*10000},
		}
	}
}

func TestReplayPromptSizeJumpRaisesExactlyOneAnomalyForThatApp(t *testing.T) {
	cfg := DefaultConfig()
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	jump := 60 * time.Minute
	n := 6 * 80 * 75 // 75 minutes
	got := replay(t, cfg, steady(42, start, jump), n)
	var forApp []events.Anomaly
	for _, a := range got {
		switch a.Subject {
		case "app=app-2":
			forApp = append(forApp, a)
		case "team=team-2": // the app's own team: its prompts grew just as much
		default:
			t.Errorf("anomaly for %s (%s, observed %.0f, baseline %.0f)", a.Subject, a.Metric, a.Observed, a.Baseline)
		}
	}
	if len(forApp) != 1 {
		t.Fatalf("%d anomalies for app=app-2, want exactly 1: %+v", len(forApp), forApp)
	}
	a := forApp[0]
	if d := a.WindowEnd.Sub(start.Add(jump)); d > 2*time.Minute {
		t.Errorf("anomaly window ends %s after the jump, want within 2 minutes", d)
	}
	t.Logf("app=app-2: %s by %s, observed %.0f vs baseline %.0f (score %.1f), window %s",
		a.Metric, a.Detector, a.Observed, a.Baseline, a.Score, a.WindowStart.Format("15:04"))
}

func TestReplayNoisyFlatHourRaisesNoAnomaly(t *testing.T) {
	cfg := DefaultConfig()
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	total := 0
	for seed := uint64(1); seed <= 5; seed++ {
		got := replay(t, cfg, steady(seed, start, 1000*time.Hour), 6*80*60)
		for _, a := range got {
			t.Errorf("seed %d: false positive for %s: %s observed %.0f baseline %.0f score %.1f", seed, a.Subject, a.Metric, a.Observed, a.Baseline, a.Score)
		}
		total += len(got)
	}
	// 5 hours × 12 subjects × 4 metrics, judged after the 15-minute warm-up.
	judged := 5 * 12 * 4 * (60 - 2 - cfg.Anomaly.Warmup)
	t.Logf("false-positive rate: %d anomalies in %d judged metric-minutes (%.4f %%)", total, judged, 100*float64(total)/float64(judged))
}

func TestGPUIdleRaisesOneAnomalyAfterTheConfiguredMinutes(t *testing.T) {
	cfg := DefaultConfig().Anomaly
	var g gpuIdle
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var got []events.Anomaly
	for i := 0; i < 6*20; i++ { // 20 minutes of 10 s samples, idle
		s := events.GPUSample{OccurredAt: t0.Add(time.Duration(i) * 10 * time.Second), GPUUUID: "GPU-1", IntervalMS: 10000, GPUUtil: 0.02}
		if a, ok := g.add(&s, cfg); ok {
			got = append(got, a)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d anomalies, want 1", len(got))
	}
	if got[0].Subject != "gpu=GPU-1" || got[0].Detector != events.DetectorThreshold || got[0].Validate() != nil {
		t.Errorf("anomaly %+v (validate: %v)", got[0], got[0].Validate())
	}
	if end := got[0].WindowEnd; end != t0.Add(10*time.Minute) {
		t.Errorf("raised for the window ending %s, want after 10 idle minutes", end)
	}
}

// TestDetectorStateSurvivesARestart cuts a replay in the middle, writes
// every subject's state as the changelog would, restores it into a fresh
// anomaly stage and goes on: the anomalies are those of the uninterrupted run.
func TestDetectorStateSurvivesARestart(t *testing.T) {
	cfg := DefaultConfig()
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	gen := steady(7, start, 40*time.Minute)
	n := 6 * 80 * 50
	var spends []events.Spend
	p := newSpendPartition()
	var (
		subj  []*subject
		cache subjectCache
	)
	for i := 0; i < n; i++ {
		u := gen(i)
		subj = cache.subjects(subj[:0], &u, cfg.Combinations, nil)
		p.addUsage(&u, int64(i), &cfg, subj)
		if i%100 == 99 || i == n-1 {
			for _, s := range p.flush("usage.v1", 0, start) {
				if watched(s.Subject, cfg.Anomaly.Subjects) {
					spends = append(spends, s)
				}
			}
		}
	}
	now := start.Add(2 * time.Hour)
	run := func(h *detectHandler, from, to int) []string {
		var out []string
		for _, s := range spends[from:to] {
			b, err := events.Encode(s)
			if err != nil {
				t.Fatal(err)
			}
			h.Process(&kgo.Record{Value: b, Partition: 0}, now)
			if len(h.parts[0].dirty) > 0 && h.parts[0].watermark%300 == 0 {
				for _, r := range h.Flush(now) {
					if r.Topic == h.names.Anomalies() {
						out = append(out, string(r.Key))
					}
				}
			}
		}
		for _, r := range h.Flush(now) {
			if r.Topic == h.names.Anomalies() {
				out = append(out, string(r.Key))
			}
		}
		return out
	}
	newHandler := func() *detectHandler {
		h := &detectHandler{cfg: &cfg, names: ktopics.WithPrefix(""), m: newMetrics(nil), parts: map[int32]*detectPartition{}}
		h.Restore(tp{Partition: 0}, nil)
		return h
	}
	whole := run(newHandler(), 0, len(spends))

	first := newHandler()
	cut := len(spends) * 3 / 5
	got := run(first, 0, cut)
	entries := map[string][]byte{}
	for subject, st := range first.parts[0].subjects {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		entries[subject] = b
	}
	second := &detectHandler{cfg: &cfg, names: ktopics.WithPrefix(""), m: newMetrics(nil), parts: map[int32]*detectPartition{}}
	second.Restore(tp{Partition: 0}, entries)
	got = append(got, run(second, cut, len(spends))...)
	if !slices.Equal(got, whole) || len(whole) == 0 {
		t.Errorf("anomalies with a restart %v, without %v (want equal and not empty)", got, whole)
	}
}
