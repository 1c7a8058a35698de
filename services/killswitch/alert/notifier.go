package alert

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Notifier delivers alerts to the configured webhooks. Send may be called
// from any goroutine; Run is called once.
type Notifier struct {
	log     *zap.Logger
	client  *http.Client
	hooks   []*hook
	metrics *metrics
	// backoffStart and drainTimeout are the package constants; tests
	// shorten them.
	backoffStart time.Duration
	drainTimeout time.Duration
}

// hook is a webhook with its defaults applied and its URL resolved.
type hook struct {
	name        string
	url         string // never logged
	slack       bool
	kinds       []string // empty: all
	minSeverity int
	headers     http.Header // never logged
	timeout     time.Duration
	maxAttempts int
	backoffMax  time.Duration
	queue       chan Alert
}

// New checks cfg, reads the url_env variables and registers the metrics on
// reg (nil: no metrics). log may be nil.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert config: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	n := &Notifier{
		log: log.Named("alert"),
		client: &http.Client{
			// A webhook that redirects is misconfigured; following it
			// would resend the headers somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		backoffStart: backoffStart,
		drainTimeout: drainTimeout,
	}
	queueSize := cmp.Or(cfg.QueueSize, defaultQueueSize)
	for i, w := range cfg.Webhooks {
		h := &hook{
			name:        w.name(i),
			url:         w.URL,
			slack:       w.Format == "slack",
			kinds:       slices.Clone(w.Kinds),
			minSeverity: severityRank(w.MinSeverity),
			headers:     http.Header{},
			timeout:     cmp.Or(w.Timeout, defaultTimeout),
			maxAttempts: cmp.Or(w.MaxAttempts, defaultMaxAttempts),
			backoffMax:  cmp.Or(w.BackoffMax, defaultBackoffMax),
			queue:       make(chan Alert, queueSize),
		}
		if w.URLEnv != "" {
			// The URL is a secret: errors name the variable, not its value.
			if h.url = os.Getenv(w.URLEnv); h.url == "" {
				return nil, fmt.Errorf("alert config: webhooks[%d].url_env: environment variable %s is not set", i, w.URLEnv)
			}
			if err := checkURL(h.url); err != nil {
				return nil, fmt.Errorf("alert config: webhooks[%d].url_env: the URL in %s: %w", i, w.URLEnv, err)
			}
		}
		for k, v := range w.Headers {
			h.headers.Set(k, v)
		}
		h.headers.Set("Content-Type", "application/json")
		h.headers.Set("User-Agent", "burnrate-killswitch")
		n.hooks = append(n.hooks, h)
	}
	// Registered last, so a failed New leaves reg as it was.
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("alert: register metrics: %w", err)
	}
	n.metrics = m
	for _, h := range n.hooks {
		n.initSeries(h)
	}
	return n, nil
}

// initSeries creates the webhook's series at zero, so rates and alerts on
// them work before the first failure.
func (n *Notifier) initSeries(h *hook) {
	ks := h.kinds
	if len(ks) == 0 {
		ks = kinds[:]
	}
	for _, k := range ks {
		for _, r := range []string{"delivered", "failed", "dropped"} {
			n.metrics.alerts.WithLabelValues(h.name, k, r)
		}
	}
	for _, o := range []string{"ok", "retry", "give_up"} {
		n.metrics.attempts.WithLabelValues(h.name, o)
	}
}

// Send queues a for every webhook that takes its kind and severity, and
// returns at once: a full queue drops the alert rather than wait.
func (n *Notifier) Send(a Alert) {
	for _, h := range n.hooks {
		if !h.accepts(a) {
			continue
		}
		select {
		case h.queue <- a:
		default:
			n.metrics.alerts.WithLabelValues(h.name, kindLabel(a.Kind), "dropped").Inc()
			n.log.Warn("alert queue full, alert dropped", zap.String("webhook", h.name), zap.String("alert_id", a.ID), zap.String("kind", a.Kind))
		}
	}
}

func (h *hook) accepts(a Alert) bool {
	return severityRank(a.Severity) >= h.minSeverity && (len(h.kinds) == 0 || slices.Contains(h.kinds, a.Kind))
}

// Run delivers until ctx is done, then delivers what is still queued for up
// to the drain timeout, and returns.
func (n *Notifier) Run(ctx context.Context) {
	// Deliveries outlive ctx by the drain timeout: an alert that a budget
	// was killed is worth a few seconds of shutdown.
	deliverCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range n.hooks {
		wg.Go(func() { n.work(ctx, deliverCtx, h) })
	}
	<-ctx.Done()
	timer := time.AfterFunc(n.drainTimeout, cancel)
	defer timer.Stop()
	wg.Wait()
}

// work is the webhook's goroutine: its retries hold up only its own queue.
func (n *Notifier) work(ctx, deliverCtx context.Context, h *hook) {
	for ctx.Err() == nil {
		select {
		case a := <-h.queue:
			n.deliver(deliverCtx, h, a)
		case <-ctx.Done():
		}
	}
	n.drain(deliverCtx, h)
}

// drain delivers the queue until it is empty or deliverCtx is done; what
// is left then is dropped.
func (n *Notifier) drain(deliverCtx context.Context, h *hook) {
	lost := 0
	for {
		select {
		case a := <-h.queue:
			if deliverCtx.Err() == nil {
				n.deliver(deliverCtx, h, a)
				continue
			}
			n.metrics.alerts.WithLabelValues(h.name, kindLabel(a.Kind), "dropped").Inc()
			lost++
		default:
			if lost > 0 {
				n.log.Warn("shutdown drain timed out, queued alerts dropped", zap.String("webhook", h.name), zap.Int("alerts", lost))
			}
			return
		}
	}
}

// deliver posts a to h until it is accepted, attempts run out, the answer
// says retrying is pointless, or ctx is done.
func (n *Notifier) deliver(ctx context.Context, h *hook, a Alert) {
	kind := kindLabel(a.Kind)
	log := n.log.With(zap.String("webhook", h.name), zap.String("alert_id", a.ID), zap.String("kind", a.Kind))
	body, err := h.body(a)
	if err != nil {
		n.metrics.alerts.WithLabelValues(h.name, kind, "failed").Inc()
		log.Error("alert not delivered: encode body", zap.Error(err))
		return
	}
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := n.post(ctx, h, body)
		if err == nil {
			n.metrics.attempts.WithLabelValues(h.name, "ok").Inc()
			n.metrics.alerts.WithLabelValues(h.name, kind, "delivered").Inc()
			log.Debug("alert delivered", zap.Int("attempt", attempt))
			return
		}
		// No answer, throttled or a server error may pass; any other
		// answer will be the same next time.
		retryable := status == 0 || status == http.StatusTooManyRequests || status >= 500
		wait := backoff(n.backoffStart, h.backoffMax, attempt, retryAfter)
		if !retryable || attempt >= h.maxAttempts || !sleep(ctx, wait) {
			n.metrics.attempts.WithLabelValues(h.name, "give_up").Inc()
			n.metrics.alerts.WithLabelValues(h.name, kind, "failed").Inc()
			log.Error("alert not delivered", zap.Int("attempt", attempt), zap.Int("status", status), zap.Error(err))
			return
		}
		n.metrics.attempts.WithLabelValues(h.name, "retry").Inc()
		log.Debug("alert delivery retried", zap.Int("attempt", attempt), zap.Int("status", status), zap.Duration("waited", wait), zap.Error(err))
	}
}

// post makes one attempt. status is 0 when no answer came; err is nil for
// a 2xx answer. Errors never hold the URL.
func (n *Notifier) post(ctx context.Context, h *hook, body []byte) (status int, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, errors.New("build request: bad URL")
	}
	req.Header = h.headers.Clone()
	resp, err := n.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, 0, fmt.Errorf("no answer within %s", h.timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; the body itself is
	// not logged.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("answered %s", resp.Status)
}

// backoff is the wait after failed attempt number attempt: start doubled
// per attempt up to ceiling, less up to half of it at random so that
// retries spread out. A longer Retry-After is honoured up to ceiling.
func backoff(start, ceiling time.Duration, attempt int, retryAfter time.Duration) time.Duration {
	d := start
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	d -= rand.N(d/2 + 1)
	return min(max(d, retryAfter), ceiling)
}

// parseRetryAfter reads Retry-After in seconds; the HTTP-date form is
// ignored.
func parseRetryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(min(s, 1<<20)) * time.Second
}

// sleep waits d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
