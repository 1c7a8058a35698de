package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/burnrate/burnrate/services/config"
)

// flags every command shares.
type common struct {
	configPath string
	logLevel   string
}

func newFlagSet(name string, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet("burnrate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.configPath, "config", os.Getenv("BURNRATE_CONFIG"), "config file (YAML); env BURNRATE_CONFIG; defaults apply when empty")
	fs.StringVar(&c.logLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	return fs
}

// load reads the config file (or the defaults) with env overrides applied.
func (c common) load() (config.File, error) {
	if c.configPath == "" {
		return config.Parse(nil, os.LookupEnv)
	}
	return config.Load(c.configPath, os.LookupEnv)
}

func (c common) logger(f config.File, service string) (*zap.Logger, error) {
	level := f.Log.Level
	if c.logLevel != "" {
		level = c.logLevel
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	zc := zap.NewProductionConfig()
	if f.Log.Format == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths = []string{"stderr"}
	log, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("logger: %w", err)
	}
	host, _ := os.Hostname()
	return log.With(zap.String("service", service), zap.String("instance", host)), nil
}

// parseInterspersed lets positional arguments come before flags
// ("import FILE --out X"), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// defaultsForTools is the config of tools that take no config file.
func defaultsForTools() config.File {
	f := config.Default()
	f.Log.Level = "warn"
	return f
}

// runService is the main of a long-running service: it parses the shared
// flags (and the service's own, which apply to the loaded file), loads the
// config, builds the logger, serves /metrics and calls run.
func runService(ctx context.Context, name string, args []string, stderr io.Writer,
	flags func(*flag.FlagSet) func(*config.File),
	run func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error) error {
	var c common
	fs := newFlagSet(name, stderr, &c)
	apply := func(*config.File) {}
	if flags != nil {
		apply = flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	apply(&f)
	log, err := c.logger(f, name)
	if err != nil {
		return err
	}
	defer log.Sync()
	if path := os.Getenv("BURNRATE_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	reg := newRegistry()
	stopMetrics := serveMetrics(f.Metrics.Listen, reg, log)
	defer stopMetrics()
	return run(ctx, f, log, reg)
}

// cpuProfile writes a Go CPU profile of the service to path until stop is
// called (BURNRATE_CPUPROFILE=path, for benchmarks of a running service).
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("BURNRATE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("BURNRATE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
