package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/burnrate/burnrate/services/dev"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("dev", stderr, &c)
	dataDir := fs.String("data-dir", defaultDataDir(), "where the embedded broker and ClickHouse keep data between runs")
	kafkaPort := fs.Int("kafka-port", 9092, "embedded broker port on 127.0.0.1")
	chPort := fs.Int("clickhouse-port", 9000, "local ClickHouse native port on 127.0.0.1")
	chHTTPPort := fs.Int("clickhouse-http-port", 8123, "local ClickHouse HTTP port on 127.0.0.1")
	kafkaBrokers := fs.String("kafka-brokers", "", "use this Kafka (comma-separated host:port) instead of the embedded broker")
	chAddr := fs.String("clickhouse-addr", "", "use this ClickHouse (host:port, native) instead of starting one")
	demo := fs.Bool("demo", true, "run every service, a mock upstream, fixture GPUs and simulated traffic (false: only the broker and ClickHouse)")
	ingressPort := fs.Int("ingress-port", 8080, "demo gateway port on 127.0.0.1")
	adminPort := fs.Int("admin-port", 8081, "demo killswitch admin API port on 127.0.0.1")
	statusAddr := fs.String("status-addr", "", "serve the live summary as JSON here (e.g. 127.0.0.1:8090)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	log, err := c.logger(f, "dev")
	if err != nil {
		return err
	}
	defer log.Sync()
	cfg := dev.Config{
		DataDir:            *dataDir,
		KafkaPort:          *kafkaPort,
		ClickHouseTCPPort:  *chPort,
		ClickHouseHTTPPort: *chHTTPPort,
		Kafka:              f.Kafka,
		ClickHouse:         f.ClickHouse,
		Demo:               *demo,
		IngressPort:        *ingressPort,
		AdminPort:          *adminPort,
		StatusAddr:         *statusAddr,
	}
	if *kafkaBrokers != "" {
		cfg.ExternalKafka = true
		cfg.Kafka.Brokers = splitComma(*kafkaBrokers)
	}
	if *chAddr != "" {
		cfg.ExternalClickHouse = true
		cfg.ClickHouse.Addr = splitComma(*chAddr)
	}
	return dev.Run(ctx, cfg, dev.Deps{Log: log, Out: stdout, Now: time.Now})
}

func defaultDataDir() string {
	if d := os.Getenv("BURNRATE_DEV_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "burnrate", "dev")
	}
	return filepath.Join(os.TempDir(), "burnrate-dev")
}
