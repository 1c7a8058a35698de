package ingress

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
)

// FuzzRelayStream feeds arbitrary upstream SSE bodies through the relay:
// it never panics, forwards bytes it did not drop, and always ends with
// tokens that validate.
func FuzzRelayStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"), false)
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), true)
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":-4}}\r\n\r\n"), false)
	cat, _ := prices.Load("")
	g := &Gateway{now: time.Now, pricer: prices.NewPricer(cat, nil), log: zap.NewNop(), metrics: newMetrics(nil)}
	f.Fuzz(func(t *testing.T, body []byte, anthropic bool) {
		c := &call{ep: endpoint{name: "chat_completions", anthropic: anthropic}, start: time.Now(), status: events.StatusOK,
			req: callRequest{Model: "gpt-4o-mini", Stream: true}, requested: "gpt-4o-mini", attr: events.Attribution{Team: "t", VirtualKeyID: "k"},
			route: &upstream{Route: Route{Model: "gpt-4o-mini", Provider: "openai"}, priceProvider: "openai"}}
		c.route.UpstreamModel = "gpt-4o-mini"
		w := httptest.NewRecorder()
		g.relayStream(w, bytes.NewReader(body), c, time.Now(), true)
		if w.Body.Len() > len(body)+2 {
			t.Fatalf("relay wrote %d bytes for a %d-byte body", w.Body.Len(), len(body))
		}
		ev := g.usageEvent(c)
		if err := ev.Validate(); err != nil && !strings.Contains(err.Error(), "ttft") {
			t.Fatalf("event from a fuzzed stream does not validate: %v (tokens %+v)", err, c.tokens)
		}
	})
}

// FuzzCollectorItems: arbitrary collector bodies never panic and never
// yield an event that fails validation.
func FuzzCollectorItems(f *testing.F) {
	f.Add([]byte(`[{"provider":"openai","model":"gpt-4o-mini","usage":{"prompt_tokens":10,"completion_tokens":2}}]`))
	f.Add([]byte("{\"provider\":\"anthropic\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}\n{\"schema\":\"usage.v1\"}\n"))
	cat, _ := prices.Load("")
	g := &Gateway{now: time.Now, pricer: prices.NewPricer(cat, nil)}
	key := &Key{ID: "k", Team: "t", AttributionHeaders: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := splitItems(body)
		if err != nil {
			return
		}
		for _, raw := range items {
			ev, errs := g.collectItem(key, raw, time.Now())
			if len(errs) == 0 {
				if err := ev.Validate(); err != nil {
					t.Fatalf("accepted an invalid event: %v", err)
				}
			}
		}
	})
}
