package verdictcache

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

// t0 is the frozen time of the unit tests.
var t0 = time.Date(2026, 3, 14, 9, 26, 30, 0, time.UTC)

// frozen is a clock the test moves by hand.
type frozen struct{ ns atomic.Int64 }

func newFrozen() *frozen              { f := &frozen{}; f.ns.Store(t0.UnixNano()); return f }
func (f *frozen) now() time.Time      { return time.Unix(0, f.ns.Load()).UTC() }
func (f *frozen) add(d time.Duration) { f.ns.Add(int64(d)) }

// verdict returns a valid verdict of subject that expires an hour after t0.
func verdict(subject string, action events.Action) events.Verdict {
	v := events.Verdict{
		Schema: events.SchemaVerdict, ID: events.NewID(t0), Subject: subject, Action: action,
		Reason: "budget " + subject + " " + string(action), LimitNanoUSD: 100e9, SpentNanoUSD: 99e9,
		IssuedAt: t0.Add(-time.Minute), ExpiresAt: t0.Add(time.Hour), IssuedBy: "killswitch-0",
	}
	switch action {
	case events.ActionDowngrade:
		v.DowngradeTo = "gpt-4o-mini"
	case events.ActionThrottle:
		v.ThrottlePerMin = 3
	case events.ActionLease:
		v.Lease = &events.Lease{RemainingNanoUSD: 3000, Instances: 3, PerInstanceNanoUSD: 1000}
	}
	return v
}

func throttle(subject string, perMin int) events.Verdict {
	v := verdict(subject, events.ActionThrottle)
	v.ThrottlePerMin = perMin
	return v
}

func leased(subject string, share int64) events.Verdict {
	v := verdict(subject, events.ActionLease)
	v.Lease = &events.Lease{RemainingNanoUSD: share, Instances: 1, PerInstanceNanoUSD: share}
	return v
}

func newCache(vs ...events.Verdict) (*Cache, *frozen) {
	clk := newFrozen()
	c := New(clk.now)
	for _, v := range vs {
		c.Apply(v)
	}
	return c, clk
}

// left is what remains of subject's lease share.
func left(t *testing.T, c *Cache, subject string) int64 {
	t.Helper()
	e := c.snap.Load().m[subject]
	if e == nil || e.lease == nil {
		t.Fatalf("%s holds no lease", subject)
	}
	return e.lease.left.Load()
}

func TestCheckEachAction(t *testing.T) {
	f := func(v events.Verdict, wantAction events.Action, wantDowngrade string, wantReserved bool) {
		t.Helper()
		c, _ := newCache(v)
		d := c.Check([]string{"key=vk_1", v.Subject, "model=gpt-4o"}, 100)
		if d.Action != wantAction || d.DowngradeTo != wantDowngrade || d.HasReservation() != wantReserved {
			t.Errorf("%s: got action %s, downgrade %q, reserved %v; want %s, %q, %v",
				v.Action, d.Action, d.DowngradeTo, d.HasReservation(), wantAction, wantDowngrade, wantReserved)
		}
		if wantAction != events.ActionAllow && (d.Subject != v.Subject || d.Verdict == nil || d.Verdict.ID != v.ID || d.Reason() != v.Reason) {
			t.Errorf("%s: decided by %q (%+v), reason %q; want %q", v.Action, d.Subject, d.Verdict, d.Reason(), v.Subject)
		}
	}
	f(verdict("team=payments", events.ActionBlock), events.ActionBlock, "", false)
	f(verdict("team=payments", events.ActionDowngrade), events.ActionDowngrade, "gpt-4o-mini", false)
	f(verdict("team=payments", events.ActionThrottle), events.ActionAllow, "", false) // under the rate
	f(verdict("team=payments", events.ActionLease), events.ActionAllow, "", true)
	f(verdict("team=payments", events.ActionAllow), events.ActionAllow, "", false)

	c, _ := newCache()
	if d := c.Check([]string{"team=payments"}, 1); d.Action != events.ActionAllow || d.Subject != "" || d.Verdict != nil {
		t.Errorf("empty cache: %+v", d)
	}
	if d := c.Check(nil, 1); d.Action != events.ActionAllow {
		t.Errorf("no subjects: %+v", d)
	}
}

func TestBlockBodyFields(t *testing.T) {
	v := verdict("customer=acme", events.ActionBlock)
	c, _ := newCache(v)
	d := c.Check([]string{"customer=acme"}, 0)
	if d.Verdict.LimitNanoUSD != v.LimitNanoUSD || d.Verdict.SpentNanoUSD != v.SpentNanoUSD || !d.Verdict.ExpiresAt.Equal(v.ExpiresAt) {
		t.Fatalf("verdict for the 429 body: %+v, want %+v", d.Verdict, v)
	}
}

func TestAllowLifts(t *testing.T) {
	c, _ := newCache(verdict("team=payments", events.ActionBlock))
	c.Apply(verdict("team=payments", events.ActionAllow))
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionAllow {
		t.Fatalf("after allow: %s", d.Action)
	}
	if c.Len() != 0 {
		t.Fatalf("allow left %d entries", c.Len())
	}
}

func TestDeleteRemoves(t *testing.T) {
	c, _ := newCache(verdict("team=payments", events.ActionBlock), verdict("app=checkout", events.ActionBlock))
	c.Delete("team=payments")
	c.Delete("user=never-seen")
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionAllow {
		t.Fatalf("after delete: %s", d.Action)
	}
	if d := c.Check([]string{"app=checkout"}, 0); d.Action != events.ActionBlock {
		t.Fatalf("other subject: %s", d.Action)
	}
}

func TestLaterVerdictReplaces(t *testing.T) {
	c, _ := newCache(verdict("team=payments", events.ActionBlock), verdict("team=payments", events.ActionDowngrade))
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionDowngrade {
		t.Fatalf("got %s, want the later downgrade", d.Action)
	}
}

func TestExpiry(t *testing.T) {
	v := verdict("team=payments", events.ActionBlock)
	c, clk := newCache(v)
	subjects := []string{"team=payments"}

	clk.add(time.Hour - time.Nanosecond)
	if d := c.Check(subjects, 0); d.Action != events.ActionBlock {
		t.Fatalf("1ns before expiry: %s", d.Action)
	}
	clk.add(time.Nanosecond) // now == ExpiresAt: lifted without a new message
	if d := c.Check(subjects, 0); d.Action != events.ActionAllow {
		t.Fatalf("at expiry: %s", d.Action)
	}
	c.Apply(verdict("app=checkout", events.ActionBlock)) // any write drops expired entries
	if c.Len() != 0 {
		t.Fatalf("%d entries after a write past expiry, want 0 (the new verdict is expired too)", c.Len())
	}

	// An already expired verdict lifts the earlier one rather than lingering.
	c, _ = newCache(v)
	old := verdict("team=payments", events.ActionDowngrade)
	old.ExpiresAt = t0
	c.Apply(old)
	if d := c.Check(subjects, 0); d.Action != events.ActionAllow || c.Len() != 0 {
		t.Fatalf("after an expired verdict: %s with %d entries", d.Action, c.Len())
	}
}

func TestMostRestrictiveWins(t *testing.T) {
	exhausted := leased("user=u1", 10)
	over := throttle("app=checkout", 1)
	f := func(vs []events.Verdict, subjects []string, wantAction events.Action, wantSubject, wantReason string) {
		t.Helper()
		c, _ := newCache(vs...)
		c.Check([]string{"app=checkout"}, 0) // use up the throttle's minute
		d := c.Check(subjects, 100)
		if d.Action != wantAction || d.Subject != wantSubject || d.Reason() != wantReason {
			t.Errorf("%v: got %s by %q (%q), want %s by %q (%q)", subjects, d.Action, d.Subject, d.Reason(), wantAction, wantSubject, wantReason)
		}
	}
	all := []events.Verdict{verdict("model=gpt-4o", events.ActionDowngrade), exhausted, over, verdict("team=payments", events.ActionBlock)}
	f(all, []string{"model=gpt-4o", "user=u1", "app=checkout", "team=payments"}, events.ActionBlock, "team=payments", "budget team=payments block")
	f(all, []string{"model=gpt-4o", "user=u1", "app=checkout"}, events.ActionThrottle, "app=checkout", "budget app=checkout throttle")
	f(all, []string{"model=gpt-4o", "user=u1"}, events.ActionBlock, "user=u1", ReasonLeaseExhausted)
	f(all, []string{"key=vk_1", "model=gpt-4o"}, events.ActionDowngrade, "model=gpt-4o", "budget model=gpt-4o downgrade")
	f(all, []string{"key=vk_1"}, events.ActionAllow, "", "")

	// Among equals the first subject decides.
	two := []events.Verdict{verdict("team=a", events.ActionBlock), verdict("team=b", events.ActionBlock)}
	f(two, []string{"team=b", "team=a"}, events.ActionBlock, "team=b", "budget team=b block")

	// An expired block does not hide a live downgrade.
	expired := verdict("team=payments", events.ActionBlock)
	expired.ExpiresAt = t0.Add(time.Second)
	c, clk := newCache(expired, verdict("model=gpt-4o", events.ActionDowngrade))
	clk.add(time.Second)
	if d := c.Check([]string{"team=payments", "model=gpt-4o"}, 0); d.Action != events.ActionDowngrade {
		t.Errorf("expired block with live downgrade: %s", d.Action)
	}
}

func TestRefusedCallsConsumeNothing(t *testing.T) {
	// A block elsewhere: neither the throttle's minute nor the share is used.
	c, _ := newCache(throttle("app=checkout", 1), leased("user=u1", 100), verdict("team=payments", events.ActionBlock))
	for range 5 {
		c.Check([]string{"app=checkout", "user=u1", "team=payments"}, 100)
	}
	if got := left(t, c, "user=u1"); got != 100 {
		t.Fatalf("share after blocked calls: %d, want 100", got)
	}
	if d := c.Check([]string{"app=checkout", "user=u1"}, 100); d.Action != events.ActionAllow || !d.HasReservation() {
		t.Fatalf("first unblocked call: %+v", d)
	}

	// An exhausted lease gives back the throttle token it passed.
	c, _ = newCache(throttle("app=checkout", 1), leased("user=u1", 10))
	if d := c.Check([]string{"app=checkout", "user=u1"}, 100); d.Reason() != ReasonLeaseExhausted {
		t.Fatalf("got %s %q, want lease exhausted", d.Action, d.Reason())
	}
	if d := c.Check([]string{"app=checkout"}, 0); d.Action != events.ActionAllow {
		t.Fatalf("throttle token was spent by a refused call: %s", d.Action)
	}

	// Several leases: all or none.
	c, _ = newCache(leased("team=payments", 1000), leased("user=u1", 50), leased("app=checkout", 1000))
	if d := c.Check([]string{"team=payments", "user=u1", "app=checkout"}, 100); d.Action != events.ActionBlock || d.Subject != "user=u1" || d.HasReservation() {
		t.Fatalf("got %+v, want block by user=u1 without reservation", d)
	}
	for _, s := range []string{"team=payments", "app=checkout"} {
		if got := left(t, c, s); got != 1000 {
			t.Errorf("%s share after rollback: %d, want 1000", s, got)
		}
	}
}

func TestThrottleWindow(t *testing.T) {
	c, clk := newCache(throttle("app=checkout", 3))
	subjects := []string{"app=checkout"}
	want := func(a events.Action) {
		t.Helper()
		if d := c.Check(subjects, 0); d.Action != a {
			t.Fatalf("at %s: %s, want %s", clk.now().Format(time.TimeOnly), d.Action, a)
		}
	}
	want(events.ActionAllow)
	want(events.ActionAllow)
	want(events.ActionAllow)
	want(events.ActionThrottle)
	want(events.ActionThrottle) // refused calls do not count

	clk.add(30 * time.Second) // t0 is at :30, so this is the next minute
	want(events.ActionAllow)

	// A re-issued throttle keeps counting this minute with its new limit.
	c.Apply(throttle("app=checkout", 2))
	want(events.ActionAllow)
	want(events.ActionThrottle)
	c.Apply(throttle("app=checkout", 5))
	want(events.ActionAllow)
	want(events.ActionAllow)
	want(events.ActionAllow)
	want(events.ActionThrottle)

	// A throttle after some other verdict starts afresh.
	c.Apply(verdict("app=checkout", events.ActionBlock))
	c.Apply(throttle("app=checkout", 1))
	want(events.ActionAllow)
	want(events.ActionThrottle)

	// A clock that steps back stays in the latest minute.
	clk.add(-2 * time.Minute)
	want(events.ActionThrottle)
}

func TestLeaseReserveAndReconcile(t *testing.T) {
	c, _ := newCache(leased("team=payments", 1000))
	subjects := []string{"key=vk_1", "team=payments"}
	check := func(worst int64, want events.Action) Decision {
		t.Helper()
		d := c.Check(subjects, worst)
		if d.Action != want {
			t.Fatalf("worst case %d: %s (%q), want %s", worst, d.Action, d.Reason(), want)
		}
		return d
	}
	a := check(400, events.ActionAllow)
	if a.Reservation.NanoUSD() != 400 || a.Reservation.Leases() != 1 {
		t.Fatalf("reservation %d on %d leases", a.Reservation.NanoUSD(), a.Reservation.Leases())
	}
	b := check(400, events.ActionAllow)
	d := check(400, events.ActionBlock) // 200 left
	if d.Reason() != ReasonLeaseExhausted || d.Subject != "team=payments" || d.Verdict == nil || d.HasReservation() {
		t.Fatalf("exhausted: %+v", d)
	}
	if got := left(t, c, "team=payments"); got != 200 {
		t.Fatalf("left %d, want 200", got)
	}
	c.Reconcile(a.Reservation, 100) // 300 back
	if got := left(t, c, "team=payments"); got != 500 {
		t.Fatalf("after giving back: %d, want 500", got)
	}
	check(400, events.ActionAllow)  // 100 left
	c.Reconcile(b.Reservation, 450) // takes 50 more: 50 left
	if got := left(t, c, "team=payments"); got != 50 || c.OvershootNanoUSD() != 0 {
		t.Fatalf("after taking more: left %d, overshoot %d", got, c.OvershootNanoUSD())
	}
	e := check(50, events.ActionAllow) // 0 left
	c.Reconcile(e.Reservation, 80)     // 30 the share cannot cover
	if got := left(t, c, "team=payments"); got != 0 || c.OvershootNanoUSD() != 30 {
		t.Fatalf("past the share: left %d, overshoot %d; want 0, 30", got, c.OvershootNanoUSD())
	}
	check(0, events.ActionBlock) // an empty share covers nothing
	c.Reconcile(Reservation{}, 1e9)
	c.Reconcile(d.Reservation, 1e9) // blocked calls hold nothing to settle
	if c.OvershootNanoUSD() != 30 {
		t.Fatalf("empty reservations changed the overshoot: %d", c.OvershootNanoUSD())
	}

	// A new lease replaces the share; settling an old reservation leaves it be.
	c.Apply(leased("team=payments", 700))
	if got := left(t, c, "team=payments"); got != 700 {
		t.Fatalf("new lease: %d, want 700", got)
	}
	c.Reconcile(a.Reservation, 0)
	if got := left(t, c, "team=payments"); got != 700 {
		t.Fatalf("old reservation changed the new share: %d", got)
	}
}

func TestReservationBeyondInline(t *testing.T) {
	var vs []events.Verdict
	var subjects []string
	for i := range inlineLeases + 3 {
		s := fmt.Sprintf("team=t%d", i)
		vs = append(vs, leased(s, 1000))
		subjects = append(subjects, s)
	}
	c, _ := newCache(vs...)
	d := c.Check(subjects, 300)
	if d.Reservation.Leases() != len(subjects) {
		t.Fatalf("reserved on %d leases, want %d", d.Reservation.Leases(), len(subjects))
	}
	c.Reconcile(d.Reservation, 100)
	for _, s := range subjects {
		if got := left(t, c, s); got != 900 {
			t.Errorf("%s: %d left, want 900", s, got)
		}
	}
}

func TestNotReady(t *testing.T) {
	c, _ := newCache()
	c.SetReady(false)
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionBlock || d.Reason() != ReasonNotReady || d.Verdict != nil {
		t.Fatalf("fail-closed: %+v", d)
	}
	c.SetFailOpen(true)
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionAllow {
		t.Fatalf("fail-open: %+v", d)
	}
	c.SetFailOpen(false)
	c.SetReady(true)
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionAllow {
		t.Fatalf("ready: %+v", d)
	}
}

func TestUnknownActionIgnored(t *testing.T) {
	c, _ := newCache(verdict("team=payments", events.ActionBlock))
	c.Apply(verdict("team=payments", events.Action("quarantine")))
	if d := c.Check([]string{"team=payments"}, 0); d.Action != events.ActionBlock {
		t.Fatalf("unknown action replaced the block: %s", d.Action)
	}
}

// 200 goroutines race for one share: exactly floor(R/c) calls get through
// and the reservations never exceed the share.
func TestLeaseConcurrentNeverOverReserves(t *testing.T) {
	const (
		share = 1_000_000
		cost  = 3_000
		procs = 200
		tries = 10
	)
	c, _ := newCache(leased("team=payments", share), verdict("model=gpt-4o", events.ActionDowngrade))
	subjects := []string{"key=vk_1", "team=payments", "model=gpt-4o"}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range procs {
		wg.Go(func() {
			for range tries {
				if d := c.Check(subjects, cost); d.HasReservation() {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := ok.Load(); got*cost > share || got != share/cost {
		t.Fatalf("%d calls reserved %d of a %d share; want exactly %d calls", got, got*cost, share, share/cost)
	}
	if got := left(t, c, "team=payments"); got != share-(share/cost)*cost {
		t.Fatalf("left %d", got)
	}
}

// Mixed costs with reconciles running alongside: what is reserved at any
// time stays within the share, and the share ends at share - actual costs.
func TestLeaseConcurrentReserveAndReconcile(t *testing.T) {
	const share = 5_000_000
	c, _ := newCache(leased("team=payments", share), leased("user=u1", share))
	subjects := []string{"team=payments", "user=u1"}
	var spent, reserved atomic.Int64
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			for i := range 20 {
				worst := int64(1000 + 100*((g+i)%7))
				d := c.Check(subjects, worst)
				if !d.HasReservation() {
					continue
				}
				if r := reserved.Add(worst); r > share {
					t.Errorf("outstanding reservations %d exceed the share %d", r, share)
				}
				actual := worst / 2
				spent.Add(actual)
				reserved.Add(-worst)
				c.Reconcile(d.Reservation, actual)
			}
		})
	}
	wg.Wait()
	for _, s := range subjects {
		if got := left(t, c, s); got != share-spent.Load() {
			t.Errorf("%s: left %d, want %d", s, got, share-spent.Load())
		}
	}
}

func TestThrottleConcurrent(t *testing.T) {
	c, _ := newCache(throttle("app=checkout", 50))
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for range 3 {
				if c.Check([]string{"app=checkout"}, 0).Action == events.ActionAllow {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 50 {
		t.Fatalf("%d calls allowed in the minute, want 50", ok.Load())
	}
}

// Readers see whole snapshots while the writer applies and deletes.
func TestConcurrentApplyAndCheck(t *testing.T) {
	c, _ := newCache()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := c.Check([]string{"team=a", "team=b", "team=c"}, 10)
				if d.HasReservation() {
					c.Reconcile(d.Reservation, 5)
				}
			}
		})
	}
	for i := range 2000 {
		s := fmt.Sprintf("team=%c", 'a'+i%3)
		switch i % 4 {
		case 0:
			c.Apply(verdict(s, events.ActionBlock))
		case 1:
			c.Apply(leased(s, 100))
		case 2:
			c.Apply(throttle(s, 10))
		case 3:
			c.Delete(s)
		}
	}
	close(stop)
	wg.Wait()
}

var benchSubjects = []string{
	"key=vk_123", "team=payments", "app=checkout", "user=u1",
	"customer=acme", "agent_run=0199a3c2-7d1e-7c3a-9f00-4b2c1d0e9a77", "model=gpt-4o",
}

// benchCache holds 10k unrelated subjects plus, of the benchmark's seven, a
// downgrade, an expired block and a lease large enough never to run out.
func benchCache() *Cache {
	c, clk := newCache()
	c.update(func(b *batch) {
		for i := range 10_000 {
			b.apply(verdict(fmt.Sprintf("user=other-%d", i), events.ActionBlock))
		}
		b.apply(verdict("team=payments", events.ActionDowngrade))
		expired := verdict("app=checkout", events.ActionBlock)
		expired.ExpiresAt = t0.Add(time.Second)
		b.apply(expired)
		b.apply(leased("customer=acme", 1<<62))
	})
	clk.add(time.Second)
	return c
}

func TestCheckDoesNotAllocate(t *testing.T) {
	c := benchCache()
	c.Apply(throttle("user=u1", 1<<30))
	var d Decision
	allocs := testing.AllocsPerRun(1000, func() {
		d = c.Check(benchSubjects, 1000)
		c.Reconcile(d.Reservation, 600)
	})
	if allocs != 0 {
		t.Fatalf("Check+Reconcile: %v allocs per call, want 0", allocs)
	}
	if d.Action != events.ActionDowngrade || !d.HasReservation() {
		t.Fatalf("benchmark decision: %+v", d)
	}
	blocked, _ := newCache(verdict("user=u1", events.ActionBlock))
	if allocs := testing.AllocsPerRun(1000, func() { d = blocked.Check(benchSubjects, 1000) }); allocs != 0 {
		t.Fatalf("blocked Check: %v allocs per call, want 0", allocs)
	}
	empty, _ := newCache()
	if allocs := testing.AllocsPerRun(1000, func() { d = empty.Check(benchSubjects, 1000) }); allocs != 0 {
		t.Fatalf("empty Check: %v allocs per call, want 0", allocs)
	}
}

func BenchmarkVerdictCheck(b *testing.B) {
	c := benchCache()
	b.ReportAllocs()
	for b.Loop() {
		d := c.Check(benchSubjects, 1000)
		c.Reconcile(d.Reservation, 1000)
	}
}

// BenchmarkVerdictCheckNoHits is the common case: none of the call's
// subjects has a verdict.
func BenchmarkVerdictCheckNoHits(b *testing.B) {
	c := benchCache()
	subjects := []string{"key=vk_9", "team=search", "app=web", "user=u9", "customer=globex", "agent_run=r9", "model=claude"}
	b.ReportAllocs()
	for b.Loop() {
		c.Check(subjects, 1000)
	}
}

func BenchmarkVerdictCheckParallel(b *testing.B) {
	c := benchCache()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := c.Check(benchSubjects, 1000)
			c.Reconcile(d.Reservation, 1000)
		}
	})
}
