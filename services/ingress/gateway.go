package ingress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
	"github.com/burnrate/burnrate/services/ingress/verdictcache"
)

// Verdicts is the part of the verdict cache the gateway uses.
type Verdicts interface {
	Check(subjects []string, worstCaseNanoUSD int64) verdictcache.Decision
	Reconcile(r verdictcache.Reservation, actualNanoUSD int64)
}

// Emitter takes usage events off the request path. Emit never waits on
// Kafka; it fails only when an event can be neither produced nor spooled.
type Emitter interface {
	Emit(u *events.Usage) error
}

// Pricer prices a call.
type Pricer interface {
	Price(call prices.Call, t events.Tokens) events.Cost
}

// Gateway is the HTTP handler of the ingress.
type Gateway struct {
	cfg      Config
	tagKeys  []string // tags budgets are set on: "tag.<key>=" subjects
	keys     *keyring
	routes   *routeTable
	verdicts Verdicts
	emitter  Emitter
	pricer   Pricer
	client   *http.Client
	log      *zap.Logger
	now      func() time.Time
	metrics  *Metrics
	ready    func() bool
	accept   func() bool
	mux      *http.ServeMux
	seen     *idSet
}

// GatewayDeps are the gateway's collaborators.
type GatewayDeps struct {
	Verdicts Verdicts
	Emitter  Emitter
	Pricer   Pricer
	Log      *zap.Logger
	Now      func() time.Time
	Metrics  *Metrics
	Getenv   func(string) string
	// Ready reports whether the verdict cache has caught up.
	Ready func() bool
	// Accepting is false while usage events can be neither produced nor
	// spooled (spool full, fail-closed); calls are refused then.
	Accepting func() bool
	// Transport reaches the upstreams; nil builds a pooled one.
	Transport http.RoundTripper
	// TagKeys are the attribution tags budgets are set on (meter.tag_keys).
	TagKeys []string
}

// NewGateway validates cfg and builds the handler.
func NewGateway(cfg Config, d GatewayDeps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	routes, err := newRouteTable(cfg.Routes, cfg.CheapRules, d.Getenv)
	if err != nil {
		return nil, err
	}
	tr := d.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.UpstreamTimeout,
			ForceAttemptHTTP2:     true,
		}
	}
	g := &Gateway{tagKeys: d.TagKeys, cfg: cfg, keys: newKeyring(cfg.Keys), routes: routes, verdicts: d.Verdicts, emitter: d.Emitter,
		pricer: d.Pricer, client: &http.Client{Transport: tr}, log: d.Log, now: d.Now, metrics: d.Metrics, ready: d.Ready, accept: d.Accepting,
		seen: newIDSet(200_000)}
	if g.metrics == nil {
		g.metrics = newMetrics(nil)
	}
	if g.ready == nil {
		g.ready = func() bool { return true }
	}
	if g.accept == nil {
		g.accept = func() bool { return true }
	}
	mux := http.NewServeMux()
	for path, ep := range endpoints {
		ep := ep
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) { g.proxy(w, r, ep) })
	}
	mux.HandleFunc("GET /v1/models", g.models)
	mux.HandleFunc("POST /v1/usage", g.collect)
	mux.HandleFunc("POST /v1/check", g.check)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.ready() {
			http.Error(w, "verdict cache catching up\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	g.mux = mux
	return g, nil
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// endpoint is one proxied API.
type endpoint struct {
	name      string // metric label
	suffix    string // path after /v1
	anthropic bool   // Anthropic Messages API (else OpenAI-shaped)
	responses bool   // OpenAI Responses API usage shape
}

var endpoints = map[string]endpoint{
	"/v1/chat/completions": {name: "chat_completions", suffix: "/chat/completions"},
	"/v1/completions":      {name: "completions", suffix: "/completions"},
	"/v1/embeddings":       {name: "embeddings", suffix: "/embeddings"},
	"/v1/responses":        {name: "responses", suffix: "/responses", responses: true},
	"/v1/messages":         {name: "messages", suffix: "/messages", anthropic: true},
}

// call carries one request through the gateway.
type call struct {
	ep          endpoint
	start       time.Time
	key         *Key
	attr        events.Attribution
	req         callRequest
	requested   string
	route       *upstream
	subjects    []string
	reservation verdictcache.Reservation
	reserved    bool
	status      events.Status
	upstreamDur time.Duration
	ttft        time.Duration
	tokens      events.Tokens
	estimated   bool
	errMsg      string
}

func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, ep endpoint) {
	c := &call{ep: ep, start: g.now(), status: events.StatusOK}
	key, ok := g.keyOf(w, r, ep)
	if !ok {
		return
	}
	c.key = key
	attr, err := attribution(key, r.Header)
	if err != nil {
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", err.Error(), "")
		return
	}
	c.attr = attr
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			g.fail(w, ep, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body is larger than %d bytes", g.cfg.MaxBodyBytes), "")
			return
		}
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", "reading request body: "+err.Error(), "")
		return
	}
	c.req, err = parseCall(body)
	if err != nil {
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", err.Error(), "model")
		return
	}
	c.requested = c.req.Model
	route, ok := g.routes.byModel[c.req.Model]
	if !ok {
		g.fail(w, ep, http.StatusNotFound, "model_not_found", fmt.Sprintf("model %q is not routed by this gateway", c.req.Model), "model")
		return
	}
	if !key.allows(c.req.Model) {
		g.fail(w, ep, http.StatusForbidden, "model_not_allowed", fmt.Sprintf("key %s may not call model %q", key.ID, c.req.Model), "model")
		return
	}
	if ep.anthropic != (route.Provider == "anthropic") {
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("model %q is served by %s; call it through the %s API", c.req.Model, route.Provider, apiOf(route.Provider)), "model")
		return
	}
	prompt := c.req.estimatedPromptTokens()
	if key.MaxInputTokens > 0 && prompt > key.MaxInputTokens {
		g.fail(w, ep, http.StatusBadRequest, "context_length_exceeded", fmt.Sprintf("prompt of about %d tokens is over this key's limit of %d input tokens", prompt, key.MaxInputTokens), "messages")
		return
	}
	var rw rewrite
	outCap := c.req.maxOutput()
	if key.MaxOutputTokens > 0 && (outCap == 0 || outCap > key.MaxOutputTokens) {
		rw.capField, rw.capValue = capField(ep, &c.req), key.MaxOutputTokens
		outCap = key.MaxOutputTokens
	}
	// Cheap routing for simple requests.
	for _, rule := range g.routes.cheap {
		if rule.From == c.req.Model && prompt <= rule.MaxPromptTokens && (!rule.NoTools || !c.req.hasTools()) && key.allows(rule.To) {
			route = g.routes.byModel[rule.To]
			break
		}
	}
	// Enforcement: every subject of the call, against the in-memory cache.
	c.route = route // blocked calls are reported under the route they asked for
	c.subjects = subjectsOf(&c.attr, c.requested, g.tagKeys)
	worst := g.worstCase(route, prompt, outCap)
	if !g.ready() && !g.cfg.FailOpen {
		g.block(w, c, "cache_not_ready", "verdict cache not ready", nil)
		return
	}
	if !g.accept() {
		g.fail(w, ep, http.StatusServiceUnavailable, "spool_full", "usage events can be neither sent to Kafka nor spooled; refusing calls until the spool drains", "")
		return
	}
	d := g.verdicts.Check(c.subjects, worst)
	switch d.Action {
	case events.ActionThrottle:
		g.block(w, c, "throttle", d.Reason(), d.Verdict)
		return
	case events.ActionBlock:
		g.block(w, c, blockLabel(d.Reason()), d.Reason(), d.Verdict)
		return
	case events.ActionDowngrade:
		if to, ok := g.routes.byModel[d.DowngradeTo]; ok && key.allows(d.DowngradeTo) {
			route = to
			c.status = events.StatusDowngraded
		}
	}
	c.reservation, c.reserved = d.Reservation, d.HasReservation()
	if route.UpstreamModel != c.req.Model {
		rw.model = route.UpstreamModel
	}
	clientWantsUsage := c.req.StreamOptions != nil && c.req.StreamOptions.IncludeUsage
	if c.req.Stream && !ep.anthropic && !ep.responses && !clientWantsUsage {
		rw.includeUsage = true
	}
	if rw.needed() {
		if body, err = rw.apply(body); err != nil {
			g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", err.Error(), "")
			return
		}
	}
	g.forward(w, r, c, route, body, clientWantsUsage)
}

func apiOf(provider string) string {
	if provider == "anthropic" {
		return "Anthropic /v1/messages"
	}
	return "OpenAI /v1/chat/completions"
}

func capField(ep endpoint, r *callRequest) string {
	switch {
	case ep.responses:
		return "max_output_tokens"
	case r.MaxCompletionTokens != nil:
		return "max_completion_tokens"
	default:
		return "max_tokens"
	}
}

// worstCase prices the call as if it used its whole output cap (or a
// default of 4096 tokens when uncapped).
func (g *Gateway) worstCase(route *upstream, prompt, outCap int64) int64 {
	if outCap <= 0 {
		outCap = 4096
	}
	cost := g.pricer.Price(prices.Call{Provider: route.priceProvider, Model: route.UpstreamModel}, events.Tokens{Input: prompt, Output: outCap})
	return cost.TotalNanoUSD
}

// keyOf authenticates the call or answers 401.
func (g *Gateway) keyOf(w http.ResponseWriter, r *http.Request, ep endpoint) (*Key, bool) {
	key, ok := g.authenticate(r, ep)
	if !ok {
		g.fail(w, ep, http.StatusUnauthorized, "invalid_api_key", "missing or unknown Burnrate virtual key", "")
	}
	return key, ok
}

func (g *Gateway) authenticate(r *http.Request, ep endpoint) (*Key, bool) {
	token := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimSpace(h[len("Bearer "):])
	}
	if token == "" && ep.anthropic {
		token = r.Header.Get("X-Api-Key")
	}
	return g.keys.lookup(token)
}

// forward sends the call upstream, trying fallbacks on 5xx, 429 or a
// transport error, and relays the first good response.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, c *call, route *upstream, body []byte, clientWantsUsage bool) {
	tries := append([]*upstream{route}, g.fallbacks(route, c.key)...)
	var resp *http.Response
	var err error
	upStart := g.now()
	for i, u := range tries {
		if i > 0 {
			b, rerr := rewrite{model: u.UpstreamModel}.apply(body)
			if rerr != nil {
				break
			}
			body = b
		}
		resp, err = g.send(r.Context(), r, c, u, body)
		route = u
		if err == nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			break
		}
		if i < len(tries)-1 {
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			g.metrics.fallbacks.WithLabelValues(c.ep.name).Inc()
		}
	}
	c.route = route
	if err != nil {
		c.upstreamDur = g.now().Sub(upStart)
		c.status, c.errMsg, c.estimated = events.StatusUpstreamError, "upstream: "+err.Error(), true
		c.tokens = events.Tokens{Input: c.req.estimatedPromptTokens()}
		g.fail(w, c.ep, http.StatusBadGateway, "upstream_error", "upstream unreachable: "+err.Error(), "")
		g.finish(c)
		return
	}
	defer resp.Body.Close()
	copyHeaders(w.Header(), resp.Header)
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		c.upstreamDur = g.now().Sub(upStart)
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
		c.status, c.estimated = events.StatusUpstreamError, true
		c.errMsg = "upstream status " + strconv.Itoa(resp.StatusCode)
		g.finish(c)
		return
	}
	if c.req.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		w.WriteHeader(resp.StatusCode)
		g.relayStream(w, resp.Body, c, upStart, clientWantsUsage)
		c.upstreamDur = g.now().Sub(upStart)
		g.finish(c)
		return
	}
	b, err := io.ReadAll(resp.Body)
	c.upstreamDur = g.now().Sub(upStart)
	// Send the whole response now: pricing and emitting the usage event
	// happen after the client has its answer.
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if err != nil {
		c.status, c.errMsg, c.estimated = events.StatusUpstreamError, "upstream body: "+err.Error(), true
		c.tokens = events.Tokens{Input: c.req.estimatedPromptTokens(), Output: int64(len(b)) / 4}
	} else if tok, err := g.usageOf(c, b); err != nil {
		c.estimated, c.errMsg = true, "usage: "+err.Error()
		c.tokens = events.Tokens{Input: c.req.estimatedPromptTokens(), Output: int64(len(b)) / 4}
	} else {
		c.tokens = tok
	}
	g.finish(c)
}

// usageOf reads the usage object of a whole response; the Responses API
// shape is told apart from Chat by its fields.
func (g *Gateway) usageOf(c *call, body []byte) (events.Tokens, error) {
	if c.ep.anthropic {
		return normalize.Usage("anthropic", body)
	}
	return normalize.Usage("openai", body)
}

func (g *Gateway) fallbacks(route *upstream, key *Key) []*upstream {
	var out []*upstream
	for _, m := range route.Fallbacks {
		if u, ok := g.routes.byModel[m]; ok && key.allows(m) && (u.Provider == "anthropic") == (route.Provider == "anthropic") {
			out = append(out, u)
		}
	}
	return out
}

// hopHeaders are never copied between client and upstream.
var forwardedRequestHeaders = []string{"Content-Type", "Accept", "OpenAI-Beta", "OpenAI-Organization", "Anthropic-Version", "Anthropic-Beta", "User-Agent"}

func (g *Gateway) send(ctx context.Context, r *http.Request, c *call, u *upstream, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.endpointURL(c.ep.suffix), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range forwardedRequestHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch u.Provider {
	case "anthropic":
		req.Header.Set("X-Api-Key", u.credential)
		if req.Header.Get("Anthropic-Version") == "" {
			req.Header.Set("Anthropic-Version", "2023-06-01")
		}
	case "azure":
		req.Header.Set("Api-Key", u.credential)
	default:
		if u.credential != "" {
			req.Header.Set("Authorization", "Bearer "+u.credential)
		}
	}
	return g.client.Do(req)
}

var passedResponseHeaders = []string{"Content-Type", "X-Request-Id", "Request-Id", "Openai-Processing-Ms", "Retry-After"}

func copyHeaders(dst, src http.Header) {
	for _, h := range passedResponseHeaders {
		if v := src.Get(h); v != "" {
			dst.Set(h, v)
		}
	}
}

// finish prices the call, reconciles the lease reservation and emits the
// usage event.
func (g *Gateway) finish(c *call) {
	ev := g.usageEvent(c)
	if c.reserved {
		g.verdicts.Reconcile(c.reservation, ev.Cost.TotalNanoUSD)
	}
	g.emit(ev, c.ep.name)
	total := g.now().Sub(c.start)
	g.metrics.observe(c.ep.name, ev, total-c.upstreamDur, c.upstreamDur)
}

func (g *Gateway) usageEvent(c *call) *events.Usage {
	now := g.now()
	ev := &events.Usage{
		Schema:            events.SchemaUsage,
		ID:                events.NewID(c.start),
		OccurredAt:        c.start.UTC(),
		ReceivedAt:        now.UTC(),
		Attribution:       c.attr,
		RequestedModel:    c.requested,
		Tokens:            c.tokens,
		LatencyMS:         now.Sub(c.start).Milliseconds(),
		Status:            c.status,
		Stream:            c.req.Stream,
		PromptFingerprint: c.req.fingerprint(),
		Error:             truncate(c.errMsg, 1024),
	}
	if c.req.Stream {
		ev.TTFTMS = c.ttft.Milliseconds()
		if ev.TTFTMS > ev.LatencyMS {
			ev.TTFTMS = ev.LatencyMS
		}
	}
	if c.route != nil {
		ev.Provider = c.route.Provider
		ev.ServedModel = c.route.UpstreamModel
		if c.status == events.StatusBlocked {
			ev.ServedModel = "" // nothing was served
		}
		ev.Route = c.route.Model
		ev.Cost = g.pricer.Price(prices.Call{Provider: c.route.priceProvider, Model: c.route.UpstreamModel}, c.tokens)
	} else {
		ev.Cost = events.Cost{Unpriced: true}
	}
	ev.Cost.Estimated = c.estimated
	return ev
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (g *Gateway) emit(ev *events.Usage, endpoint string) {
	if err := g.emitter.Emit(ev); err != nil {
		g.metrics.emitErrors.Inc()
		g.log.Error("usage event lost", zap.String("id", ev.ID), zap.String("endpoint", endpoint), zap.Error(err))
	}
}

// block answers 429 in the provider's error shape and still emits a usage
// event with status blocked.
func (g *Gateway) block(w http.ResponseWriter, c *call, label, reason string, v *events.Verdict) {
	subject, limit, spent, resets := "", int64(0), int64(0), ""
	if v != nil {
		subject, limit, spent = v.Subject, v.LimitNanoUSD, v.SpentNanoUSD
		if !v.ExpiresAt.IsZero() {
			resets = v.ExpiresAt.UTC().Format(time.RFC3339)
		}
	}
	g.metrics.blocked.WithLabelValues(label).Inc()
	w.Header().Set("Content-Type", "application/json")
	if resets != "" {
		if v != nil {
			if secs := int(v.ExpiresAt.Sub(g.now()).Seconds()); secs > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(secs))
			}
		}
	}
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write(blockBody(c.ep.anthropic, subject, reason, limit, spent, resets))
	c.status = events.StatusBlocked
	c.tokens = events.Tokens{}
	g.finish(c)
}
