package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/ingress"
)

func runIngress(ctx context.Context, args []string, _, stderr io.Writer) error {
	listenFlag := func(fs *flag.FlagSet) func(*config.File) {
		listen := fs.String("listen", "", "override ingress.listen")
		return func(f *config.File) {
			if *listen != "" {
				f.Ingress.Listen = *listen
			}
		}
	}
	return runService(ctx, "ingress", args, stderr, listenFlag, func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error {
		pricer, err := startPricer(ctx, f.Prices.OverrideFile, f.Prices.ReloadInterval, reg, log)
		if err != nil {
			return err
		}
		return ingress.Run(ctx, f.Ingress, ingress.Deps{Kafka: f.Kafka, Pricer: pricer, Log: log, Registerer: reg, Now: time.Now, Getenv: os.Getenv, TagKeys: f.Meter.TagKeys})
	})
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// startPricer loads the catalog and keeps reloading the override file.
func startPricer(ctx context.Context, override string, every time.Duration, reg prometheus.Registerer, log *zap.Logger) (*prices.Pricer, error) {
	cat, err := prices.Load(override)
	if err != nil {
		return nil, err
	}
	p := prices.NewPricer(cat, reg)
	go p.Watch(ctx, override, every,
		func(v string) { log.Info("price catalog reloaded", zap.String("version", v)) },
		func(err error) { log.Error("price catalog reload failed; keeping the one in use", zap.Error(err)) })
	return p, nil
}

// serveMetrics serves /metrics on addr (empty: not at all).
func serveMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) func() {
	if addr == "" {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", zap.String("addr", addr), zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

func runKeys(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "hash" {
		fmt.Fprintln(stderr, "usage: burnrate keys hash TOKEN   prints the sha256 to put in ingress.keys[].sha256")
		return errUsage
	}
	fmt.Fprintln(stdout, ingress.HashKey(args[1]))
	return nil
}
