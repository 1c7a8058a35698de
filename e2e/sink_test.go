package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/kclient"
)

// serviceProc is one `burnrate sink|meter` process that can be killed and
// replaced.
type serviceProc struct {
	t    *testing.T
	cfg  string
	p    *proc
	done chan error
}

// startService starts `burnrate <cmd> --config cfgFile`.
func startService(t *testing.T, cfgFile, cmd string) *serviceProc {
	t.Helper()
	s := &serviceProc{t: t, cfg: cfgFile, p: startProc(t, nil, cmd, "--config", cfgFile), done: make(chan error, 1)}
	go func() { s.done <- s.p.cmd.Wait() }()
	return s
}

func (s *serviceProc) kill() {
	s.p.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop asks for a graceful stop and requires exit status 0.
func (s *serviceProc) stop() {
	s.t.Helper()
	s.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("sink exited with %v after SIGTERM; logs:\n%s", err, tailString(s.p.logs.String(), 3000))
		}
	case <-time.After(30 * time.Second):
		s.t.Errorf("sink did not exit within 30s of SIGTERM")
		s.kill()
	}
}

func (s *serviceProc) exited() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// producedStream is what the producer goroutine wrote.
type producedStream struct {
	rows int
	cost int64
	bad  map[string]bool // "partition/offset" of every record meant for the dead-letter topic
	err  error
}

// produceWithBadRecords writes n valid usage events in chunks, with the
// sinktest.Bad records spread among them every badEvery events, over span
// of event time from start.
func (r *sinkRig) produceWithBadRecords(n, chunk, badEvery int, start time.Time, span time.Duration, pauseEvery time.Duration) producedStream {
	out := producedStream{bad: map[string]bool{}}
	var mu sync.Mutex
	step := span / time.Duration(n)
	for from := 0; from < n; from += chunk {
		var wg sync.WaitGroup
		for i := from; i < min(from+chunk, n); i++ {
			rec, u := sinktest.UsageRecord(r.names.Usage(), i, start.Add(time.Duration(i)*step))
			out.cost += u.Cost.TotalNanoUSD
			out.rows++
			recs := []*kgo.Record{rec}
			isBad := []bool{false}
			if i%badEvery == badEvery/2 {
				bad, _ := sinktest.Bad(r.names.Usage(), start)
				b := bad[(i/badEvery)%len(bad)]
				b.Key = rec.Key
				recs = append(recs, b)
				isBad = append(isBad, true)
			}
			for j, rr := range recs {
				wg.Add(1)
				bad := isBad[j]
				r.cl.Produce(context.Background(), rr, func(pr *kgo.Record, err error) {
					defer wg.Done()
					mu.Lock()
					defer mu.Unlock()
					if err != nil && out.err == nil {
						out.err = err
					}
					if bad && err == nil {
						out.bad[fmt.Sprintf("%d/%d", pr.Partition, pr.Offset)] = true
					}
				})
			}
		}
		wg.Wait()
		if pauseEvery > 0 {
			time.Sleep(pauseEvery)
		}
	}
	return out
}

// TestSinkExactlyOnceThroughKillsAndRebalances is the Sink issue's proof:
// one million usage events (with malformed and schema-invalid records among
// them) go through `burnrate sink` while it is SIGKILLed at random moments
// five times and a second replica joins and leaves; at the end ClickHouse
// holds every event exactly once, the cost sum matches to the nano-dollar,
// every rollup equals the same aggregate of the raw table, and every bad
// record is in the dead-letter topic.
func TestSinkExactlyOnceThroughKillsAndRebalances(t *testing.T) {
	const n = 1_000_000
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BURNRATE_E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (BURNRATE_E2E_SEED reproduces the kill schedule)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	r := newSinkRig(t, "  batch_interval: 500ms\n  session_timeout: 6s\n")
	// Two hours of event time across a month end: batches must cut there.
	start := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	produced := make(chan producedStream, 1)
	go func() {
		produced <- r.produceWithBadRecords(n, 100_000, 10_000, start, 2*time.Hour, 500*time.Millisecond)
	}()

	a := startService(t, r.cfgFile, "sink")
	var b *serviceProc
	last := uint64(0)
	for kill := 1; kill <= 5; kill++ {
		// Kill mid-stream: once the replicas are writing again, at a random
		// moment.
		for deadline := time.Now().Add(time.Minute); r.rows(t) <= last && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		last = r.rows(t)
		t.Logf("kill %d: SIGKILL with %d rows in ClickHouse", kill, last)
		a.kill()
		a = startService(t, r.cfgFile, "sink")
		switch kill {
		case 2:
			b = startService(t, r.cfgFile, "sink")
			t.Log("second replica joined")
		case 4:
			b.stop()
			t.Log("second replica left")
		}
	}
	res := <-produced
	if res.err != nil {
		t.Fatalf("produce: %v", res.err)
	}
	took := r.waitRows(t, n, 5*time.Minute)
	t.Logf("all %d rows in ClickHouse %s after the last kill", n, took.Round(time.Millisecond))
	time.Sleep(2 * time.Second) // a duplicate would land by now
	a.stop()
	if a.exited() && t.Failed() {
		t.Logf("sink logs:\n%s", tailString(a.p.logs.String(), 4000))
	}

	var rows, ids, dupOffsets uint64
	var cost int64
	r.query(t, "SELECT count(), uniqExact(id), sum(cost_nano_usd) FROM {db}.usage_events", &rows, &ids, &cost)
	r.query(t, "SELECT count() FROM (SELECT kafka_partition, kafka_offset, count() AS c FROM {db}.usage_events GROUP BY kafka_partition, kafka_offset HAVING c > 1)", &dupOffsets)
	if rows != n || ids != n || dupOffsets != 0 {
		t.Errorf("rows %d, distinct ids %d, duplicated offsets %d; want %d, %d, 0", rows, ids, dupOffsets, n, n)
	}
	if cost != res.cost {
		t.Errorf("cost sum %d nano-USD in ClickHouse, %d produced", cost, res.cost)
	}
	var months uint64
	r.query(t, "SELECT uniqExact(toYYYYMM(occurred_at)) FROM {db}.usage_events", &months)
	if months != 2 {
		t.Errorf("the events span %d months, want 2 (the test must cross a month end)", months)
	}
	for _, rollup := range []struct{ table, bucket string }{
		{"usage_minute", "toStartOfMinute"}, {"usage_hour", "toStartOfHour"}, {"usage_day", "toStartOfDay"},
	} {
		// An INSERT writes its views after the raw part: wait for the last.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var requests uint64
			r.query(t, "SELECT toUInt64(sum(requests)) FROM {db}."+rollup.table, &requests)
			if requests >= uint64(n) || time.Now().After(deadline) {
				break
			}
		}
		var fromRollup, fromRaw [2]uint64
		dims := "bucket, org, team, app, env, provider, model, user, customer, feature, virtual_key_id"
		sums := "sum(requests) AS r, sum(errors) AS e, sum(blocked) AS b, sum(estimated) AS es, sum(input_tokens) AS i, sum(cached_input_tokens) AS ci, sum(cache_write_5m_tokens) AS w5, sum(cache_write_1h_tokens) AS w1, sum(output_tokens) AS o, sum(reasoning_tokens) AS rt, sum(cost_nano_usd) AS c"
		digest := "SELECT count(), sum(cityHash64(" + dims + ", r, e, b, es, i, ci, w5, w1, o, rt, c)) FROM "
		r.query(t, digest+"(SELECT "+dims+", "+sums+" FROM {db}."+rollup.table+" GROUP BY "+dims+")", &fromRollup[0], &fromRollup[1])
		raw := "SELECT " + rollup.bucket + "(occurred_at) AS bucket, org, team, app, env, provider, served_model AS model, user, customer, feature, virtual_key_id, " +
			"toUInt64(count()) AS r, toUInt64(countIf(status = 'upstream_error')) AS e, toUInt64(countIf(status = 'blocked')) AS b, toUInt64(countIf(estimated = 1)) AS es, " +
			"sum(input_tokens) AS i, sum(cached_input_tokens) AS ci, sum(cache_write_5m_tokens) AS w5, sum(cache_write_1h_tokens) AS w1, sum(output_tokens) AS o, sum(reasoning_tokens) AS rt, sum(cost_nano_usd) AS c " +
			"FROM {db}.usage_events GROUP BY " + dims
		r.query(t, digest+"("+raw+")", &fromRaw[0], &fromRaw[1])
		if fromRollup != fromRaw {
			t.Errorf("%s: %d groups (digest %x), raw table gives %d groups (digest %x)", rollup.table, fromRollup[0], fromRollup[1], fromRaw[0], fromRaw[1])
		}
	}

	// Every bad record, and nothing else, is in the dead-letter topic
	// (at least once: a kill between producing them and confirming the
	// batch produces them again).
	got := r.deadLetterSources(t, len(res.bad))
	for k := range res.bad {
		if !got[k] {
			t.Errorf("bad record at %s is not in the dead-letter topic", k)
		}
	}
	for k := range got {
		if !res.bad[k] {
			t.Errorf("dead-letter topic holds %s, which was a valid record", k)
		}
	}
	t.Logf("%d bad records, all in the dead-letter topic", len(res.bad))
}

// TestSinkSurvivesClickHouseOutage stops ClickHouse for 30 s while events
// keep coming: nothing is lost, nothing doubled, the sink never exits.
func TestSinkSurvivesClickHouseOutage(t *testing.T) {
	const n = 300_000
	r := newSinkRig(t, "  batch_interval: 500ms\n  session_timeout: 6s\n  insert_timeout: 10s\n")
	start := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	produced := make(chan producedStream, 1)
	go func() {
		produced <- r.produceWithBadRecords(n, 20_000, 50_000, start, time.Hour, 2500*time.Millisecond)
	}()
	s := startService(t, r.cfgFile, "sink")

	time.Sleep(4 * time.Second)
	before := r.rows(t)
	if err := env.ClickHouse.Stop(); err != nil {
		t.Fatalf("stop clickhouse: %v", err)
	}
	t.Logf("ClickHouse stopped with %d rows in", before)
	time.Sleep(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.ClickHouse.Restart(ctx); err != nil {
		t.Fatalf("restart clickhouse: %v", err)
	}
	t.Log("ClickHouse back")
	if s.exited() {
		t.Fatalf("the sink exited during the outage; logs:\n%s", tailString(s.p.logs.String(), 4000))
	}
	res := <-produced
	if res.err != nil {
		t.Fatalf("produce: %v", res.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink logs:\n%s", tailString(s.p.logs.String(), 6000))
		}
	})
	r.waitRows(t, n, 2*time.Minute)
	time.Sleep(2 * time.Second)
	s.stop()
	var rows, ids uint64
	var cost int64
	r.query(t, "SELECT count(), uniqExact(id), sum(cost_nano_usd) FROM {db}.usage_events", &rows, &ids, &cost)
	if rows != n || ids != n || cost != res.cost {
		t.Errorf("rows %d, distinct ids %d, cost %d; want %d, %d, %d", rows, ids, cost, n, n, res.cost)
	}
	got := r.deadLetterSources(t, len(res.bad))
	if len(got) != len(res.bad) {
		t.Errorf("dead-letter topic holds %d distinct records, want %d", len(got), len(res.bad))
	}
}

// deadLetterSources reads the dead-letter topic until it has seen want
// distinct sources (or 20 s pass) and returns them as "partition/offset".
func (r *sinkRig) deadLetterSources(t *testing.T, want int) map[string]bool {
	t.Helper()
	cl, err := kclient.New(r.kcfg, "dlq-reader", kgo.ConsumeTopics(r.names.DeadLetter()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			var p, o string
			for _, h := range rec.Headers {
				switch h.Key {
				case "burnrate.source.partition":
					p = string(h.Value)
				case "burnrate.source.offset":
					o = string(h.Value)
				}
			}
			got[p+"/"+o] = true
		})
	}
	return got
}
