package ingress

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
)

const chatBody = `{"model":"%s","messages":[{"role":"system","content":"You are a careful assistant for the payments team."},{"role":"user","content":"Summarise the refund policy in three bullet points please."}]%s}`

func chat(model, extra string) string {
	return strings.Replace(strings.Replace(chatBody, "%s", model, 1), "%s", extra, 1)
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCost checks the event was priced from its own tokens by the catalog.
func wantCost(t *testing.T, ev events.Usage, provider, model string) {
	t.Helper()
	cat, _ := prices.Load("")
	want := cat.Price(prices.Call{Provider: provider, Model: model}, ev.Tokens)
	if ev.Cost.TotalNanoUSD != want.TotalNanoUSD || ev.Cost.PriceVersion != cat.Version() {
		t.Errorf("cost %+v, want %d nano-USD at %s", ev.Cost, want.TotalNanoUSD, cat.Version())
	}
	if ev.Cost.TotalNanoUSD <= 0 && ev.Status == events.StatusOK {
		t.Errorf("a served call priced at %d", ev.Cost.TotalNanoUSD)
	}
}

func TestChatCachedPromptAndReasoning(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Cached-Tokens", "8", "X-Mock-Reasoning-Tokens", "20")
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("o3", ""),
		HeaderUser, "u-42", HeaderCustomer, "globex", HeaderFeature, "refunds", HeaderAgentRun, "run-1", HeaderAgentStep, "3", HeaderTags, "tier=gold, region=eu")
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The tokens in the event are what the client's own usage object says,
	// normalised: prompt_tokens include the 8 cached, completion_tokens the 20 reasoning.
	want, err := normalize.Usage("openai", body)
	if err != nil {
		t.Fatal(err)
	}
	ev := h.rec.last(t)
	if ev.Tokens != want || want.CachedInput != 8 || want.Reasoning != 20 {
		t.Errorf("tokens %+v, want %+v", ev.Tokens, want)
	}
	wantCost(t, ev, "openai", "o3")
	a := ev.Attribution
	if a.Team != "payments" || a.App != "checkout" || a.Env != "prod" || a.Org != "acme" || a.VirtualKeyID != "vk_payments" ||
		a.User != "u-42" || a.Customer != "globex" || a.Feature != "refunds" || a.AgentRunID != "run-1" || a.AgentStep != 3 ||
		a.Tags["tier"] != "gold" || a.Tags["region"] != "eu" {
		t.Errorf("attribution %+v", a)
	}
	if ev.Status != events.StatusOK || ev.Provider != "openai" || ev.ServedModel != "o3" || ev.Stream || ev.PromptFingerprint == "" {
		t.Errorf("event %+v", ev)
	}
	// The provider credential went upstream; the virtual key did not.
	req, _ := h.tr.lastRequest()
	if got := req.Header.Get("Authorization"); got != "Bearer sk-upstream-openai" {
		t.Errorf("upstream Authorization %q", got)
	}
	if strings.Contains(string(body), "sk-upstream") {
		t.Error("provider credential leaked to the client")
	}
}

// sse reads a stream as (event, data) pairs.
func sse(t *testing.T, resp *http.Response) (datas []string, events []string) {
	t.Helper()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") {
			datas = append(datas, strings.TrimPrefix(line, "data: "))
		}
		if strings.HasPrefix(line, "event: ") {
			events = append(events, strings.TrimPrefix(line, "event: "))
		}
	}
	return datas, events
}

func TestStreamAddsUsageAndHidesIt(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Cached-Tokens", "4")
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", `,"stream":true`))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	datas, _ := sse(t, resp)
	for _, d := range datas {
		if strings.Contains(d, `"usage":{`) {
			t.Errorf("the client did not ask for usage but got it: %s", d)
		}
	}
	if len(datas) == 0 || datas[len(datas)-1] != "[DONE]" {
		t.Fatalf("stream did not end with [DONE]: %v", datas)
	}
	// The ingress asked upstream for usage.
	_, upBody := h.tr.lastRequest()
	if !strings.Contains(upBody, `"include_usage":true`) {
		t.Errorf("upstream request lacks include_usage: %s", upBody)
	}
	ev := h.rec.last(t)
	if ev.Cost.Estimated || ev.Tokens.Output == 0 || ev.Tokens.CachedInput != 4 || !ev.Stream || ev.Status != events.StatusOK {
		t.Errorf("event %+v", ev)
	}
	wantCost(t, ev, "openai", "gpt-4o-mini")
}

// A Responses API stream ends with response.completed, or with
// response.incomplete when the answer was cut; both carry the billed usage,
// which the event must use (not an estimate).
func TestResponsesStreamUsageFromEitherTerminalEvent(t *testing.T) {
	for _, incomplete := range []bool{false, true} {
		h := newRig(t)
		knobs := []string{"X-Mock-Cached-Tokens", "6", "X-Mock-Reasoning-Tokens", "9"}
		terminal := "response.completed"
		if incomplete {
			knobs = append(knobs, "X-Mock-Incomplete", "1")
			terminal = "response.incomplete"
		}
		h.tr.set("", knobs...)
		resp := h.post(t, "/v1/responses", tokenPayments, `{"model":"gpt-4o-mini","input":"Summarise the invoice.","stream":true,"max_output_tokens":20}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		datas, names := sse(t, resp)
		if len(names) == 0 || names[len(names)-1] != terminal {
			t.Fatalf("%s: events %v", terminal, names)
		}
		var last struct {
			Response struct {
				Usage json.RawMessage `json:"usage"`
			} `json:"response"`
		}
		if err := json.Unmarshal([]byte(datas[len(datas)-1]), &last); err != nil {
			t.Fatal(err)
		}
		want, err := normalize.OpenAIResponsesUsage(last.Response.Usage)
		if err != nil {
			t.Fatal(err)
		}
		ev := h.rec.last(t)
		if ev.Tokens != want || ev.Cost.Estimated || ev.Status != events.StatusOK || !ev.Stream || want.CachedInput != 6 || want.Reasoning != 9 {
			t.Errorf("%s: event tokens %+v estimated %v status %s; the stream said %+v", terminal, ev.Tokens, ev.Cost.Estimated, ev.Status, want)
		}
		wantCost(t, ev, "openai", "gpt-4o-mini")
	}
}

func TestStreamKeepsUsageTheClientAskedFor(t *testing.T) {
	h := newRig(t)
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", `,"stream":true,"stream_options":{"include_usage":true}`))
	datas, _ := sse(t, resp)
	var usage *normalizeCheck
	for _, d := range datas {
		if strings.Contains(d, `"usage":{`) {
			var c struct {
				Usage json.RawMessage `json:"usage"`
			}
			json.Unmarshal([]byte(d), &c)
			tok, err := normalize.OpenAIChatUsage(c.Usage)
			if err != nil {
				t.Fatal(err)
			}
			usage = &normalizeCheck{tok}
		}
	}
	if usage == nil {
		t.Fatal("the client asked for usage and did not get it")
	}
	if ev := h.rec.last(t); ev.Tokens != usage.t {
		t.Errorf("event tokens %+v, stream said %+v", ev.Tokens, usage.t)
	}
}

type normalizeCheck struct{ t events.Tokens }

func TestUsageOnChunkWithChoices(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Usage-With-Choices", "1")
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", `,"stream":true`))
	datas, _ := sse(t, resp)
	if len(datas) < 2 {
		t.Fatalf("short stream %v", datas)
	}
	ev := h.rec.last(t)
	if ev.Cost.Estimated || ev.Tokens.Output == 0 {
		t.Errorf("usage on a chunk with choices was missed: %+v", ev)
	}
}

func TestAnthropicStreamLastDeltaWins(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Cached-Tokens", "100", "X-Mock-Cache-Write-Tokens", "50")
	body := `{"model":"claude-sonnet-4-5","max_tokens":40,"stream":true,"messages":[{"role":"user","content":"Write a haiku about invoices."}]}`
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("X-Api-Key", tokenPayments)
	req.Header.Set("Anthropic-Version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	datas, evnames := sse(t, resp)
	if len(evnames) == 0 || evnames[0] != "message_start" || evnames[len(evnames)-1] != "message_stop" {
		t.Fatalf("events %v", evnames)
	}
	// Replay what the client saw through the normaliser: last delta wins.
	var s normalize.AnthropicStream
	for _, d := range datas {
		var e struct {
			Type    string `json:"type"`
			Message struct {
				Usage json.RawMessage `json:"usage"`
			} `json:"message"`
			Usage json.RawMessage `json:"usage"`
		}
		json.Unmarshal([]byte(d), &e)
		if e.Type == "message_start" {
			s.Start(e.Message.Usage)
		}
		if e.Type == "message_delta" {
			s.Delta(e.Usage)
		}
	}
	want, _ := s.Tokens()
	ev := h.rec.last(t)
	if ev.Tokens != want || want.CachedInput != 100 || want.CacheWrite5m != 50 || want.Output <= 1 {
		t.Errorf("tokens %+v, want %+v", ev.Tokens, want)
	}
	wantCost(t, ev, "anthropic", "claude-sonnet-4-5")
	upReq, _ := h.tr.lastRequest()
	if upReq.Header.Get("X-Api-Key") != "sk-ant-upstream" {
		t.Errorf("upstream x-api-key %q", upReq.Header.Get("X-Api-Key"))
	}
}

func TestAnthropicNonStream(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Cached-Tokens", "30")
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi there"}]}`))
	req.Header.Set("Authorization", "Bearer "+tokenPayments)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	want, err := normalize.Usage("anthropic", body)
	if err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if ev := h.rec.last(t); ev.Tokens != want || want.CachedInput != 30 {
		t.Errorf("tokens %+v, want %+v", ev.Tokens, want)
	}
}

func TestOtherEndpoints(t *testing.T) {
	h := newRig(t)
	f := func(path, body, provider, model string) {
		t.Helper()
		resp := h.post(t, path, tokenPayments, body)
		b := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		want, err := normalize.Usage("openai", b)
		if err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		ev := h.rec.last(t)
		if ev.Tokens != want || ev.Tokens.Input == 0 {
			t.Errorf("%s: tokens %+v, want %+v", path, ev.Tokens, want)
		}
		wantCost(t, ev, provider, model)
	}
	f("/v1/completions", `{"model":"gpt-4o-mini","prompt":"Once upon a time","max_tokens":10}`, "openai", "gpt-4o-mini")
	f("/v1/embeddings", `{"model":"text-embedding-3-small","input":"the quick brown fox"}`, "openai", "text-embedding-3-small")
	f("/v1/responses", `{"model":"gpt-4o-mini","input":"Tell me a joke about budgets."}`, "openai", "gpt-4o-mini")

	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+tokenDev)
	resp, _ := http.DefaultClient.Do(req)
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	json.Unmarshal(readAll(t, resp), &list)
	if len(list.Data) != 1 || list.Data[0].ID != "gpt-4o-mini" {
		t.Errorf("models for the dev key: %+v", list)
	}
}

func TestRefusals(t *testing.T) {
	h := newRig(t)
	f := func(path, token, body string, status int, wantType string, headers ...string) {
		t.Helper()
		resp := h.post(t, path, token, body, headers...)
		b := readAll(t, resp)
		if resp.StatusCode != status || !strings.Contains(string(b), `"type":"`+wantType+`"`) {
			t.Errorf("%s: got %d %s, want %d %s", body, resp.StatusCode, b, status, wantType)
		}
	}
	f("/v1/chat/completions", "", chat("gpt-4o-mini", ""), 401, "invalid_api_key")
	f("/v1/chat/completions", "sk-wrong", chat("gpt-4o-mini", ""), 401, "invalid_api_key")
	f("/v1/chat/completions", tokenDev, chat("gpt-4o", ""), 403, "model_not_allowed")
	f("/v1/chat/completions", tokenPayments, chat("gpt-7", ""), 404, "model_not_found")
	f("/v1/chat/completions", tokenPayments, `{"messages":[]}`, 400, "invalid_request_error")
	f("/v1/chat/completions", tokenPayments, `{not json`, 400, "invalid_request_error")
	f("/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""), 400, "invalid_request_error", HeaderAgentStep, "two", HeaderAgentRun, "r")
	f("/v1/chat/completions", tokenPayments, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+strings.Repeat("x", 250_000)+`"}]}`, 400, "context_length_exceeded")
	f("/v1/chat/completions", tokenPayments, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+strings.Repeat("x", 9<<20)+`"}]}`, 413, "request_too_large")
	f("/v1/chat/completions", tokenPayments, chat("claude-sonnet-4-5", ""), 400, "invalid_request_error")
	if n := len(h.rec.all()); n != 0 {
		t.Errorf("refused calls emitted %d usage events", n)
	}
}

func TestMaxTokensIsCapped(t *testing.T) {
	h := newRig(t)
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", `,"max_tokens":100000`))
	readAll(t, resp)
	_, up := h.tr.lastRequest()
	if !strings.Contains(up, `"max_tokens":1000`) {
		t.Errorf("upstream body not capped: %s", up)
	}
}

func TestCheapRouting(t *testing.T) {
	h := newRig(t)
	readAll(t, h.post(t, "/v1/chat/completions", tokenPayments, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	ev := h.rec.last(t)
	if ev.RequestedModel != "gpt-4o" || ev.ServedModel != "gpt-4o-mini" {
		t.Errorf("a tiny prompt was not sent to the cheap model: %+v", ev)
	}
	readAll(t, h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o", "")))
	if ev := h.rec.last(t); ev.ServedModel != "gpt-4o" {
		t.Errorf("a longer prompt went to %s", ev.ServedModel)
	}
}

func TestFallbackOnUpstream5xx(t *testing.T) {
	h := newRig(t)
	// The OpenAI route fails; the Azure fallback answers.
	h.tr.set("/v1/chat/completions", "X-Mock-Status", "500")
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4.1", ""))
	b := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("fallback did not answer: %d %s", resp.StatusCode, b)
	}
	ev := h.rec.last(t)
	if ev.Route != "gpt-4.1-azure" || ev.Provider != "azure" {
		t.Errorf("event %+v", ev)
	}
	req, _ := h.tr.lastRequest()
	if !strings.Contains(req.URL.String(), "/openai/deployments/gpt-4.1/chat/completions?api-version=2024-10-21") || req.Header.Get("Api-Key") != "azure-secret" {
		t.Errorf("azure request %s %v", req.URL, req.Header)
	}
	wantCost(t, ev, "azure", "gpt-4.1")
}

func TestUpstreamErrorAndInterruptedStreamStillEmit(t *testing.T) {
	h := newRig(t)
	h.tr.set("", "X-Mock-Status", "503")
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""))
	readAll(t, resp)
	if resp.StatusCode != 503 {
		t.Errorf("status %d", resp.StatusCode)
	}
	ev := h.rec.last(t)
	if ev.Status != events.StatusUpstreamError || !ev.Cost.Estimated {
		t.Errorf("upstream error event %+v", ev)
	}

	h.tr.set("", "X-Mock-Interrupt-After", "3")
	resp = h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", `,"stream":true`))
	sse(t, resp)
	ev = h.rec.last(t)
	if ev.Status != events.StatusUpstreamError || !ev.Cost.Estimated || ev.Tokens.Input == 0 || ev.Tokens.Output == 0 || ev.Cost.TotalNanoUSD == 0 {
		t.Errorf("interrupted stream event %+v", ev)
	}
}
