package main

import (
	"context"
	"io"

	"github.com/burnrate/burnrate/services/sink"
)

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("sink", stderr, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	log, err := c.logger(f, "sink")
	if err != nil {
		return err
	}
	defer log.Sync()
	reg := newRegistry()
	stopMetrics := serveMetrics(f.Metrics.Listen, reg, log)
	defer stopMetrics()
	return sink.Run(ctx, f.Sink, sink.Deps{Kafka: f.Kafka, ClickHouse: f.ClickHouse, Log: log, Registerer: reg})
}
