package main

import (
	"context"
	"io"
	"time"

	"github.com/burnrate/burnrate/services/meter"
)

func runMeter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("meter", stderr, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	log, err := c.logger(f, "meter")
	if err != nil {
		return err
	}
	defer log.Sync()
	reg := newRegistry()
	stopMetrics := serveMetrics(f.Metrics.Listen, reg, log)
	defer stopMetrics()
	return meter.Run(ctx, f.Meter, meter.Deps{Kafka: f.Kafka, Log: log, Registerer: reg, Now: time.Now})
}
