package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/segmentio/encoding/json"
)

// callRequest is what the gateway needs from a request body; the body
// itself is forwarded as sent unless a field must change.
type callRequest struct {
	Model               string          `json:"model"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
	System              json.RawMessage `json:"system"`
	Tools               json.RawMessage `json:"tools"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func parseCall(body []byte) (callRequest, error) {
	var r callRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("request body is not valid JSON: %w", err)
	}
	if r.Model == "" {
		return r, fmt.Errorf("model: required")
	}
	return r, nil
}

// promptChars is the size of everything that becomes input tokens.
func (r *callRequest) promptChars() int {
	return len(r.Messages) + len(r.Prompt) + len(r.Input) + len(r.System) + len(r.Tools)
}

// estimatedPromptTokens: ~4 characters per token, the usual rule of thumb,
// used for caps, cheap routing and worst-case reservations only; billing
// uses the provider's counts.
func (r *callRequest) estimatedPromptTokens() int64 {
	return int64(r.promptChars()+3) / 4
}

// maxOutput is the call's output cap as the client set it (0: not set).
func (r *callRequest) maxOutput() int64 {
	for _, p := range []*int64{r.MaxCompletionTokens, r.MaxTokens, r.MaxOutputTokens} {
		if p != nil {
			return *p
		}
	}
	return 0
}

func (r *callRequest) hasTools() bool {
	return len(r.Tools) > 0 && string(r.Tools) != "null" && string(r.Tools) != "[]"
}

// fingerprint is a hash of the prompt (never the prompt itself), so loop
// rules can see the same prompt repeating.
func (r *callRequest) fingerprint() string {
	h := sha256.New()
	h.Write(r.System)
	h.Write(r.Messages)
	h.Write(r.Prompt)
	h.Write(r.Input)
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// rewrite describes the body changes a call needs.
type rewrite struct {
	model        string // "" keeps it
	includeUsage bool   // add stream_options.include_usage
	capField     string // which max-tokens field to set
	capValue     int64
}

func (w rewrite) needed() bool { return w.model != "" || w.includeUsage || w.capField != "" }

// apply rewrites only the top-level fields named; everything else is kept
// byte for byte.
func (w rewrite) apply(body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("rewrite body: %w", err)
	}
	if w.model != "" {
		b, _ := json.Marshal(w.model)
		m["model"] = b
	}
	if w.includeUsage {
		var so map[string]json.RawMessage
		if raw, ok := m["stream_options"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &so); err != nil {
				return nil, fmt.Errorf("stream_options: %w", err)
			}
		}
		if so == nil {
			so = map[string]json.RawMessage{}
		}
		so["include_usage"] = json.RawMessage("true")
		b, _ := json.Marshal(so)
		m["stream_options"] = b
	}
	if w.capField != "" {
		b, _ := json.Marshal(w.capValue)
		m[w.capField] = b
	}
	return json.Marshal(m)
}
