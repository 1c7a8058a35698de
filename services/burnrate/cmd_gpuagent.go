package main

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/gpuagent"
)

func runGPUAgent(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runService(ctx, "gpu-agent", args, stderr, nil, func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error {
		pricer, err := startPricer(ctx, f.Prices.OverrideFile, f.Prices.ReloadInterval, reg, log)
		if err != nil {
			return err
		}
		return gpuagent.Run(ctx, f.GPUAgent, gpuagent.Deps{Kafka: f.Kafka, Pricer: pricer, Log: log, Registerer: reg, Now: time.Now})
	})
}
