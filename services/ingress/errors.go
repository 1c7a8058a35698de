package ingress

import (
	"net/http"
	"strings"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/services/ingress/verdictcache"
)

// fail answers in the provider's error shape with a stable type.
func (g *Gateway) fail(w http.ResponseWriter, ep endpoint, status int, typ, msg, param string) {
	g.metrics.rejected.WithLabelValues(ep.name, typ).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorBody(ep.anthropic, typ, msg, param))
}

func errorBody(anthropic bool, typ, msg, param string) []byte {
	if anthropic {
		b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
		return b
	}
	e := map[string]any{"message": msg, "type": typ, "code": typ, "param": nil}
	if param != "" {
		e["param"] = param
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b
}

// blockBody is the 429 of a budget, loop or throttle verdict: it names the
// subject, the reason, the limit and spend (USD and nano-USD) and when it
// resets.
func blockBody(anthropic bool, subject, reason string, limit, spent int64, resetsAt string) []byte {
	e := map[string]any{
		"type":           "burnrate_blocked",
		"code":           "burnrate_blocked",
		"message":        blockMessage(subject, reason),
		"subject":        subject,
		"reason":         reason,
		"limit_nano_usd": limit,
		"spent_nano_usd": spent,
		"limit_usd":      float64(limit) / 1e9,
		"spent_usd":      float64(spent) / 1e9,
		"resets_at":      resetsAt,
	}
	var b []byte
	if anthropic {
		b, _ = json.Marshal(map[string]any{"type": "error", "error": e})
	} else {
		e["param"] = nil
		b, _ = json.Marshal(map[string]any{"error": e})
	}
	return b
}

func blockMessage(subject, reason string) string {
	if subject == "" {
		return "blocked by Burnrate: " + reason
	}
	return "blocked by Burnrate for " + subject + ": " + reason
}

// blockLabel bounds the metric label to a few reasons.
func blockLabel(reason string) string {
	switch reason {
	case verdictcache.ReasonLeaseExhausted:
		return "lease_exhausted"
	case verdictcache.ReasonNotReady:
		return "cache_not_ready"
	}
	if strings.HasPrefix(reason, "loop") {
		return "loop"
	}
	return "verdict"
}
