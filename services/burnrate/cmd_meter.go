package main

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/meter"
)

func runMeter(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runService(ctx, "meter", args, stderr, nil, func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error {
		return meter.Run(ctx, f.Meter, meter.Deps{Kafka: f.Kafka, Log: log, Registerer: reg, Now: time.Now})
	})
}
