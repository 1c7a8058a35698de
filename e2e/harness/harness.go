// Package harness starts the real Apache Kafka broker and the real
// ClickHouse server that integration and e2e tests run against: one of each
// per `go test` process, started from TestMain, with a fresh database and
// topic prefix per test.
//
// It never fakes either component; it must only be imported by tests.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/streams/kclient"
)

// Env is the process-wide pair of servers.
type Env struct {
	Kafka      *Kafka
	ClickHouse *localch.Server
	dir        string
}

// Need says which servers a test binary needs.
type Need struct {
	Kafka, ClickHouse bool
}

// Main starts what need asks for, runs the tests and stops everything. Use it
// from TestMain:
//
//	var env *harness.Env
//	func TestMain(m *testing.M) { harness.Main(m, harness.Need{Kafka: true}, &env) }
func Main(m *testing.M, need Need, out **Env) {
	os.Exit(run(m, need, out))
}

func run(m *testing.M, need Need, out **Env) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := Start(ctx, need)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	defer env.Stop()
	*out = env
	return m.Run()
}

// Start brings up the servers in parallel.
func Start(ctx context.Context, need Need) (*Env, error) {
	dir, err := os.MkdirTemp("", "burnrate-harness-")
	if err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	env := &Env{dir: dir}
	t0 := time.Now()
	kerr := make(chan error, 1)
	go func() {
		if !need.Kafka {
			kerr <- nil
			return
		}
		k, err := StartKafka(ctx, dir+"/kafka")
		env.Kafka = k
		kerr <- err
	}()
	var cerr error
	if need.ClickHouse {
		env.ClickHouse, cerr = localch.Start(ctx, localch.Options{Dir: dir + "/clickhouse", Install: true})
	}
	if err := <-kerr; err != nil || cerr != nil {
		env.Stop()
		if err != nil {
			return nil, err
		}
		return nil, cerr
	}
	if os.Getenv("BURNRATE_HARNESS_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "harness: kafka=%v clickhouse=%v up in %s\n", need.Kafka, need.ClickHouse, time.Since(t0).Round(time.Millisecond))
	}
	return env, nil
}

// Stop stops both servers and removes their data.
func (e *Env) Stop() {
	if e.Kafka != nil {
		e.Kafka.Stop()
	}
	if e.ClickHouse != nil {
		e.ClickHouse.Stop()
	}
	if os.Getenv("BURNRATE_HARNESS_KEEP") == "" {
		os.RemoveAll(e.dir)
	}
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// uniqueName makes a name from the test's name plus random bytes.
func uniqueName(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.Trim(name, "_") + "_" + hex.EncodeToString(b)
}

// KafkaConfig returns a client config with a topic prefix of the test's own;
// topics under it are deleted when the test ends.
func (e *Env) KafkaConfig(t testing.TB) kclient.Config {
	t.Helper()
	if e.Kafka == nil {
		t.Fatal("harness: this test binary did not ask for Kafka (harness.Need)")
	}
	cfg := kclient.DefaultConfig()
	cfg.Brokers = []string{e.Kafka.Addr()}
	cfg.TopicPrefix = "t_" + uniqueName(t) + "."
	cfg.ClientID = "burnrate-test"
	t.Cleanup(func() { e.deleteTopics(cfg) })
	return cfg
}

func (e *Env) deleteTopics(cfg kclient.Config) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var names []string
	for _, name := range td.Names() {
		if strings.HasPrefix(name, cfg.TopicPrefix) {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		adm.DeleteTopics(ctx, names...)
	}
}

// ClickHouseConfig returns a config for a fresh database of the test's own,
// created now and dropped when the test ends.
func (e *Env) ClickHouseConfig(t testing.TB) clickhouse.Config {
	t.Helper()
	if e.ClickHouse == nil {
		t.Fatal("harness: this test binary did not ask for ClickHouse (harness.Need)")
	}
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{e.ClickHouse.Addr()}
	cfg.Database = "t_" + uniqueName(t)
	conn := e.adminConn(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+cfg.Database); err != nil {
		t.Fatalf("harness: create database %s: %v", cfg.Database, err)
	}
	t.Cleanup(func() {
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database)
		conn.Close()
	})
	return cfg
}

func (e *Env) adminConn(t testing.TB) driver.Conn {
	conn, err := chgo.Open(&chgo.Options{Addr: []string{e.ClickHouse.Addr()}})
	if err != nil {
		t.Fatalf("harness: open clickhouse: %v", err)
	}
	return conn
}
