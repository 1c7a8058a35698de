// Package dev runs Burnrate on one machine with embedded defaults: an
// embedded Kafka-protocol broker (franz-go's kfake, persisted in the data
// dir) and a local ClickHouse server from Debian's package, migrated and
// with every topic created; on top, in this process, every service, a mock
// upstream, a fixture dcgm-exporter with 8 GPUs and a traffic simulator
// (steady teams and customers, a team that breaches its budget, a
// well-behaved agent and a runaway one), with a live summary on the
// terminal and as JSON (--status-addr).
//
// dev is for laptops and demos; it must never be the way production runs.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Config of `burnrate dev`.
type Config struct {
	// DataDir keeps broker and ClickHouse data between runs.
	DataDir string
	// KafkaPort is the embedded broker's loopback port.
	KafkaPort int
	// ClickHouseTCPPort and ClickHouseHTTPPort are the local server's ports.
	ClickHouseTCPPort  int
	ClickHouseHTTPPort int
	// Kafka and ClickHouse: when Brokers / Addr are set, dev uses those
	// instead of starting the embedded ones.
	Kafka      kclient.Config
	ClickHouse clickhouse.Config
	// ExternalKafka and ExternalClickHouse skip the embedded servers.
	ExternalKafka      bool
	ExternalClickHouse bool
	// Demo runs every service, a mock upstream, a fixture GPU exporter and
	// a traffic simulator on top.
	Demo bool
	// IngressPort and AdminPort are the gateway's and the killswitch admin
	// API's loopback ports.
	IngressPort, AdminPort int
	// StatusAddr serves the live summary as JSON; empty: not served.
	StatusAddr string
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: required"))
	}
	for name, p := range map[string]int{"kafka-port": c.KafkaPort, "clickhouse-port": c.ClickHouseTCPPort, "clickhouse-http-port": c.ClickHouseHTTPPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s: %d is not a TCP port", name, p))
		}
	}
	if c.ExternalKafka {
		if err := c.Kafka.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka: %w", err))
		}
	}
	if c.ExternalClickHouse {
		if err := c.ClickHouse.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("clickhouse: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Deps are what Run needs from main.
type Deps struct {
	Log *zap.Logger
	Out io.Writer // the human summary
	Now func() time.Time
}

// Run starts everything, prints what runs where, and stops it all in order
// when ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	log := deps.Log

	kcfg := cfg.Kafka
	if !cfg.ExternalKafka {
		broker, err := kfake.NewCluster(
			kfake.Ports(cfg.KafkaPort),
			kfake.DataDir(filepath.Join(cfg.DataDir, "kafka")),
			kfake.ClusterID("burnrate-dev"),
		)
		if err != nil {
			return fmt.Errorf("dev: start embedded broker on port %d: %w", cfg.KafkaPort, err)
		}
		defer func() {
			broker.Close()
			log.Info("embedded broker stopped")
		}()
		kcfg.Brokers = broker.ListenAddrs()
		log.Info("embedded broker up", zap.Strings("brokers", kcfg.Brokers))
	}

	chcfg := cfg.ClickHouse
	if !cfg.ExternalClickHouse {
		srv, err := localch.Start(ctx, localch.Options{
			Dir:      filepath.Join(cfg.DataDir, "clickhouse"),
			TCPPort:  cfg.ClickHouseTCPPort,
			HTTPPort: cfg.ClickHouseHTTPPort,
			Install:  true,
			Log:      func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) },
		})
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				log.Warn("clickhouse stop", zap.Error(err))
			}
			log.Info("clickhouse stopped")
		}()
		chcfg.Addr = []string{srv.Addr()}
	}

	conn, err := clickhouse.Open(chcfg)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer conn.Close()
	res, err := clickhouse.Migrate(ctx, conn, chcfg.Database, deps.Now)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	log.Info("clickhouse migrated", zap.Int("version", res.Current), zap.Strings("applied", res.Applied))

	cl, err := kclient.New(kcfg, "dev")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer cl.Close()
	rep, err := ktopics.Ensure(ctx, kadm.NewClient(cl), kcfg.TopicPrefix, ktopics.Catalog())
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	fmt.Fprintf(deps.Out, "\nburnrate dev is running (Ctrl-C stops it; data kept in %s)\n\n", cfg.DataDir)
	fmt.Fprintf(deps.Out, "  kafka        %v  (prefix %q)\n", kcfg.Brokers, kcfg.TopicPrefix)
	fmt.Fprintf(deps.Out, "  clickhouse   native %v, database %s (schema version %d)\n", chcfg.Addr, chcfg.Database, res.Current)
	fmt.Fprintf(deps.Out, "\ntopics:\n%s\n", indent(rep.String()))
	fmt.Fprintf(deps.Out, "try:  clickhouse-client --port %s -q 'SHOW TABLES FROM %s'\n\n", portOf(chcfg.Addr[0]), chcfg.Database)
	if !cfg.Demo {
		<-ctx.Done()
		log.Info("stopping")
		return nil
	}

	sctx, stopServices := context.WithCancel(ctx)
	defer stopServices()
	endpoints, token, wait, err := runDemo(sctx, cfg, kcfg, chcfg, log)
	if err != nil {
		stopServices()
		wait()
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	status := &reporter{}
	if cfg.StatusAddr != "" {
		addr, err := status.serve(sctx, cfg.StatusAddr)
		if err != nil {
			stopServices()
			wait()
			return err
		}
		endpoints["status (JSON)"] = addr
	}
	fmt.Fprintf(deps.Out, "demo: every service, a mock upstream, 8 fixture GPUs and simulated traffic\n")
	for _, k := range sortedKeys(endpoints) {
		fmt.Fprintf(deps.Out, "  %-32s %s\n", k, endpoints[k])
	}
	fmt.Fprintf(deps.Out, "  admin token                      %s  (burnrate budgets --admin %s --token ...)\n", token, endpoints["killswitch admin API"])
	fmt.Fprintf(deps.Out, "  try: curl -s %s/chat/completions -H 'Authorization: Bearer demo-payments' -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n\n",
		endpoints["gateway (OpenAI/Anthropic API)"])
	go status.run(sctx, conn, chcfg.Database, endpoints, deps.Out, 10*time.Second)
	<-ctx.Done()
	log.Info("stopping")
	stopServices()
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		log.Warn("services did not stop in 8 s; stopping the servers anyway")
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}

func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return port
	}
	return addr
}
