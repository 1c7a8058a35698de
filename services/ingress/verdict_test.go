package ingress

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/schemas/events"
)

func verdict(subject string, action events.Action, mutate ...func(*events.Verdict)) events.Verdict {
	now := time.Now().UTC()
	v := events.Verdict{Schema: events.SchemaVerdict, ID: events.NewID(now), Subject: subject, Action: action, Reason: "budget exceeded",
		LimitNanoUSD: 5_000_000_000, SpentNanoUSD: 5_010_000_000, IssuedAt: now, ExpiresAt: now.Add(time.Hour), IssuedBy: "test"}
	for _, m := range mutate {
		m(&v)
	}
	return v
}

func TestBlockVerdictGives429AndStillEmits(t *testing.T) {
	h := newRig(t)
	h.cache.Apply(verdict("team=payments", events.ActionBlock))
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""))
	b := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	var body struct {
		Error struct {
			Type     string `json:"type"`
			Subject  string `json:"subject"`
			Reason   string `json:"reason"`
			Limit    int64  `json:"limit_nano_usd"`
			Spent    int64  `json:"spent_nano_usd"`
			ResetsAt string `json:"resets_at"`
			Message  string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	e := body.Error
	if e.Type != "burnrate_blocked" || e.Subject != "team=payments" || e.Reason != "budget exceeded" || e.Limit != 5_000_000_000 ||
		e.Spent != 5_010_000_000 || e.ResetsAt == "" || !strings.Contains(e.Message, "team=payments") {
		t.Errorf("429 body %s", b)
	}
	ev := h.rec.last(t)
	if ev.Status != events.StatusBlocked || ev.Cost.TotalNanoUSD != 0 || ev.Attribution.Team != "payments" {
		t.Errorf("blocked event %+v", ev)
	}
	// Another team is not affected.
	resp = h.post(t, "/v1/chat/completions", tokenDev, chat("gpt-4o-mini", ""))
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("other team got %d", resp.StatusCode)
	}
	// Anthropic callers get Anthropic's error shape.
	h.cache.Apply(verdict("model=claude-sonnet-4-5", events.ActionBlock))
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`))
	req.Header.Set("X-Api-Key", tokenDev)
	resp, _ = http.DefaultClient.Do(req)
	b = readAll(t, resp)
	if resp.StatusCode != 403 && !strings.HasPrefix(string(b), `{"error"`) && !strings.Contains(string(b), `"type":"error"`) {
		t.Errorf("anthropic block shape %d %s", resp.StatusCode, b)
	}
}

func TestAgentRunVerdictStopsOnlyThatRun(t *testing.T) {
	h := newRig(t)
	h.cache.Apply(verdict("agent_run=loop-7", events.ActionBlock, func(v *events.Verdict) { v.Reason = "loop: same prompt 40 times in a minute" }))
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""), HeaderAgentRun, "loop-7")
	readAll(t, resp)
	if resp.StatusCode != 429 {
		t.Errorf("looping run got %d", resp.StatusCode)
	}
	resp = h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""), HeaderAgentRun, "healthy-1")
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("other run got %d", resp.StatusCode)
	}
}

func TestDowngradeVerdict(t *testing.T) {
	h := newRig(t)
	h.cache.Apply(verdict("team=payments", events.ActionDowngrade, func(v *events.Verdict) { v.DowngradeTo = "gpt-4o-mini" }))
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("o3", ""))
	readAll(t, resp)
	ev := h.rec.last(t)
	if resp.StatusCode != 200 || ev.Status != events.StatusDowngraded || ev.RequestedModel != "o3" || ev.ServedModel != "gpt-4o-mini" {
		t.Errorf("downgrade: %d %+v", resp.StatusCode, ev)
	}
	wantCost(t, ev, "openai", "gpt-4o-mini")
}

func TestExpiredVerdictLiftsItself(t *testing.T) {
	h := newRig(t)
	h.cache.Apply(verdict("team=payments", events.ActionBlock, func(v *events.Verdict) { v.ExpiresAt = time.Now().Add(-time.Second) }))
	resp := h.post(t, "/v1/chat/completions", tokenPayments, chat("gpt-4o-mini", ""))
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("expired verdict still blocks: %d", resp.StatusCode)
	}
}

func TestCheckAPI(t *testing.T) {
	h := newRig(t)
	h.cache.Apply(verdict("customer=globex", events.ActionBlock))
	f := func(body, want string) {
		t.Helper()
		b := readAll(t, h.post(t, "/v1/check", tokenPayments, body))
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: got %s, want %s", body, b, want)
		}
	}
	f(`{"model":"gpt-4o","attribution":{"customer":"globex"}}`, `"decision":"deny"`)
	f(`{"model":"gpt-4o","attribution":{"customer":"initech"}}`, `"decision":"allow"`)
	f(`{not json`, `invalid_request_error`)
}

// TestTagSubjectsOnlyForBudgetedTags: a call's tags are budget subjects
// only for meter.tag_keys, so other tags add nothing to the check.
func TestTagSubjectsOnlyForBudgetedTags(t *testing.T) {
	a := events.Attribution{Team: "t", Tags: events.Tags{"region": "eu", "tier": "gold"}}
	got := subjectsOf(&a, "m", []string{"region", "cost-center"})
	if !slices.Contains(got, "tag.region=eu") || slices.Contains(got, "tag.tier=gold") || len(got) != 4 {
		t.Errorf("subjects %v, want team, model, team×model and tag.region only", got)
	}
}
