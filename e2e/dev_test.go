package e2e

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"

	chschema "github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/dev"
	"github.com/burnrate/burnrate/services/dev/localch"
)

// devRun is one `burnrate dev` process on fixed ports and a data dir.
type devRun struct {
	cmd    *exec.Cmd
	logs   *strings.Builder
	status string
	args   []string
}

func startDev(t *testing.T, dataDir string, ports map[string]int) *devRun {
	t.Helper()
	d := &devRun{logs: &strings.Builder{}, status: fmt.Sprintf("http://127.0.0.1:%d", ports["status"])}
	d.args = []string{"dev", "--data-dir", dataDir, "--kafka-port", fmt.Sprint(ports["kafka"]), "--clickhouse-port", fmt.Sprint(ports["ch"]),
		"--clickhouse-http-port", fmt.Sprint(ports["chhttp"]), "--ingress-port", fmt.Sprint(ports["ingress"]), "--admin-port", fmt.Sprint(ports["admin"]),
		"--status-addr", fmt.Sprintf("127.0.0.1:%d", ports["status"]), "--log-level", "warn"}
	d.cmd = exec.Command(bin, d.args...)
	d.cmd.Env = append(os.Environ(), "BURNRATE_METRICS_LISTEN=")
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	return d
}

func (d *devRun) read() (dev.Status, bool) {
	resp, err := http.Get(d.status)
	if err != nil {
		return dev.Status{}, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st dev.Status
	return st, json.Unmarshal(b, &st) == nil && !st.UpdatedAt.IsZero()
}

// stop sends SIGINT and returns how long the exit took and its error.
func (d *devRun) stop() (time.Duration, error) {
	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		return time.Since(t0), err
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		return time.Since(t0), fmt.Errorf("still running 30 s after SIGINT")
	}
}

// TestDevDemoTellsTheStory runs `burnrate dev` (what `make demo` runs) on a
// fresh data dir: through --status-addr it must show a team blocked by its
// budget, a broken agent loop and idle GPUs within 60 s; `burnrate report`
// over its data sums to the raw table; SIGINT stops it with status 0
// within 10 s; and a restart finds the data again.
func TestDevDemoTellsTheStory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo (about 1 minute)")
	}
	ports := map[string]int{}
	for _, k := range []string{"kafka", "ch", "chhttp", "ingress", "admin", "status"} {
		ports[k], _ = localch.FreePort()
	}
	data := t.TempDir()
	d := startDev(t, data, ports)
	t0 := time.Now()
	var st dev.Status
	for {
		var ok bool
		st, ok = d.read()
		if ok && slices.Contains(st.BlockedTeams, "growth") && st.LoopsBroken > 0 && st.IdleGPUs > 0 {
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("after 60 s: blocked teams %v, loops broken %d, idle GPUs %d; logs:\n%s", st.BlockedTeams, st.LoopsBroken, st.IdleGPUs, tailString(d.logs.String(), 3000))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("after %s: blocked %v, loops broken %d, idle GPUs %d, GPU idle cost $%.4f, verdicts %v",
		time.Since(t0).Round(time.Second), st.BlockedTeams, st.LoopsBroken, st.IdleGPUs, st.GPUIdleCostUSD, st.Verdicts)
	for _, tm := range st.Teams {
		if tm.Team == "growth" && tm.USD > 0.50 {
			t.Errorf("growth spent $%.4f against its $0.50 budget", tm.USD)
		}
	}

	// The finance report over the demo's data adds up to the raw table.
	until := time.Now().Add(-5 * time.Second).UTC().Truncate(time.Second)
	env := []string{fmt.Sprintf("BURNRATE_CLICKHOUSE_ADDR=127.0.0.1:%d", ports["ch"]), "BURNRATE_CLICKHOUSE_DATABASE=burnrate"}
	out, err := burnrate(t, env, "report", "--by", "team", "--format", "csv", "--from", "2020-01-01", "--to", until.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("report CSV: %v\n%s", err, out)
	}
	var sum int64
	for _, rec := range recs[1:] {
		v, _ := strconv.ParseInt(rec[slices.Index(recs[0], "cost_nano_usd")], 10, 64)
		sum += v
	}
	rawTotal := clickhouseScalar(t, ports["ch"], fmt.Sprintf("SELECT toInt64(sum(cost_nano_usd)) FROM burnrate.usage_events WHERE occurred_at < toDateTime(%d)", until.Unix()))
	if strconv.FormatInt(sum, 10) != rawTotal {
		t.Errorf("report by team sums to %d nano-USD, the raw table to %s", sum, rawTotal)
	}

	took, err := d.stop()
	if err != nil || took > 10*time.Second {
		t.Errorf("SIGINT: exit %v after %s, want status 0 within 10 s; logs:\n%s", err, took.Round(time.Millisecond), tailString(d.logs.String(), 2000))
	}
	t.Logf("SIGINT → exit 0 in %s", took.Round(time.Millisecond))
	before := uint64(0)
	for _, tm := range st.Teams {
		before += tm.Requests
	}

	// Data survives a restart.
	d2 := startDev(t, data, ports)
	t1 := time.Now()
	for {
		st2, ok := d2.read()
		var after uint64
		for _, tm := range st2.Teams {
			after += tm.Requests
		}
		if ok && after >= before {
			break
		}
		if time.Since(t1) > 60*time.Second {
			t.Fatalf("after a restart %d calls in ClickHouse, %d before; logs:\n%s", after, before, tailString(d2.logs.String(), 2000))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := d2.stop(); err != nil {
		t.Errorf("second SIGINT: %v", err)
	}
}

// clickhouseScalar runs one query returning an Int64 on the demo's server.
func clickhouseScalar(t *testing.T, port int, q string) string {
	t.Helper()
	cfg := chschema.DefaultConfig()
	cfg.Addr = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	conn, err := chschema.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var v int64
	if err := conn.QueryRow(t.Context(), q).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return strconv.FormatInt(v, 10)
}
