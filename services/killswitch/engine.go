package killswitch

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/killswitch/alert"
	"github.com/burnrate/burnrate/services/killswitch/policy"
	"github.com/burnrate/burnrate/streams/kstage"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// keepEnded is how long a budget's state outlives its period: spend of the
// ended period that arrives late still counts toward it.
const keepEnded = time.Hour

// engine is the killswitch's stage handler: spend.v1 and anomalies.v1 in;
// verdicts, budget events and budget-state changelog out. Every method runs
// under the stage lock.
type engine struct {
	cfg      *Config
	names    ktopics.Names
	log      *zap.Logger
	m        *metrics
	actor    string // "killswitch/<instance>"
	pol      *policy.Policies
	polSeen  string           // policies version the states were last evaluated with
	nSpend   int              // partitions of spend.v1
	partOf   map[string]int32 // subject → its spend.v1 partition
	live     func() int
	lastLive int
	now      func() time.Time
	// published is the latest verdict of a subject on verdicts.v1, so a
	// restarted killswitch knows what the ingresses hold and does not
	// grant a lease twice.
	published func(subject string) (events.Verdict, bool)

	parts  map[int32]*partState      // restored spend partitions
	runs   map[string]time.Time      // agent_run subjects blocked by a loop rule → until
	manual map[string]events.Verdict // subjects under a manual kill
	reqs   []*request                // admin actions for the next flush
	sent   []*request                // admin actions in the open transaction
	alerts []alert.Alert             // sent when the transaction commits
	notify func(alert.Alert)         // the notifier
	out    []*kgo.Record             // produced while processing
	due    time.Time                 // next time-driven evaluation
	s      events.Spend              // decode buffers
	a      events.Anomaly
}

// partState is the state of one spend.v1 partition: the budgets whose
// subjects hash there.
type partState struct {
	current  map[*policy.Budget]*budget // seeded budgets' current period
	budgets  map[string]*budget         // stateKey → budget of one period
	verdicts map[string]*events.Verdict // subject → the verdict this partition last published
}

// budget is one budget of one subject in one period.
type budget struct {
	st         events.BudgetState
	pol        *policy.Budget
	burn       burnRate
	lastGrowth time.Time // wall time spend last grew
	lastSpend  time.Time // produced_at of the newest spend counted
	dirty      bool      // changelog record due
	touched    bool      // spend since the last judgement
	want       want      // the last judgement
}

// request is a manual kill or lift from the admin API.
type request struct {
	verdict events.Verdict
	event   events.BudgetEvent
	done    chan error // told after the transaction ends
}

var _ kstage.Handler = (*engine)(nil)
var _ kstage.Ticker = (*engine)(nil)

func newEngine(cfg *Config, names ktopics.Names, log *zap.Logger, m *metrics, instance string, now func() time.Time, notify func(alert.Alert)) *engine {
	return &engine{cfg: cfg, names: names, log: log, m: m, actor: "killswitch/" + instance, pol: &policy.Policies{}, now: now,
		live: func() int { return 0 }, published: func(string) (events.Verdict, bool) { return events.Verdict{}, false },
		notify: notify, parts: map[int32]*partState{}, runs: map[string]time.Time{}, manual: map[string]events.Verdict{}}
}

func stateKey(s *events.BudgetState) string {
	return s.Budget + "|" + s.Subject + "|" + s.PeriodStart.Format(time.RFC3339)
}

func (e *engine) Prefix(kstage.TP) string { return "" }

// Has: anomalies carry no state; a spend partition has once restored.
func (e *engine) Has(t kstage.TP) bool {
	if t.Topic != e.names.Spend() {
		return true
	}
	_, ok := e.parts[t.Partition]
	return ok
}

func (e *engine) Drop(t *kstage.TP) {
	if t == nil {
		clear(e.parts)
		return
	}
	if t.Topic == e.names.Spend() {
		delete(e.parts, t.Partition)
	}
}

func (e *engine) Restore(t kstage.TP, entries map[string][]byte) {
	p := &partState{budgets: map[string]*budget{}, verdicts: map[string]*events.Verdict{}, current: map[*policy.Budget]*budget{}}
	for k, v := range entries {
		st, err := events.DecodeBudgetState(v)
		if err != nil || st.Validate() != nil {
			e.log.Warn("budget-state record skipped", zap.String("key", k), zap.Error(err))
			continue
		}
		// Spend may still be in flight: a lease is re-split only once it
		// has been quiet for lease_quiet from now.
		p.budgets[k] = &budget{st: st, lastGrowth: e.now(), touched: true}
		if v, ok := e.published(st.Subject); ok && !strings.HasPrefix(v.IssuedBy, adminPrefix) {
			p.verdicts[st.Subject] = &v
		}
	}
	e.parts[t.Partition] = p
	e.bind(p)
	e.due = time.Time{} // evaluate at once: leases and verdicts of restored budgets
}

// bind points restored or reloaded budgets at their policy.
func (e *engine) bind(p *partState) {
	clear(p.current)
	for _, b := range p.budgets {
		b.pol = nil
		for _, pb := range e.pol.Find(b.st.Subject) {
			if pb.Name == b.st.Budget {
				b.pol = pb
			}
		}
	}
}

// setPolicies swaps the policies in; the next flush re-evaluates.
func (e *engine) setPolicies(p *policy.Policies) {
	e.pol = p
	for _, ps := range e.parts {
		e.bind(ps)
	}
	e.due = time.Time{}
}

// Due says whether a flush is needed without input: admin requests, a
// timer (period end, lease re-split, initial leases), a policy reload or a
// change in live ingress instances.
func (e *engine) Due(now time.Time) bool {
	return len(e.reqs) > 0 || !now.Before(e.due) || e.live() != e.lastLive
}

func (e *engine) Process(r *kgo.Record, now time.Time) {
	if r.Topic == e.names.Anomalies() {
		e.processAnomaly(r, now)
		return
	}
	if err := events.DecodeSpendInto(r.Value, &e.s); err != nil || e.s.Validate() != nil {
		e.m.invalid.Inc()
		return
	}
	s := &e.s
	p := e.parts[r.Partition]
	if s.Run != nil {
		e.checkRun(s, now)
	}
	for _, pb := range e.pol.Find(s.Subject) {
		start, end := pb.PeriodAt(s.WindowStart)
		if now.Sub(end) > keepEnded {
			e.m.lateSpend.Inc()
			continue
		}
		b := e.budgetOf(p, pb, s.Subject, start, end, now)
		b.st.SpentNanoUSD += s.DeltaNanoUSD
		b.st.SpentTokens += s.DeltaTokens
		b.st.UpdatedAt = now.UTC()
		b.dirty, b.touched = true, true
		if s.DeltaNanoUSD > 0 || s.DeltaTokens > 0 {
			b.burn.add(now, s.DeltaNanoUSD)
			b.lastGrowth = now
			b.lastSpend = s.ProducedAt
		}
	}
}

// budgetOf returns the state of budget pb for subject in the period
// [start, end), creating it.
func (e *engine) budgetOf(p *partState, pb *policy.Budget, subject string, start, end, now time.Time) *budget {
	st := events.BudgetState{Schema: events.SchemaBudgetState, Subject: subject, Budget: pb.Name, Period: pb.Period,
		PeriodStart: start.UTC(), PeriodEnd: end.UTC(), LimitNanoUSD: pb.LimitNanoUSD, LimitTokens: pb.LimitTokens, UpdatedAt: now.UTC()}
	k := stateKey(&st)
	b := p.budgets[k]
	if b == nil {
		b = &budget{st: st, pol: pb, dirty: true, touched: true, lastGrowth: now}
		p.budgets[k] = b
		if v, ok := e.published(subject); ok && !strings.HasPrefix(v.IssuedBy, adminPrefix) && p.verdicts[subject] == nil {
			p.verdicts[subject] = &v
		}
	}
	return b
}

// checkRun applies the loop rules to an agent run's stats.
func (e *engine) checkRun(s *events.Spend, now time.Time) {
	rules := e.pol.Loops
	if !rules.Enabled() {
		return
	}
	if until, ok := e.runs[s.Subject]; ok && now.Before(until) {
		return
	}
	r := s.Run
	var why string
	switch {
	case rules.MaxCallsPerMinute > 0 && r.CallsLastMin > rules.MaxCallsPerMinute:
		why = fmt.Sprintf("%d calls in a minute (max_calls_per_minute %d)", r.CallsLastMin, rules.MaxCallsPerMinute)
	case rules.MaxRepeats > 0 && r.MaxRepeats > rules.MaxRepeats:
		why = fmt.Sprintf("same prompt %d times (max_repeats %d)", r.MaxRepeats, rules.MaxRepeats)
	case rules.MaxSteps > 0 && r.MaxStep > rules.MaxSteps:
		why = fmt.Sprintf("step %d (max_steps %d)", r.MaxStep, rules.MaxSteps)
	case rules.MaxRunCostNanoUSD > 0 && r.CostNanoUSD > rules.MaxRunCostNanoUSD:
		why = fmt.Sprintf("cost %s (max_run_cost_usd %s)", usd(r.CostNanoUSD), usd(rules.MaxRunCostNanoUSD))
	case rules.MaxRunDuration > 0 && r.LastAt.Sub(r.FirstAt) > rules.MaxRunDuration:
		why = fmt.Sprintf("running %s (max_run_duration %s)", r.LastAt.Sub(r.FirstAt).Round(time.Second), rules.MaxRunDuration)
	default:
		return
	}
	until := now.Add(rules.BlockFor)
	e.runs[s.Subject] = until
	reason := fmt.Sprintf("agent loop: %s; run blocked for %s", why, rules.BlockFor)
	v := e.verdict(s.Subject, events.ActionBlock, reason, 0, r.CostNanoUSD, until, now)
	e.out = append(e.out, e.verdictRecord(v, "loop"))
	e.event(events.BudgetEvent{Kind: events.BudgetLoopBreak, Severity: events.SeverityCritical, Subject: s.Subject,
		SpentNanoUSD: r.CostNanoUSD, Reason: reason}, now)
	if !s.ProducedAt.IsZero() {
		e.m.decision.WithLabelValues("loop").Observe(now.Sub(s.ProducedAt).Seconds())
	}
}

func (e *engine) processAnomaly(r *kgo.Record, now time.Time) {
	if err := events.DecodeAnomalyInto(r.Value, &e.a); err != nil || e.a.Validate() != nil {
		e.m.invalid.Inc()
		return
	}
	a := &e.a
	if a.Severity != events.SeverityCritical {
		return
	}
	e.event(events.BudgetEvent{Kind: events.BudgetAnomaly, Severity: events.SeverityCritical, Subject: a.Subject,
		Reason: fmt.Sprintf("%s %s: observed %.4g against a baseline of %.4g (%s score %.1f) in %s–%s", a.Subject, a.Metric,
			a.Observed, a.Baseline, a.Detector, a.Score, a.WindowStart.Format("15:04"), a.WindowEnd.Format("15:04 MST"))}, now)
}

// Flush evaluates every budget, applies admin requests and returns the
// transaction's records.
func (e *engine) Flush(now time.Time) []*kgo.Record {
	out := e.out
	e.out = nil
	live := max(e.live(), 1)
	liveChanged := live != e.lastLive
	e.lastLive = e.live()
	for s, until := range e.runs {
		if !now.Before(until) {
			delete(e.runs, s)
		}
	}
	for s, v := range e.manual {
		if !now.Before(v.ExpiresAt) {
			delete(e.manual, s)
		}
	}
	for _, r := range e.reqs {
		if r.verdict.Action == events.ActionAllow {
			delete(e.manual, r.verdict.Subject)
		} else {
			e.manual[r.verdict.Subject] = r.verdict
		}
		out = append(out, e.verdictRecord(r.verdict, "manual"))
		e.event(r.event, now)
	}
	e.sent, e.reqs = e.reqs, nil
	// A full evaluation judges every budget (timers, reloads, instance
	// changes); otherwise only the budgets that got spend are judged.
	full := !now.Before(e.due) || e.pol.Version != e.polSeen || liveChanged
	if full {
		e.due = now.Add(time.Minute)
	}
	tracked := 0
	for id, p := range e.parts {
		if full {
			e.seed(id, p, now)
		}
		out = e.evaluate(id, p, now, live, liveChanged, full, out)
		tracked += len(p.budgets)
	}
	e.polSeen = e.pol.Version
	e.m.budgets.Set(float64(tracked))
	e.m.live.Set(float64(live))
	return append(out, e.drainEvents()...)
}

// seed creates the current period's state of every exact budget owned by
// partition id, so leases and forecasts work before the first spend.
func (e *engine) seed(id int32, p *partState, now time.Time) {
	for i := range e.pol.Budgets {
		pb := &e.pol.Budgets[i]
		if pb.Wildcard || e.partitionOf(pb.Subject) != id {
			continue
		}
		if b := p.current[pb]; b != nil && now.Before(b.st.PeriodEnd) {
			continue // seeded for this period
		}
		start, end := pb.PeriodAt(now)
		p.current[pb] = e.budgetOf(p, pb, pb.Subject, start, end, now)
	}
}

// partitionOf is the spend.v1 partition the meter writes subject's spend
// to (its key hash, as franz-go and Kafka's default partitioner do).
func (e *engine) partitionOf(subject string) int32 {
	if e.nSpend <= 0 {
		return -1
	}
	if p, ok := e.partOf[subject]; ok {
		return p
	}
	if e.partOf == nil || len(e.partOf) > 1<<16 {
		e.partOf = map[string]int32{}
	}
	p := int32(kgo.StickyKeyPartitioner(nil).ForTopic(e.names.Spend()).Partition(&kgo.Record{Key: []byte(subject)}, e.nSpend))
	e.partOf[subject] = p
	return p
}

// want is what one budget asks of its subject now.
type want struct {
	action    events.Action
	reason    string
	b         *budget
	remaining int64 // lease
	downgrade string
	throttle  int
}

// rank orders actions by restriction: the most restrictive budget of a
// subject decides its verdict.
func rank(a events.Action) int {
	switch a {
	case events.ActionBlock:
		return 4
	case events.ActionThrottle:
		return 3
	case events.ActionLease:
		return 2
	case events.ActionDowngrade:
		return 1
	}
	return 0
}

func (e *engine) evaluate(id int32, p *partState, now time.Time, live int, liveChanged, full bool, out []*kgo.Record) []*kgo.Record {
	decideFor := map[string]bool{} // subjects whose verdict may change
	for k, b := range p.budgets {
		if now.Sub(b.st.PeriodEnd) > keepEnded || b.pol == nil {
			delete(p.budgets, k)
			out = append(out, kstage.ChangelogRecord(e.names.BudgetState(), id, k, nil))
			decideFor[b.st.Subject] = true
			continue
		}
		if full || b.touched {
			decideFor[b.st.Subject] = true
		}
	}
	wants := make(map[string]want, len(decideFor)) // subject → the most restrictive want
	for subject := range decideFor {
		wants[subject] = want{}
	}
	for k, b := range p.budgets {
		if !decideFor[b.st.Subject] {
			continue
		}
		if b.pol.LimitNanoUSD != b.st.LimitNanoUSD || b.pol.LimitTokens != b.st.LimitTokens {
			b.st.LimitNanoUSD, b.st.LimitTokens, b.dirty = b.pol.LimitNanoUSD, b.pol.LimitTokens, true
		}
		if full || b.touched {
			b.want, b.touched = want{}, false
			if !now.Before(b.st.PeriodStart) && now.Before(b.st.PeriodEnd) {
				b.want = e.judge(b, now)
				e.due = minTime(e.due, b.st.PeriodEnd)
			}
		}
		w := b.want
		if old := wants[b.st.Subject]; rank(w.action) > rank(old.action) ||
			w.action == events.ActionLease && old.action == events.ActionLease && w.remaining < old.remaining {
			wants[b.st.Subject] = w
		}
		if b.dirty {
			out = append(out, e.stateRecord(id, k, b))
			b.dirty = false
		}
	}
	for subject, w := range wants {
		if _, killed := e.manual[subject]; killed {
			continue
		}
		if v := e.decide(p, subject, w, now, live, liveChanged); v != nil {
			out = append(out, e.verdictRecord(*v, "budget"))
		}
	}
	return out
}

// judge fires thresholds and forecasts and says what b wants now.
func (e *engine) judge(b *budget, now time.Time) want {
	st, pb := &b.st, b.pol
	pct := percent(st)
	for _, t := range pb.Thresholds {
		if pct >= t && !slices.Contains(st.ThresholdsFired, t) {
			st.ThresholdsFired = insertSorted(st.ThresholdsFired, t)
			b.dirty = true
			e.event(e.budgetEvent(b, events.BudgetThreshold, events.SeverityWarning, t,
				fmt.Sprintf("%s: %d %% of %s spent", pb.Name, t, limitText(st))), now)
		}
	}
	exhausted := pct >= 100
	if exhausted && !slices.Contains(st.ThresholdsFired, 100) {
		st.ThresholdsFired = insertSorted(st.ThresholdsFired, 100)
		b.dirty = true
		e.event(e.budgetEvent(b, events.BudgetExhausted, events.SeverityCritical, 0,
			fmt.Sprintf("%s: %s exhausted (%s spent); action %s until %s", pb.Name, limitText(st), usd(st.SpentNanoUSD),
				pb.Action, st.PeriodEnd.Format(time.RFC3339))), now)
	}
	rate := b.burn.perSecond(now, time.Minute)
	if fc := forecast(st, rate, now); !exhausted && !st.ForecastAlerted && st.LimitNanoUSD > 0 && fc > st.LimitNanoUSD && b.burn.seen(now) >= time.Minute {
		st.ForecastAlerted = true
		b.dirty = true
		ev := e.budgetEvent(b, events.BudgetForecast, events.SeverityWarning, 0,
			fmt.Sprintf("%s: at the current burn of %s/h, %s is projected by %s against a limit of %s", pb.Name,
				usd(int64(rate*3600)), usd(fc), st.PeriodEnd.Format(time.RFC3339), usd(st.LimitNanoUSD)))
		ev.ForecastNanoUSD = fc
		e.event(ev, now)
	}
	reason := fmt.Sprintf("%s: %s exhausted (%s spent), resets at %s", pb.Name, limitText(st), usd(st.SpentNanoUSD), st.PeriodEnd.Format(time.RFC3339))
	if exhausted {
		switch pb.Action {
		case policy.ActionBlock:
			return want{action: events.ActionBlock, reason: reason, b: b}
		case policy.ActionDowngrade:
			return want{action: events.ActionDowngrade, reason: reason, b: b, downgrade: pb.DowngradeTo}
		case policy.ActionThrottle:
			return want{action: events.ActionThrottle, reason: reason, b: b, throttle: pb.ThrottlePerMin}
		}
		return want{}
	}
	if pb.Action != policy.ActionBlock || st.LimitNanoUSD <= 0 {
		return want{}
	}
	remaining := st.LimitNanoUSD - st.SpentNanoUSD
	margin := max(int64(b.burn.perSecond(now, 5*time.Second)*pb.LeaseHorizon.Seconds()), st.LimitNanoUSD/100*int64(pb.LeaseBelowPct))
	if remaining > margin {
		return want{}
	}
	e.due = minTime(e.due, now.Add(e.cfg.LeaseQuiet))
	return want{action: events.ActionLease, b: b, remaining: remaining,
		reason: fmt.Sprintf("%s: %s of %s left, split across the live ingress instances", pb.Name, usd(remaining), usd(st.LimitNanoUSD))}
}

// decide turns a subject's want into a verdict when it differs from the
// one this partition published last.
func (e *engine) decide(p *partState, subject string, w want, now time.Time, live int, liveChanged bool) *events.Verdict {
	old := p.verdicts[subject]
	expired := old != nil && !now.Before(old.ExpiresAt)
	if w.action == "" {
		if old == nil || old.Action == events.ActionAllow {
			return nil
		}
		reason := "budget back under its limit, raised or removed"
		if expired {
			reason = "budget period over"
		}
		v := e.verdict(subject, events.ActionAllow, reason, old.LimitNanoUSD, 0, now.Add(24*time.Hour), now)
		e.event(events.BudgetEvent{Kind: events.BudgetReset, Severity: events.SeverityInfo, Subject: subject,
			LimitNanoUSD: old.LimitNanoUSD, Reason: fmt.Sprintf("%s: %s lifted: %s", subject, old.Action, reason)}, now)
		p.verdicts[subject] = &v
		return &v
	}
	if expired {
		old = nil
	}
	st := &w.b.st
	if old != nil && old.Action == w.action {
		switch w.action {
		case events.ActionLease:
			quiet := now.Sub(w.b.lastGrowth) >= e.cfg.LeaseQuiet && now.Sub(old.IssuedAt) >= e.cfg.LeaseQuiet
			if !liveChanged && (old.Lease.RemainingNanoUSD == w.remaining || !quiet) {
				return nil
			}
		case events.ActionDowngrade:
			if old.DowngradeTo == w.downgrade {
				return nil
			}
		case events.ActionThrottle:
			if old.ThrottlePerMin == w.throttle {
				return nil
			}
		default:
			return nil
		}
	}
	v := e.verdict(subject, w.action, w.reason, st.LimitNanoUSD, st.SpentNanoUSD, st.PeriodEnd, now)
	switch w.action {
	case events.ActionLease:
		v.Lease = &events.Lease{RemainingNanoUSD: w.remaining, Instances: live, PerInstanceNanoUSD: w.remaining / int64(live)}
	case events.ActionDowngrade:
		v.DowngradeTo = w.downgrade
	case events.ActionThrottle:
		v.ThrottlePerMin = w.throttle
	}
	if !w.b.lastSpend.IsZero() {
		e.m.decision.WithLabelValues(string(w.action)).Observe(now.Sub(w.b.lastSpend).Seconds())
	}
	p.verdicts[subject] = &v
	return &v
}

func (e *engine) verdict(subject string, a events.Action, reason string, limit, spent int64, expires, now time.Time) events.Verdict {
	if !expires.After(now) {
		expires = now.Add(time.Second)
	}
	return events.Verdict{Schema: events.SchemaVerdict, ID: events.NewID(now), Subject: subject, Action: a, Reason: reason,
		LimitNanoUSD: limit, SpentNanoUSD: spent, IssuedAt: now.UTC(), ExpiresAt: expires.UTC(), IssuedBy: e.actor}
}

func (e *engine) verdictRecord(v events.Verdict, origin string) *kgo.Record {
	e.m.verdicts.WithLabelValues(string(v.Action), origin).Inc()
	return record(e.names.Verdicts(), v.Subject, &v)
}

func (e *engine) stateRecord(id int32, key string, b *budget) *kgo.Record {
	r := record(e.names.BudgetState(), key, &b.st)
	r.Partition = id
	return r
}

func (e *engine) budgetEvent(b *budget, kind events.BudgetEventKind, sev events.Severity, pct int, reason string) events.BudgetEvent {
	st := &b.st
	start, end := st.PeriodStart, st.PeriodEnd
	return events.BudgetEvent{Kind: kind, Severity: sev, Subject: st.Subject, Budget: st.Budget, Period: st.Period,
		PeriodStart: &start, PeriodEnd: &end, ThresholdPct: pct, LimitNanoUSD: st.LimitNanoUSD,
		SpentNanoUSD: st.SpentNanoUSD, Reason: reason}
}

// pending budget events of this flush (made during Process and Flush).
func (e *engine) event(ev events.BudgetEvent, now time.Time) {
	ev.Schema, ev.ID, ev.OccurredAt = events.SchemaBudgetEvent, events.NewID(now), now.UTC()
	if ev.Actor == "" {
		ev.Actor = e.actor
	}
	e.out = append(e.out, record(e.names.BudgetEvents(), ev.Subject, &ev))
	e.m.events.WithLabelValues(string(ev.Kind)).Inc()
	e.alerts = append(e.alerts, alertOf(&ev))
}

func (e *engine) drainEvents() []*kgo.Record {
	out := e.out
	e.out = nil
	return out
}

// Committed sends the alerts of a committed transaction and answers the
// admin requests in it; an aborted one is read again, so its alerts are
// dropped (they come back) and its requests fail.
func (e *engine) Committed(ok bool) {
	for _, r := range e.sent {
		if ok {
			r.done <- nil
		} else {
			r.done <- fmt.Errorf("the transaction did not commit; try again")
		}
	}
	e.sent = nil
	if ok {
		for _, a := range e.alerts {
			e.notify(a)
		}
	}
	e.alerts = nil
}

func alertOf(ev *events.BudgetEvent) alert.Alert {
	title := map[events.BudgetEventKind]string{
		events.BudgetThreshold: "budget threshold crossed", events.BudgetExhausted: "budget exhausted",
		events.BudgetForecast: "budget forecast breach", events.BudgetLoopBreak: "agent loop stopped",
		events.BudgetAnomaly: "spend anomaly", events.BudgetManualKill: "subject killed by an admin",
		events.BudgetManualLift: "verdict lifted by an admin", events.BudgetReset: "verdict lifted",
	}[ev.Kind]
	return alert.Alert{ID: ev.ID, Kind: string(ev.Kind), Severity: string(ev.Severity), Subject: ev.Subject, Budget: ev.Budget,
		Title: ev.Subject + ": " + title, Text: ev.Reason, LimitNanoUSD: ev.LimitNanoUSD, SpentNanoUSD: ev.SpentNanoUSD,
		ForecastNanoUSD: ev.ForecastNanoUSD, ThresholdPct: ev.ThresholdPct, PeriodEnd: deref(ev.PeriodEnd), OccurredAt: ev.OccurredAt}
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func record(topic, key string, ev events.Event) *kgo.Record {
	b, err := events.Encode(ev)
	if err != nil {
		panic(fmt.Sprintf("killswitch: encode %s: %v", ev.SchemaName(), err)) // built here: cannot fail
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

// percent is the share of the limit spent, money or tokens, whichever is
// further along: 100 and more only when a limit is reached.
func percent(st *events.BudgetState) int {
	share := func(spent, limit int64) int {
		if limit <= 0 {
			return 0
		}
		p := int(min(float64(spent)/float64(limit)*100, 1000))
		if spent < limit {
			return min(p, 99)
		}
		return max(p, 100)
	}
	return max(share(st.SpentNanoUSD, st.LimitNanoUSD), share(st.SpentTokens, st.LimitTokens))
}

// forecast projects spend at period end from the current burn rate.
func forecast(st *events.BudgetState, perSecond float64, now time.Time) int64 {
	left := st.PeriodEnd.Sub(now).Seconds()
	if left <= 0 {
		return st.SpentNanoUSD
	}
	return st.SpentNanoUSD + int64(perSecond*left)
}

func insertSorted(s []int, v int) []int {
	i, _ := slices.BinarySearch(s, v)
	return slices.Insert(s, i, v)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// usd formats nano-USD for people: "$5.0512".
func usd(n int64) string {
	s := fmt.Sprintf("%.4f", float64(n)/1e9)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return "$" + s
}

func limitText(st *events.BudgetState) string {
	switch {
	case st.LimitNanoUSD > 0 && st.LimitTokens > 0:
		return fmt.Sprintf("the limit of %s or %d tokens", usd(st.LimitNanoUSD), st.LimitTokens)
	case st.LimitTokens > 0:
		return fmt.Sprintf("the limit of %d tokens", st.LimitTokens)
	}
	return "the limit of " + usd(st.LimitNanoUSD)
}

// jsonBudget is a budget as the admin API shows it.
type jsonBudget struct {
	Budget           string    `json:"budget"`
	Subject          string    `json:"subject"`
	Period           string    `json:"period"`
	PeriodStart      time.Time `json:"period_start"`
	PeriodEnd        time.Time `json:"period_end"`
	LimitNanoUSD     int64     `json:"limit_nano_usd"`
	LimitTokens      int64     `json:"limit_tokens"`
	SpentNanoUSD     int64     `json:"spent_nano_usd"`
	SpentTokens      int64     `json:"spent_tokens"`
	Percent          int       `json:"percent"`
	BurnNanoUSDPerHr int64     `json:"burn_nano_usd_per_hour"`
	ForecastNanoUSD  int64     `json:"forecast_nano_usd"`
	Action           string    `json:"action"`
	Verdict          string    `json:"verdict,omitempty"`
	ThresholdsFired  []int     `json:"thresholds_fired,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
	ForecastAlerted  bool      `json:"forecast_alerted,omitempty"`
}

// snapshot lists the current period of every budget held here.
func (e *engine) snapshot(now time.Time) []jsonBudget {
	var out []jsonBudget
	for _, p := range e.parts {
		for _, b := range p.budgets {
			st := &b.st
			if now.Before(st.PeriodStart) || !now.Before(st.PeriodEnd) {
				continue
			}
			rate := b.burn.perSecond(now, time.Minute)
			j := jsonBudget{Budget: st.Budget, Subject: st.Subject, Period: string(st.Period), PeriodStart: st.PeriodStart,
				PeriodEnd: st.PeriodEnd, LimitNanoUSD: st.LimitNanoUSD, LimitTokens: st.LimitTokens, SpentNanoUSD: st.SpentNanoUSD,
				SpentTokens: st.SpentTokens, Percent: percent(st), BurnNanoUSDPerHr: int64(rate * 3600),
				ForecastNanoUSD: forecast(st, rate, now), ThresholdsFired: st.ThresholdsFired, UpdatedAt: st.UpdatedAt,
				ForecastAlerted: st.ForecastAlerted}
			if b.pol != nil {
				j.Action = string(b.pol.Action)
			}
			if v := p.verdicts[st.Subject]; v != nil && now.Before(v.ExpiresAt) && v.Action != events.ActionAllow {
				j.Verdict = string(v.Action)
			}
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b jsonBudget) int {
		return strings.Compare(a.Budget+"|"+a.Subject, b.Budget+"|"+b.Subject)
	})
	return out
}
