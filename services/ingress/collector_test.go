package ingress

import (
	"strings"
	"testing"

	"github.com/burnrate/burnrate/schemas/events"
)

func TestCollectorRawAndSchemaForms(t *testing.T) {
	h := newRig(t)
	id := events.NewID(fixedTime)
	body := `[
	 {"provider":"anthropic","model":"claude-sonnet-4-5","usage":{"input_tokens":100,"cache_read_input_tokens":5000,"output_tokens":800},"attribution":{"user":"u1","feature":"search"}},
	 {"schema":"usage.v1","id":"` + id + `","occurred_at":"2026-11-24T10:00:00Z","received_at":"2026-11-24T10:00:00Z","provider":"openai","requested_model":"gpt-4o","served_model":"gpt-4o","tokens":{"input":10,"cached_input":0,"cache_write_5m":0,"cache_write_1h":0,"output":5,"reasoning":0},"cost":{"total_nano_usd":75000,"price_version":"x","estimated":false,"unpriced":false},"latency_ms":5,"ttft_ms":0,"status":"ok","stream":false}
	]`
	b := readAll(t, h.post(t, "/v1/usage", tokenPayments, body))
	if !strings.Contains(string(b), `"accepted":2`) {
		t.Fatalf("%s", b)
	}
	evs := h.rec.all()
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	// 100×3000 + 5000×300 + 800×15000
	if evs[0].Cost.TotalNanoUSD != 13_800_000 || evs[0].Attribution.Team != "payments" || evs[0].Attribution.User != "u1" {
		t.Errorf("raw form: %+v", evs[0])
	}
	if evs[1].ID != id || evs[1].Attribution.VirtualKeyID != "vk_payments" {
		t.Errorf("schema form: %+v", evs[1])
	}
	// Idempotent by id.
	b = readAll(t, h.post(t, "/v1/usage", tokenPayments, body[:1]+body[strings.Index(body, "\n\t {\"schema\""):]))
	if !strings.Contains(string(b), `"duplicates":1`) || len(h.rec.all()) != 2 {
		t.Errorf("resend: %s, %d events", b, len(h.rec.all()))
	}
}

func TestCollectorNDJSONAndBadItems(t *testing.T) {
	h := newRig(t)
	nd := `{"provider":"openai","model":"gpt-4o-mini","usage":{"prompt_tokens":10,"completion_tokens":2}}
{"provider":"openai","model":"gpt-4o-mini","usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}
{"provider":"openai","usage":{"prompt_tokens":1}}
`
	resp := h.post(t, "/v1/usage", tokenPayments, nd)
	b := readAll(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"index":1`) || !strings.Contains(string(b), `"index":2`) ||
		!strings.Contains(string(b), "cached_tokens (9) exceeds prompt_tokens (5)") || strings.Contains(string(b), `"index":0`) {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
	if n := len(h.rec.all()); n != 0 {
		t.Errorf("a rejected batch emitted %d events", n)
	}
	b = readAll(t, h.post(t, "/v1/usage", tokenPayments, strings.SplitN(nd, "\n", 2)[0]+"\n"))
	if !strings.Contains(string(b), `"accepted":1`) {
		t.Errorf("%s", b)
	}
}
