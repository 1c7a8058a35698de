package alert

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/encoding/json"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// receiver is a webhook endpoint. It answers with answers in order, then
// 200, and sends every request to got.
type receiver struct {
	*httptest.Server
	got        chan *http.Request // Body replaced by its bytes in bodies
	retryAfter string             // on every non-2xx answer

	mu      sync.Mutex
	answers []int
	bodies  [][]byte
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{got: make(chan *http.Request, 100), answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := http.StatusOK
		if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
		if status != http.StatusOK && r.retryAfter != "" {
			w.Header().Set("Retry-After", r.retryAfter)
		}
		w.WriteHeader(status)
		r.got <- req
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the next k requests, failing the test if they take long.
func (r *receiver) wait(t *testing.T, k int) []*http.Request {
	t.Helper()
	var reqs []*http.Request
	for range k {
		select {
		case req := <-r.got:
			reqs = append(reqs, req)
		case <-time.After(2 * time.Second):
			t.Fatalf("got %d requests, want %d", len(reqs), k)
		}
	}
	return reqs
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

// newTestNotifier is New with millisecond backoff.
func newTestNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	n.backoffStart = time.Millisecond
	n.drainTimeout = time.Second
	return n
}

// start runs n; stop cancels it and waits for Run to return.
func start(n *Notifier) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// drain runs n with ctx already done: it delivers what is queued and returns.
func drain(n *Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Run(ctx)
}

func alertsTotal(n *Notifier, webhook, kind, result string) float64 {
	return testutil.ToFloat64(n.metrics.alerts.WithLabelValues(webhook, kind, result))
}

func attemptsTotal(n *Notifier, webhook string) map[string]float64 {
	out := map[string]float64{}
	for _, o := range []string{"ok", "retry", "give_up"} {
		if v := testutil.ToFloat64(n.metrics.attempts.WithLabelValues(webhook, o)); v > 0 {
			out[o] = v
		}
	}
	return out
}

var testAlert = Alert{ID: "ev-1", Kind: KindExhausted, Severity: "critical", Subject: "team=payments", Title: "payments budget exhausted", Text: "Blocked."}

func TestDeliver(t *testing.T) {
	rec := newReceiver(t)
	n := newTestNotifier(t, Config{Webhooks: []Webhook{
		{Name: "ops", URL: rec.URL + "/hook", Headers: map[string]string{"Authorization": "Bearer s3cret"}},
		{Name: "chat", URL: rec.URL + "/slack", Format: "slack"},
	}})
	stop := start(n)
	n.Send(testAlert)
	reqs := rec.wait(t, 2)
	stop()

	slices.SortFunc(reqs, func(a, b *http.Request) int { return strings.Compare(a.URL.Path, b.URL.Path) })
	f := func(req *http.Request, path, auth string) {
		t.Helper()
		if req.Method != http.MethodPost || req.URL.Path != path {
			t.Errorf("%s %s, want POST %s", req.Method, req.URL.Path, path)
		}
		if ct, ua := req.Header.Get("Content-Type"), req.Header.Get("User-Agent"); ct != "application/json" || ua != "burnrate-killswitch" {
			t.Errorf("%s: Content-Type %q, User-Agent %q", path, ct, ua)
		}
		if got := req.Header.Get("Authorization"); got != auth {
			t.Errorf("%s: Authorization %q, want %q", path, got, auth)
		}
	}
	f(reqs[0], "/hook", "Bearer s3cret")
	f(reqs[1], "/slack", "")

	var generic Alert
	var slack map[string]string
	for _, b := range rec.bodies {
		if strings.Contains(string(b), `"id"`) {
			_ = json.Unmarshal(b, &generic)
		} else {
			_ = json.Unmarshal(b, &slack)
		}
	}
	if generic != testAlert {
		t.Errorf("generic body %+v, want %+v", generic, testAlert)
	}
	if want := ":rotating_light: *payments budget exhausted*\nBlocked."; slack["text"] != want {
		t.Errorf("slack text %q, want %q", slack["text"], want)
	}
	for _, w := range []string{"ops", "chat"} {
		if got := alertsTotal(n, w, KindExhausted, "delivered"); got != 1 {
			t.Errorf("%s: delivered %g, want 1", w, got)
		}
	}
}

func TestFilters(t *testing.T) {
	n := newTestNotifier(t, Config{Webhooks: []Webhook{
		{Name: "all", URL: "http://all.example"},
		{Name: "kills", URL: "http://kills.example", Kinds: []string{KindExhausted, KindManualKill}},
		{Name: "loud", URL: "http://loud.example", MinSeverity: "warning"},
		{Name: "kills-critical", URL: "http://kc.example", Kinds: []string{KindManualKill}, MinSeverity: "critical"},
	}})
	f := func(kind, severity string, want ...string) {
		t.Helper()
		n.Send(Alert{Kind: kind, Severity: severity})
		var got []string
		for _, h := range n.hooks {
			for len(h.queue) > 0 {
				<-h.queue
				got = append(got, h.name)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s/%s went to %v, want %v", kind, severity, got, want)
		}
	}
	f(KindThreshold, "info", "all")
	f(KindThreshold, "", "all")
	f(KindThreshold, "warning", "all", "loud")
	f(KindExhausted, "critical", "all", "kills", "loud")
	f(KindManualKill, "warning", "all", "kills", "loud")
	f(KindManualKill, "critical", "all", "kills", "loud", "kills-critical")
	f("unknown_kind", "info", "all")
}

func TestRetry(t *testing.T) {
	f := func(answers []int, retryAfter string, maxAttempts, wantRequests int, wantResult string, wantAttempts map[string]float64) {
		t.Helper()
		rec := newReceiver(t, answers...)
		rec.retryAfter = retryAfter
		n := newTestNotifier(t, Config{Webhooks: []Webhook{{Name: "w", URL: rec.URL, MaxAttempts: maxAttempts, BackoffMax: 20 * time.Millisecond}}})
		stop := start(n)
		n.Send(testAlert)
		rec.wait(t, wantRequests)
		stop()
		if got := rec.count(); got != wantRequests {
			t.Errorf("%v: %d requests, want %d", answers, got, wantRequests)
		}
		if got := alertsTotal(n, "w", KindExhausted, wantResult); got != 1 {
			t.Errorf("%v: %s %g, want 1", answers, wantResult, got)
		}
		if got := attemptsTotal(n, "w"); !maps.Equal(got, wantAttempts) {
			t.Errorf("%v: attempts %v, want %v", answers, got, wantAttempts)
		}
	}
	f([]int{503, 503}, "", 5, 3, "delivered", map[string]float64{"retry": 2, "ok": 1})
	// An hour's Retry-After is capped by backoff_max (20ms): the test
	// would time out otherwise.
	f([]int{429, 503}, "3600", 5, 3, "delivered", map[string]float64{"retry": 2, "ok": 1})
	f([]int{400}, "", 5, 1, "failed", map[string]float64{"give_up": 1})
	f([]int{404}, "1", 5, 1, "failed", map[string]float64{"give_up": 1})
	f([]int{500, 502, 503, 504}, "", 3, 3, "failed", map[string]float64{"retry": 2, "give_up": 1})
}

func TestRetryNoAnswer(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client hang up
		<-r.Context().Done()
	}))
	defer slow.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	f := func(url string, timeout time.Duration) {
		t.Helper()
		n := newTestNotifier(t, Config{Webhooks: []Webhook{{Name: "w", URL: url, MaxAttempts: 2, Timeout: timeout}}})
		n.Send(testAlert)
		drain(n)
		if got, want := attemptsTotal(n, "w"), map[string]float64{"retry": 1, "give_up": 1}; !maps.Equal(got, want) {
			t.Errorf("attempts %v, want %v", got, want)
		}
	}
	f(closed.URL, time.Second)
	f(slow.URL, 10*time.Millisecond)
}

func TestBackoff(t *testing.T) {
	f := func(attempt int, retryAfter, lo, hi time.Duration) {
		t.Helper()
		for range 20 {
			if d := backoff(500*time.Millisecond, 30*time.Second, attempt, retryAfter); d < lo || d > hi {
				t.Fatalf("attempt %d, Retry-After %s: waited %s, want [%s, %s]", attempt, retryAfter, d, lo, hi)
			}
		}
	}
	f(1, 0, 250*time.Millisecond, 500*time.Millisecond)
	f(3, 0, time.Second, 2*time.Second)
	f(20, 0, 15*time.Second, 30*time.Second)
	f(1, 2*time.Second, 2*time.Second, 2*time.Second)
	f(1, time.Hour, 30*time.Second, 30*time.Second)

	g := func(header string, want time.Duration) {
		t.Helper()
		if got := parseRetryAfter(header); got != want {
			t.Fatalf("Retry-After %q: %s, want %s", header, got, want)
		}
	}
	g("", 0)
	g("7", 7*time.Second)
	g("-3", 0)
	g("Wed, 21 Oct 2015 07:28:00 GMT", 0)
}

func TestQueueFull(t *testing.T) {
	rec := newReceiver(t)
	n := newTestNotifier(t, Config{QueueSize: 2, Webhooks: []Webhook{{Name: "w", URL: rec.URL}}})
	for range 5 {
		n.Send(testAlert)
	}
	if got := alertsTotal(n, "w", KindExhausted, "dropped"); got != 3 {
		t.Fatalf("dropped %g, want 3", got)
	}
	drain(n)
	if got := alertsTotal(n, "w", KindExhausted, "delivered"); got != 2 || rec.count() != 2 {
		t.Fatalf("delivered %g (%d requests), want the 2 queued", got, rec.count())
	}
}

func TestRunDrains(t *testing.T) {
	rec := newReceiver(t)
	n := newTestNotifier(t, Config{Webhooks: []Webhook{{Name: "w", URL: rec.URL}}})
	for range 3 {
		n.Send(testAlert)
	}
	drain(n)
	if got := alertsTotal(n, "w", KindExhausted, "delivered"); got != 3 {
		t.Fatalf("delivered %g after cancel, want 3", got)
	}
}

func TestRunDrainTimeout(t *testing.T) {
	rec := newReceiver(t, slices.Repeat([]int{503}, 1000)...)
	n := newTestNotifier(t, Config{Webhooks: []Webhook{{Name: "w", URL: rec.URL, MaxAttempts: 1000, BackoffMax: 5 * time.Millisecond}}})
	n.drainTimeout = 50 * time.Millisecond
	n.Send(testAlert)
	n.Send(testAlert)
	began := time.Now()
	drain(n)
	if took := time.Since(began); took > time.Second {
		t.Fatalf("Run took %s to return, want about the drain timeout", took)
	}
	if f, d := alertsTotal(n, "w", KindExhausted, "failed"), alertsTotal(n, "w", KindExhausted, "dropped"); f != 1 || d != 1 {
		t.Fatalf("failed %g, dropped %g; want the first failed and the second dropped", f, d)
	}
}

func TestURLEnv(t *testing.T) {
	rec := newReceiver(t)
	cfg := Config{Webhooks: []Webhook{{URLEnv: "BURNRATE_TEST_ALERT_URL", Format: "slack"}}}
	f := func(value, wantErr string) {
		t.Helper()
		t.Setenv("BURNRATE_TEST_ALERT_URL", value)
		_, err := New(cfg, nil, nil)
		if wantErr == "" {
			if err != nil {
				t.Fatalf("%q: %v", value, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) || (value != "" && strings.Contains(err.Error(), value)) {
			t.Fatalf("%q: error %v, want one containing %q and not the URL", value, err, wantErr)
		}
	}
	f("", "webhooks[0].url_env: environment variable BURNRATE_TEST_ALERT_URL is not set")
	f("ftp://hooks.example/T0/B0/secret", `webhooks[0].url_env: the URL in BURNRATE_TEST_ALERT_URL: scheme "ftp" is not http or https`)
	f(rec.URL+"/T0/B0/secret", "")
}

func TestLogsHoldNoSecrets(t *testing.T) {
	rec := newReceiver(t, 503, 403)
	core, logs := observer.New(zap.DebugLevel)
	n, err := New(Config{Webhooks: []Webhook{{Name: "ops", URL: rec.URL + "/T0/B0/pathsecret", Headers: map[string]string{"Authorization": "Bearer headersecret"}}}}, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	n.backoffStart = time.Millisecond
	n.Send(testAlert)
	drain(n)
	if logs.Len() == 0 {
		t.Fatal("nothing logged")
	}
	for _, e := range logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		s := e.Message + string(line)
		if strings.Contains(s, "secret") || strings.Contains(s, rec.URL) {
			t.Errorf("log %s", s)
		}
		if e.ContextMap()["webhook"] != "ops" {
			t.Errorf("log %s: want webhook=ops", s)
		}
	}
}
