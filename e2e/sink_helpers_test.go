package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/sink/sinktest"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// sinkRig is a topic prefix and a database of a test's own, migrated and
// with every topic created, plus a config file for `burnrate sink`.
type sinkRig struct {
	kcfg    kclient.Config
	chcfg   clickhouse.Config
	names   ktopics.Names
	cl      *kgo.Client
	ch      driver.Conn
	cfgFile string
}

func newSinkRig(tb testing.TB, sinkYAML string) *sinkRig {
	tb.Helper()
	ctx := context.Background()
	r := &sinkRig{kcfg: env.KafkaConfig(tb), chcfg: env.ClickHouseConfig(tb)}
	r.names = ktopics.WithPrefix(r.kcfg.TopicPrefix)
	cl, err := kclient.New(r.kcfg, "e2e",
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(200000))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	r.cl = cl
	if _, err := ktopics.Ensure(ctx, kadm.NewClient(cl), r.kcfg.TopicPrefix, ktopics.Catalog()); err != nil {
		tb.Fatal(err)
	}
	ch, err := clickhouse.Open(r.chcfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ch.Close() })
	r.ch = ch
	if _, err := clickhouse.Migrate(ctx, ch, r.chcfg.Database, time.Now); err != nil {
		tb.Fatal(err)
	}
	r.cfgFile = filepath.Join(tb.TempDir(), "burnrate.yaml")
	cfg := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %q
clickhouse:
  addr: [%s]
  database: %s
metrics:
  listen: ""
log:
  level: warn
sink:
%s`, strings.Join(r.kcfg.Brokers, ", "), r.kcfg.TopicPrefix, strings.Join(r.chcfg.Addr, ", "), r.chcfg.Database, sinkYAML)
	if err := os.WriteFile(r.cfgFile, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return r
}

// produceUsage writes n usage events (from index from on), spread over
// span of event time from start, and returns their total cost.
func (r *sinkRig) produceUsage(tb testing.TB, from, n int, start time.Time, span time.Duration) int64 {
	tb.Helper()
	var (
		mu    sync.Mutex
		first error
		cost  int64
		wg    sync.WaitGroup
	)
	step := span / time.Duration(max(n, 1))
	for i := from; i < from+n; i++ {
		rec, u := sinktest.UsageRecord(r.names.Usage(), i, start.Add(time.Duration(i-from)*step))
		cost += u.Cost.TotalNanoUSD
		wg.Add(1)
		r.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		tb.Fatalf("produce: %v", first)
	}
	return cost
}

func (r *sinkRig) query(tb testing.TB, q string, dest ...any) {
	tb.Helper()
	q = strings.ReplaceAll(q, "{db}", r.chcfg.Database)
	if err := r.ch.QueryRow(context.Background(), q).Scan(dest...); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

func (r *sinkRig) rows(tb testing.TB) uint64 {
	var n uint64
	r.query(tb, "SELECT count() FROM {db}.usage_events", &n)
	return n
}

// waitRows waits until usage_events holds want rows; more is a failure.
func (r *sinkRig) waitRows(tb testing.TB, want uint64, within time.Duration) time.Duration {
	tb.Helper()
	t0 := time.Now()
	for {
		n := r.rows(tb)
		if n == want {
			return time.Since(t0)
		}
		if n > want {
			tb.Fatalf("usage_events holds %d rows, more than the %d produced", n, want)
		}
		if time.Since(t0) > within {
			tb.Fatalf("usage_events holds %d rows after %s, want %d", n, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuSeconds is the user+system CPU time the process has used so far.
func (p *proc) cpuSeconds() float64 {
	return p.statCPU(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
}

func (*proc) statCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// clickhouseCPU is the CPU time every clickhouse-server process on the
// machine has used so far (the harness runs one).
func clickhouseCPU() float64 {
	entries, _ := os.ReadDir("/proc")
	var total float64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "clickhouse") {
			continue
		}
		total += (&proc{cmd: nil}).statCPU("/proc/" + e.Name() + "/stat")
	}
	return total
}
