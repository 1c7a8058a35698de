package ingress

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/services/ingress/verdictcache"
	"github.com/burnrate/burnrate/services/mockupstream"
)

// Test keys: tokens and the config entries that hold only their hashes.
const (
	tokenPayments = "sk-br-test-payments"
	tokenDev      = "sk-br-test-dev"
)

// recorder is an Emitter that keeps events in memory (unit tests only; the
// integration tests use the real broker).
type recorder struct {
	mu    sync.Mutex
	evs   []events.Usage
	taken int // events already returned by last
}

func (r *recorder) Emit(u *events.Usage) error {
	if err := u.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	r.evs = append(r.evs, *u)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []events.Usage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Usage(nil), r.evs...)
}

// last waits for the event of the call just made: the gateway answers the
// client first and emits after, so the event can trail the response.
func (r *recorder) last(t *testing.T) events.Usage {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.evs)
		if n > r.taken {
			r.taken = n
			ev := r.evs[n-1]
			r.mu.Unlock()
			return ev
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no usage event emitted")
		}
		time.Sleep(time.Millisecond)
	}
}

// testConfig routes OpenAI-, Azure- and Anthropic-shaped models to the mock.
func testConfig(upstream string) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Spool.Dir = "unused"
	cfg.Keys = []Key{
		{ID: "vk_payments", SHA256: HashKey(tokenPayments), Org: "acme", Team: "payments", App: "checkout", Env: "prod",
			AttributionHeaders: true, MaxOutputTokens: 1000, MaxInputTokens: 50_000},
		{ID: "vk_dev", SHA256: HashKey(tokenDev), Team: "research", App: "notebook", Env: "dev",
			AllowedModels: []string{"gpt-4o-mini"}},
	}
	cfg.Routes = []Route{
		{Model: "gpt-4o-mini", Provider: "openai", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_OPENAI_KEY"},
		{Model: "gpt-4o", Provider: "openai", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_OPENAI_KEY"},
		{Model: "o3", Provider: "openai", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_OPENAI_KEY"},
		{Model: "gpt-4.1", Provider: "openai", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_OPENAI_KEY", Fallbacks: []string{"gpt-4.1-azure"}},
		{Model: "gpt-4.1-azure", Provider: "azure", PriceAs: "azure", UpstreamModel: "gpt-4.1", BaseURL: upstream, APIKeyEnv: "TEST_AZURE_KEY", AzureAPIVersion: "2024-10-21"},
		{Model: "text-embedding-3-small", Provider: "openai", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_OPENAI_KEY"},
		{Model: "claude-sonnet-4-5", Provider: "anthropic", BaseURL: upstream + "/v1", APIKeyEnv: "TEST_ANTHROPIC_KEY"},
	}
	cfg.CheapRules = []CheapRule{{From: "gpt-4o", To: "gpt-4o-mini", MaxPromptTokens: 20, NoTools: true}}
	return cfg
}

func testEnv(k string) string {
	return map[string]string{"TEST_OPENAI_KEY": "sk-upstream-openai", "TEST_AZURE_KEY": "azure-secret", "TEST_ANTHROPIC_KEY": "sk-ant-upstream"}[k]
}

// mockTransport adds X-Mock-* headers (the mock upstream's knobs) to the
// gateway's upstream requests; the gateway itself never forwards them.
type mockTransport struct {
	mu      sync.Mutex
	headers map[string]string
	// only, when set, limits the headers to URLs containing it.
	only   string
	seen   []*http.Request
	bodies []string
}

func (m *mockTransport) set(only string, kv ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.headers, m.only = map[string]string{}, only
	for i := 0; i+1 < len(kv); i += 2 {
		m.headers[kv[i]] = kv[i+1]
	}
}

func (m *mockTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	m.mu.Lock()
	if m.only == "" || strings.Contains(r.URL.String(), m.only) {
		for k, v := range m.headers {
			r.Header.Set(k, v)
		}
	}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	m.seen = append(m.seen, r)
	m.bodies = append(m.bodies, string(body))
	m.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (m *mockTransport) lastRequest() (*http.Request, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seen) == 0 {
		return nil, ""
	}
	return m.seen[len(m.seen)-1], m.bodies[len(m.bodies)-1]
}

type rig struct {
	tr       *mockTransport
	gw       *Gateway
	srv      *httptest.Server
	upstream *httptest.Server
	rec      *recorder
	cache    *verdictcache.Cache
	now      time.Time
}

func newRig(t testing.TB) *rig {
	t.Helper()
	up := httptest.NewServer(mockupstream.Handler(mockupstream.Config{}))
	t.Cleanup(up.Close)
	cat, err := prices.Load("")
	if err != nil {
		t.Fatal(err)
	}
	h := &rig{upstream: up, rec: &recorder{}, tr: &mockTransport{}}
	h.cache = verdictcache.New(time.Now)
	h.cache.SetReady(true)
	gw, err := NewGateway(testConfig(up.URL), GatewayDeps{Verdicts: h.cache, Emitter: h.rec, Pricer: prices.NewPricer(cat, nil),
		Log: zap.NewNop(), Now: time.Now, Getenv: testEnv, Transport: h.tr})
	if err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	h.srv = httptest.NewServer(gw)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *rig) post(t *testing.T, path, token, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.srv.URL+path, stringsReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

var fixedTime = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
