// Package ingress is Burnrate's gateway: OpenAI- and Anthropic-compatible
// endpoints in front of the model providers, virtual keys, attribution, the
// verdict check before every call, usage capture from every response and
// stream, and the collector API for apps that call providers directly.
//
// The request path never waits on Kafka, ClickHouse or another service: the
// verdict check reads memory, and usage events leave through the emitter,
// which spools to disk while Kafka is away. Provider credentials never reach
// clients, logs or events.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/services/ingress/spool"
	"github.com/burnrate/burnrate/services/ingress/verdictcache"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Deps are what Run needs from main.
type Deps struct {
	Kafka      kclient.Config
	Pricer     *prices.Pricer
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	Getenv     func(string) string
	// OnListen, if set, receives the bound address (tests, dev).
	OnListen func(addr string)
	// TagKeys are the attribution tags budgets are set on (meter.tag_keys).
	TagKeys []string
}

// Run serves the gateway until ctx ends, then drains: it stops accepting,
// lets calls in flight finish, and flushes every usage event.
func Run(ctx context.Context, cfg Config, d Deps) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	names := ktopics.WithPrefix(d.Kafka.TopicPrefix)
	sp, err := spool.Open(spool.Options{Dir: cfg.Spool.Dir, MaxBytes: cfg.Spool.MaxBytes, Registerer: d.Registerer})
	if err != nil {
		return fmt.Errorf("ingress: spool: %w", err)
	}
	defer sp.Close()
	producer, err := kclient.New(d.Kafka, "ingress",
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.SnappyCompression(), kgo.NoCompression()),
		kgo.MaxBufferedRecords(100_000),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	emitter := NewKafkaEmitter(EmitterDeps{Producer: producer, Topic: names.Usage(), Spool: sp,
		DropWhenFull: cfg.Spool.WhenFull == "drop", Log: d.Log, Registerer: d.Registerer})

	cache := verdictcache.New(d.Now)
	consumer, err := verdictcache.NewConsumer(verdictcache.ConsumerConfig{Kafka: d.Kafka, FailOpen: cfg.FailOpen},
		cache, verdictcache.ConsumerDeps{Log: d.Log, Registerer: d.Registerer})
	if err != nil {
		producer.Close()
		return fmt.Errorf("ingress: verdicts: %w", err)
	}

	gw, err := NewGateway(cfg, GatewayDeps{Verdicts: cache, Emitter: emitter, Pricer: d.Pricer, Log: d.Log, Now: d.Now,
		Metrics: NewMetrics(d.Registerer), Getenv: d.Getenv, Ready: consumer.Ready, Accepting: emitter.Accepting, TagKeys: d.TagKeys})
	if err != nil {
		producer.Close()
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		producer.Close()
		return fmt.Errorf("ingress: listen %s: %w", cfg.Listen, err)
	}
	if d.OnListen != nil {
		d.OnListen(ln.Addr().String())
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: 64 << 10}

	runCtx, stopBackground := context.WithCancel(context.Background())
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- consumer.Run(runCtx) }()
	emitterDone := make(chan error, 1)
	go func() { emitterDone <- emitter.Run(runCtx, 2*time.Second) }()
	instance := cfg.InstanceID
	if instance == "" {
		instance = defaultInstanceID()
	}
	announced := make(chan struct{})
	go func() {
		announce(runCtx, producer, names.Instances(), instance, cfg.HeartbeatInterval, d.Now, d.Log)
		close(announced)
	}()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	d.Log.Info("ingress listening", zap.String("addr", ln.Addr().String()), zap.String("instance", instance), zap.Int("routes", len(cfg.Routes)), zap.Int("keys", len(cfg.Keys)))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-serveDone:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		d.Log.Warn("shutdown: calls still in flight were cut", zap.Error(err))
	}
	stopBackground()
	<-announced
	errs := []error{<-emitterDone}
	producer.Close() // fails what is still buffered into the spool
	if err := <-consumerDone; err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, serveErr)
	}
	return errors.Join(errs...)
}
