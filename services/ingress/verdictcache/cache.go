package verdictcache

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

// Reasons of decisions that no verdict's own reason explains.
const (
	ReasonNotReady       = "verdict cache not ready"
	ReasonLeaseExhausted = "lease exhausted"
)

// Cache holds the live verdict of every subject. Apply and Delete are for one
// writer (the consumer; concurrent writers are serialised, never readers);
// Check and Reconcile may be called from any number of goroutines.
type Cache struct {
	now  func() time.Time
	snap atomic.Pointer[snapshot]

	ready    atomic.Bool
	failOpen atomic.Bool

	overshoot atomic.Int64 // nano-USD spent past lease shares

	mu sync.Mutex // serialises writers only
}

// snapshot is immutable once published; entries carry their own atomics.
type snapshot struct {
	m map[string]*entry
}

type entry struct {
	subject string
	verdict *events.Verdict // shared with callers through Decision: read-only
	action  events.Action
	expires int64 // unix nanos; the entry is ignored from then on

	perMin int64          // throttle: calls allowed per window
	window *atomic.Uint64 // throttle: minute<<32 | calls in it; kept across re-issued throttles
	lease  *lease         // lease: this instance's share
}

// lease is one instance's share of a subject's remaining budget.
type lease struct {
	left atomic.Int64 // nano-USD still reservable; never below zero
}

// New returns an empty cache that reads time from now. It is ready (there is
// nothing to catch up to) until a Consumer takes it over and marks it not
// ready while it replays the topic.
func New(now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	c := &Cache{now: now}
	c.snap.Store(&snapshot{m: map[string]*entry{}})
	c.ready.Store(true)
	return c
}

// SetReady says whether the cache holds every verdict published before its
// consumer started. While it does not, Check answers by SetFailOpen.
func (c *Cache) SetReady(ready bool) { c.ready.Store(ready) }

// Ready reports what SetReady last said.
func (c *Cache) Ready() bool { return c.ready.Load() }

// SetFailOpen chooses Check's answer while the cache is not ready: allow
// (true) or block with ReasonNotReady (false, the default).
func (c *Cache) SetFailOpen(open bool) { c.failOpen.Store(open) }

// Len is the number of subjects with a verdict, counting expired ones that
// the next write will drop.
func (c *Cache) Len() int { return len(c.snap.Load().m) }

// OvershootNanoUSD is the total cost reconciled past exhausted lease shares
// (summed over the leased subjects of each call) since the cache was made.
func (c *Cache) OvershootNanoUSD() int64 { return c.overshoot.Load() }

// Apply makes v the verdict of its subject, replacing any earlier one. An
// allow verdict, or one already expired, removes the subject instead. A new
// lease replaces the old share; a new throttle keeps counting the current
// minute's calls.
func (c *Cache) Apply(v events.Verdict) {
	c.update(func(b *batch) { b.apply(v) })
}

// Delete removes the verdict of subject (a tombstone on the compacted topic).
func (c *Cache) Delete(subject string) {
	c.update(func(b *batch) { b.delete(subject) })
}

// update copies the live snapshot, dropping expired entries, lets fn change
// the copy and publishes it: one copy for a whole batch of records.
func (c *Cache) update(fn func(b *batch)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load().m
	now := c.now().UnixNano()
	m := make(map[string]*entry, len(old)+1)
	for k, e := range old {
		if e.expires > now {
			m[k] = e
		}
	}
	fn(&batch{m: m, now: now})
	c.snap.Store(&snapshot{m: m})
}

// batch is an unpublished snapshot being written.
type batch struct {
	m   map[string]*entry
	now int64
}

// apply reports false for an action it does not know (and changes nothing).
func (b *batch) apply(v events.Verdict) bool {
	e := &entry{subject: v.Subject, action: v.Action, expires: unixNano(v.ExpiresAt)}
	switch v.Action {
	case events.ActionAllow:
		delete(b.m, v.Subject)
		return true
	case events.ActionBlock, events.ActionDowngrade:
	case events.ActionThrottle:
		e.perMin = int64(v.ThrottlePerMin)
		if prev := b.m[v.Subject]; prev != nil && prev.window != nil {
			e.window = prev.window
		} else {
			e.window = new(atomic.Uint64)
		}
	case events.ActionLease:
		e.lease = new(lease)
		if v.Lease != nil && v.Lease.PerInstanceNanoUSD > 0 {
			e.lease.left.Store(v.Lease.PerInstanceNanoUSD)
		}
	default:
		return false
	}
	if e.expires <= b.now {
		delete(b.m, v.Subject)
		return true
	}
	vc := v
	if v.Lease != nil {
		l := *v.Lease
		vc.Lease = &l
	}
	e.verdict = &vc
	b.m[v.Subject] = e
	return true
}

func (b *batch) delete(subject string) { delete(b.m, subject) }

func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Unix() >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	case t.Unix() <= math.MinInt64/int64(time.Second):
		return math.MinInt64
	}
	return t.UnixNano()
}

// Decision is Check's answer for one call.
type Decision struct {
	// Action is allow, block, downgrade or throttle (the call is over the
	// subject's rate). A lease that covers the call gives allow (or
	// downgrade) with a Reservation; one that cannot gives block.
	Action events.Action
	// Subject is the subject whose verdict decided; empty for a plain allow.
	Subject string
	// Verdict is the deciding verdict (limit, spent, ExpiresAt as reset
	// time for the 429 body). Read-only: it is shared with the cache.
	Verdict *events.Verdict
	// DowngradeTo is the model to route to when Action is downgrade.
	DowngradeTo string
	// Reservation holds what was reserved against lease shares; hand it to
	// Reconcile once the call's real cost is known.
	Reservation Reservation

	reason string
}

// Reason is the human reason for a block, throttle or downgrade: the
// verdict's own, or ReasonNotReady / ReasonLeaseExhausted.
func (d Decision) Reason() string {
	if d.reason != "" {
		return d.reason
	}
	if d.Verdict != nil {
		return d.Verdict.Reason
	}
	return ""
}

// HasReservation reports whether the call holds lease reservations that
// must be reconciled.
func (d Decision) HasReservation() bool { return d.Reservation.n > 0 }

// inlineLeases is how many leased subjects a Reservation holds without
// allocating; a call with more spills into a slice.
const inlineLeases = 4

// Reservation is a call's worst-case cost reserved against the lease share
// of each of its leased subjects. The zero value reserves nothing.
type Reservation struct {
	amount int64
	n      int
	inline [inlineLeases]*lease
	more   []*lease
}

// NanoUSD is the amount reserved against each leased subject.
func (r Reservation) NanoUSD() int64 { return r.amount }

// Leases is the number of leased subjects reserved against.
func (r Reservation) Leases() int { return r.n }

func (r *Reservation) add(l *lease) {
	if r.n < inlineLeases {
		r.inline[r.n] = l
	} else {
		r.more = append(r.more, l)
	}
	r.n++
}

func (r *Reservation) at(i int) *lease {
	if i < inlineLeases {
		return r.inline[i]
	}
	return r.more[i-inlineLeases]
}

// Check decides a call of the given subjects whose cost is at most
// worstCaseNanoUSD. Every subject counts and the most restrictive verdict
// wins: block, then throttle (over the rate), then lease (share cannot cover
// the call: block), then downgrade, then allow; among equals, the first
// subject in the list. Expired verdicts are ignored. Throttle windows and
// lease shares are only consumed when the call is let through.
func (c *Cache) Check(subjects []string, worstCaseNanoUSD int64) Decision {
	if !c.ready.Load() {
		if c.failOpen.Load() {
			return Decision{Action: events.ActionAllow}
		}
		return Decision{Action: events.ActionBlock, reason: ReasonNotReady}
	}
	m := c.snap.Load().m
	if len(m) == 0 {
		return Decision{Action: events.ActionAllow}
	}
	var buf [8]*entry
	hits := buf[:0]
	for _, s := range subjects {
		if e := m[s]; e != nil {
			hits = append(hits, e)
		}
	}
	if len(hits) == 0 {
		return Decision{Action: events.ActionAllow}
	}
	return c.decide(hits, worstCaseNanoUSD)
}

func (c *Cache) decide(hits []*entry, worst int64) Decision {
	now := c.now().UnixNano()
	live := hits[:0]
	for _, e := range hits {
		if e.expires > now {
			live = append(live, e)
		}
	}
	for _, e := range live {
		if e.action == events.ActionBlock {
			return Decision{Action: events.ActionBlock, Subject: e.subject, Verdict: e.verdict}
		}
	}
	minute := uint64(now / int64(time.Minute))
	for i, e := range live {
		if e.action == events.ActionThrottle && !e.take(minute) {
			giveBackTokens(live[:i], minute)
			return Decision{Action: events.ActionThrottle, Subject: e.subject, Verdict: e.verdict}
		}
	}
	if worst < 0 {
		worst = 0
	}
	var d Decision
	d.Reservation.amount = worst
	for i, e := range live {
		if e.action != events.ActionLease {
			continue
		}
		if !e.lease.reserve(worst) {
			for _, p := range live[:i] {
				if p.action == events.ActionLease {
					p.lease.left.Add(worst)
				}
			}
			giveBackTokens(live, minute)
			return Decision{Action: events.ActionBlock, Subject: e.subject, Verdict: e.verdict, reason: ReasonLeaseExhausted}
		}
		d.Reservation.add(e.lease)
	}
	d.Action = events.ActionAllow
	for _, e := range live {
		if e.action == events.ActionDowngrade {
			d.Action, d.Subject, d.Verdict, d.DowngradeTo = events.ActionDowngrade, e.subject, e.verdict, e.verdict.DowngradeTo
			break
		}
	}
	if d.Reservation.n == 0 {
		d.Reservation.amount = 0
	}
	return d
}

// take counts one call in the current minute, unless the minute is full.
func (e *entry) take(minute uint64) bool {
	for {
		st := e.window.Load()
		win, n := st>>32, st&math.MaxUint32
		if minute > win {
			win, n = minute, 0
		}
		if int64(n) >= e.perMin {
			return false
		}
		if e.window.CompareAndSwap(st, win<<32|(n+1)) {
			return true
		}
	}
}

// giveBack uncounts a call taken in minute, if that minute is still current.
func (e *entry) giveBack(minute uint64) {
	for {
		st := e.window.Load()
		win, n := st>>32, st&math.MaxUint32
		if win != minute || n == 0 {
			return
		}
		if e.window.CompareAndSwap(st, win<<32|(n-1)) {
			return
		}
	}
}

func giveBackTokens(es []*entry, minute uint64) {
	for _, e := range es {
		if e.action == events.ActionThrottle {
			e.giveBack(minute)
		}
	}
}

// reserve takes amount from the share if the share covers it. An empty
// share covers nothing, not even a call of unknown (zero) cost.
func (l *lease) reserve(amount int64) bool {
	for {
		left := l.left.Load()
		if left <= 0 || left < amount {
			return false
		}
		if l.left.CompareAndSwap(left, left-amount) {
			return true
		}
	}
}

// Reconcile settles a reservation with the call's real cost: reserved minus
// actual goes back to each leased share, or, when the call cost more, the
// difference is taken from the share; what the share cannot cover is added
// to OvershootNanoUSD. Call it exactly once per Decision with a reservation
// (blocked calls hold none). A share replaced by a newer lease meanwhile is
// settled harmlessly: the new share already stands on its own.
func (c *Cache) Reconcile(r Reservation, actualNanoUSD int64) {
	if r.n == 0 {
		return
	}
	if actualNanoUSD < 0 {
		actualNanoUSD = 0
	}
	diff := r.amount - actualNanoUSD
	for i := 0; i < r.n; i++ {
		l := r.at(i)
		if diff >= 0 {
			l.left.Add(diff)
			continue
		}
		if over := l.take(-diff); over > 0 {
			c.overshoot.Add(over)
		}
	}
}

// take removes up to extra from the share and returns what it could not.
func (l *lease) take(extra int64) (over int64) {
	for {
		left := l.left.Load()
		got := min(max(left, 0), extra)
		if l.left.CompareAndSwap(left, left-got) {
			return extra - got
		}
	}
}
