package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/streams/ktopics"
)

var (
	env *harness.Env
	bin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "burnrate-e2e-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "burnrate")
	build := exec.Command("go", "build", "-o", bin, "../services/burnrate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		panic("build burnrate: " + err.Error())
	}
	defer os.RemoveAll(dir)
	harness.Main(m, harness.Need{Kafka: true, ClickHouse: true}, &env)
}

// burnrate runs the binary with env overrides pointing at the test's own
// topic prefix and database.
func burnrate(t *testing.T, envs []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), envs...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestHelpListsEveryCommand(t *testing.T) {
	out, err := burnrate(t, nil, "--help")
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, c := range []string{"ingress", "sink", "meter", "killswitch", "gpu-agent", "migrate", "topics", "version", "dev", "prices", "loadgen", "mock-upstream", "report"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, out)
		}
	}
	if strings.Contains(out, "not built yet") {
		t.Errorf("every command is built now, but --help says otherwise:\n%s", out)
	}
	out, err = burnrate(t, nil, "nonsense")
	if err == nil || !strings.Contains(out, "nonsense") {
		t.Errorf("an unknown command must be named and fail: err=%v out=%s", err, out)
	}
}

func TestMigrateAndTopicsEnsureAreIdempotent(t *testing.T) {
	kcfg := env.KafkaConfig(t)
	chcfg := env.ClickHouseConfig(t)
	envs := []string{
		"BURNRATE_KAFKA_BROKERS=" + strings.Join(kcfg.Brokers, ","),
		"BURNRATE_KAFKA_TOPIC_PREFIX=" + kcfg.TopicPrefix,
		"BURNRATE_CLICKHOUSE_ADDR=" + strings.Join(chcfg.Addr, ","),
		"BURNRATE_CLICKHOUSE_DATABASE=" + chcfg.Database,
	}
	out, err := burnrate(t, envs, "migrate")
	if err != nil || !strings.Contains(out, "migrated to version") {
		t.Fatalf("first migrate: %v\n%s", err, out)
	}
	out, err = burnrate(t, envs, "migrate")
	if err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
	out, err = burnrate(t, envs, "topics", "ensure")
	if err != nil || strings.Count(out, "created") != len(ktopics.Catalog()) {
		t.Fatalf("first topics ensure: %v\n%s", err, out)
	}
	out, err = burnrate(t, envs, "topics", "ensure")
	if err != nil || !strings.Contains(out, "no change") || strings.Contains(out, "created") {
		t.Fatalf("second topics ensure: %v\n%s", err, out)
	}
}

func TestBadConfigIsRejectedWithKeyPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "burnrate.yaml")
	if err := os.WriteFile(path, []byte("kafka:\n  brokers: [\"127.0.0.1:9092\"]\n  sasl:\n    mechanizm: PLAIN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := burnrate(t, nil, "migrate", "--config", path)
	if err == nil || !strings.Contains(out, "kafka.sasl.mechanizm") {
		t.Fatalf("want an error naming kafka.sasl.mechanizm, got %v\n%s", err, out)
	}
}

// TestDevStartsAndStopsCleanly is `make demo` at this stage: the embedded
// broker and a local ClickHouse come up, migrate and topics run, and Ctrl-C
// stops everything with exit 0.
func TestDevStartsAndStopsCleanly(t *testing.T) {
	kport, _ := localch.FreePort()
	chport, _ := localch.FreePort()
	chhttp, _ := localch.FreePort()
	dataDir := t.TempDir()
	start := func() {
		t.Helper()
		cmd := exec.Command(bin, "dev", "--data-dir", dataDir, "--demo=false",
			"--kafka-port", strconv.Itoa(kport), "--clickhouse-port", strconv.Itoa(chport), "--clickhouse-http-port", strconv.Itoa(chhttp))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		cmd.Stderr = &logs
		defer func() {
			if t.Failed() {
				t.Logf("burnrate dev logs:\n%s", logs.String())
			}
		}()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan string, 1)
		go func() {
			var seen strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				seen.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "verdicts.v1") {
					ready <- seen.String()
				}
			}
		}()
		select {
		case out := <-ready:
			for _, want := range []string{"burnrate dev is running", "kafka", "clickhouse", "usage.v1"} {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatal("burnrate dev not ready in 90s")
		}
		t0 := time.Now()
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("burnrate dev exit after SIGINT: %v", err)
			}
			t.Logf("stopped in %s", time.Since(t0).Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatal("burnrate dev did not stop within 15s of SIGINT")
		}
	}
	start()
	// Data survives: a second start finds the schema and topics in place.
	start()
}
