package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/kclient"
)

// subjectTotals are spend per subject: cost and events.
type subjectTotals map[string][2]int64

func (s subjectTotals) add(subject string, cost, n int64) {
	v := s[subject]
	v[0] += cost
	v[1] += n
	s[subject] = v
}

// expectedSpend is what spend.v1 must add up to for usage events, computed
// here from the events themselves, not by the meter's code.
func expectedSpend(u events.Usage, into subjectTotals) {
	a := u.Attribution
	model := u.ServedModel
	if model == "" {
		model = u.RequestedModel
	}
	for _, kv := range [][2]string{{"team", a.Team}, {"app", a.App}, {"key", a.VirtualKeyID}, {"model", model}, {"customer", a.Customer}, {"user", a.User}, {"env", a.Env}, {"agent_run", a.AgentRunID}} {
		if kv[1] != "" {
			into.add(kv[0]+"="+kv[1], u.Cost.TotalNanoUSD, 1)
		}
	}
	into.add("team="+a.Team+",model="+model, u.Cost.TotalNanoUSD, 1)
}

// TestMeterExactlyOnceThroughKillsAndRebalance is the Meter issue's proof:
// usage events stream in while `burnrate meter` is SIGKILLed three times and
// a second replica joins and leaves; the spend.v1 deltas (read committed)
// add up, per subject, to exactly the produced totals.
func TestMeterExactlyOnceThroughKillsAndRebalance(t *testing.T) {
	const n, chunk = 200_000, 10_000
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BURNRATE_E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	r := newSinkRig(t, "  group: unused\nmeter:\n  flush_interval: 250ms\n  session_timeout: 6s\n")
	want := subjectTotals{}
	start := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	done := make(chan error, 1)
	go func() {
		var first error
		for from := 0; from < n; from += chunk {
			var wg sync.WaitGroup
			var mu sync.Mutex
			for i := from; i < from+chunk; i++ {
				rec, u := sinktest.UsageRecord(r.names.Usage(), i, start.Add(time.Duration(i)*10*time.Millisecond))
				expectedSpend(u, want)
				wg.Add(1)
				r.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						mu.Lock()
						first = err
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			time.Sleep(700 * time.Millisecond)
		}
		done <- first
	}()

	a := startService(t, r.cfgFile, "meter")
	var b *serviceProc
	for kill := 1; kill <= 3; kill++ {
		time.Sleep(time.Duration(2000+rng.IntN(2500)) * time.Millisecond)
		t.Logf("kill %d", kill)
		a.kill()
		a = startService(t, r.cfgFile, "meter")
		switch kill {
		case 1:
			b = startService(t, r.cfgFile, "meter")
			t.Log("second replica joined")
		case 2:
			b.stop()
			t.Log("second replica left")
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("produce: %v", err)
	}

	var got subjectTotals
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = r.readSpend(t)
		if equalTotals(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	a.stop()
	if a.exited() && t.Failed() {
		t.Logf("meter logs:\n%s", tailString(a.p.logs.String(), 4000))
	}
	bad := 0
	for subject, w := range want {
		if g := got[subject]; g != w {
			bad++
			if bad <= 10 {
				t.Errorf("%s: spend.v1 adds up to %d nano-USD over %d events, produced %d over %d", subject, g[0], g[1], w[0], w[1])
			}
		}
	}
	for subject := range got {
		if _, ok := want[subject]; !ok {
			t.Errorf("spend.v1 has subject %s that no event had", subject)
		}
	}
	t.Logf("%d subjects, %d wrong", len(want), bad)
}

func equalTotals(a, b subjectTotals) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// readSpend reads spend.v1 from the start (read committed) up to its end.
func (r *sinkRig) readSpend(t *testing.T) subjectTotals {
	t.Helper()
	cl, err := kclient.New(r.kcfg, "spend-reader", kgo.ConsumeTopics(r.names.Spend()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := subjectTotals{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		fs.EachRecord(func(rec *kgo.Record) {
			s, err := events.DecodeSpend(rec.Value)
			if err != nil {
				t.Errorf("spend.v1 record: %v", err)
				return
			}
			if s.Events > 0 || s.DeltaNanoUSD > 0 {
				out.add(s.Subject, s.DeltaNanoUSD, s.Events)
			}
		})
	}
}
