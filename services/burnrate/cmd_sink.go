package main

import (
	"context"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/sink"
)

func runSink(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runService(ctx, "sink", args, stderr, nil, func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error {
		return sink.Run(ctx, f.Sink, sink.Deps{Kafka: f.Kafka, ClickHouse: f.ClickHouse, Log: log, Registerer: reg})
	})
}
