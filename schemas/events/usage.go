package events

import (
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"
)

// Usage (usage.v1) records one model call seen or reported by the ingress.
// Kafka key: attribution.agent_run_id, else attribution.virtual_key_id.
type Usage struct {
	Schema            string      `json:"schema"`
	ID                string      `json:"id"` // UUIDv7, the idempotency key
	OccurredAt        time.Time   `json:"occurred_at"`
	ReceivedAt        time.Time   `json:"received_at"`
	Attribution       Attribution `json:"attribution"`
	Provider          string      `json:"provider"`
	RequestedModel    string      `json:"requested_model"`
	ServedModel       string      `json:"served_model"` // empty when blocked
	Route             string      `json:"route,omitempty"`
	Tokens            Tokens      `json:"tokens"`
	Cost              Cost        `json:"cost"`
	LatencyMS         int64       `json:"latency_ms"`
	TTFTMS            int64       `json:"ttft_ms"` // time to first token; 0 when not streamed
	Status            Status      `json:"status"`
	Stream            bool        `json:"stream"`
	PromptFingerprint string      `json:"prompt_fingerprint,omitempty"` // lowercase hex hash, never content
	Error             string      `json:"error,omitempty"`
}

// Attribution says who a call is charged to. Every field is optional.
type Attribution struct {
	Org          string `json:"org,omitempty"`
	Team         string `json:"team,omitempty"`
	App          string `json:"app,omitempty"`
	Env          string `json:"env,omitempty"`
	User         string `json:"user,omitempty"`
	Customer     string `json:"customer,omitempty"`
	Feature      string `json:"feature,omitempty"`
	VirtualKeyID string `json:"virtual_key_id,omitempty"`
	AgentRunID   string `json:"agent_run_id,omitempty"`
	AgentStep    int    `json:"agent_step,omitempty"` // 1-based step within the agent run
	Tags         Tags   `json:"tags,omitempty"`
}

// Tags are free-form key=value attribution labels.
type Tags map[string]string

// UnmarshalJSON decodes into a map sized for a handful of tags (the JSON
// library would allocate room for 64 on every event), reading the common
// case, a flat object of plain strings, directly.
func (t *Tags) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = nil
		return nil
	}
	if m, ok := flatStrings(b); ok {
		*t = m
		return nil
	}
	m := make(map[string]string, 4)
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*t = m
	return nil
}

// flatStrings reads {"k":"v",...} whose strings have no escapes and are
// valid UTF-8; anything else reports false and goes to the JSON library.
func flatStrings(b []byte) (map[string]string, bool) {
	i := 0
	ws := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	str := func() (string, bool) {
		if i >= len(b) || b[i] != '"' {
			return "", false
		}
		i++
		start := i
		for i < len(b) && b[i] != '"' {
			if b[i] == '\\' || b[i] < 0x20 {
				return "", false
			}
			i++
		}
		if i >= len(b) || !utf8.Valid(b[start:i]) {
			return "", false
		}
		i++
		return string(b[start : i-1]), true
	}
	ws()
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	m := make(map[string]string, 4)
	for first := true; ; first = false {
		ws()
		if i < len(b) && b[i] == '}' {
			i++
			ws()
			return m, i == len(b)
		}
		if !first {
			if i >= len(b) || b[i] != ',' {
				return nil, false
			}
			i++
			ws()
		}
		k, ok := str()
		if !ok {
			return nil, false
		}
		ws()
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i++
		ws()
		v, ok := str()
		if !ok {
			return nil, false
		}
		m[k] = v
	}
}

// Tokens keeps the token categories apart, each as the provider billed it.
//
// Output always includes reasoning. That is how OpenAI and Anthropic report
// it; for providers that bill reasoning on top of output (Gemini) the
// producer adds it to Output. So Reasoning <= Output, and sums never add
// Reasoning again.
type Tokens struct {
	Input        int64 `json:"input"`          // uncached input (OpenAI prompt_tokens minus cached_tokens)
	CachedInput  int64 `json:"cached_input"`   // input read from the provider's prompt cache
	CacheWrite5m int64 `json:"cache_write_5m"` // input written to a 5-minute cache
	CacheWrite1h int64 `json:"cache_write_1h"` // input written to a 1-hour cache
	Output       int64 `json:"output"`         // output, reasoning included
	Reasoning    int64 `json:"reasoning"`      // the reasoning part of Output
}

// Total returns all billed tokens: every input category plus output.
func (t Tokens) Total() int64 {
	return t.Input + t.CachedInput + t.CacheWrite5m + t.CacheWrite1h + t.Output
}

// Cost is what a call cost, priced with one version of the price catalog.
type Cost struct {
	TotalNanoUSD int64  `json:"total_nano_usd"`
	PriceVersion string `json:"price_version"` // empty only when Unpriced
	Estimated    bool   `json:"estimated"`     // tokens were estimated (e.g. interrupted stream)
	Unpriced     bool   `json:"unpriced"`      // no price for the model; TotalNanoUSD is 0
}

// SchemaName returns "usage.v1".
func (Usage) SchemaName() string { return SchemaUsage }

func (u *Usage) normalize() {
	utc(&u.OccurredAt, &u.ReceivedAt)
	if len(u.Attribution.Tags) == 0 {
		u.Attribution.Tags = nil
	}
}

// Validate reports every problem with u.
func (u Usage) Validate() error {
	c := checker{schema: SchemaUsage}
	c.schemaField(u.Schema)
	c.id("id", u.ID)
	c.time("occurred_at", u.OccurredAt)
	c.time("received_at", u.ReceivedAt)
	u.Attribution.check(&c)
	c.required("provider", u.Provider)
	c.required("requested_model", u.RequestedModel)
	if u.Status == StatusBlocked {
		c.optional("served_model", u.ServedModel)
	} else {
		c.required("served_model", u.ServedModel)
	}
	c.optional("route", u.Route)
	u.Tokens.check(&c)
	u.Cost.check(&c)
	c.nonNegative("latency_ms", u.LatencyMS)
	c.nonNegative("ttft_ms", u.TTFTMS)
	if !u.Stream && u.TTFTMS != 0 {
		c.addf("ttft_ms", "must be 0 when stream is false, got %d", u.TTFTMS)
	}
	if u.TTFTMS > u.LatencyMS {
		c.addf("ttft_ms", "must be <= latency_ms (%d), got %d", u.LatencyMS, u.TTFTMS)
	}
	c.enum("status", "status", string(u.Status), statusValues)
	if !isLowerHex(u.PromptFingerprint) || len(u.PromptFingerprint) > maxFingerprintLen {
		c.addf("prompt_fingerprint", "must be a lowercase hex hash of at most %d characters", maxFingerprintLen)
	}
	c.text("error", u.Error, maxTextLen)
	return c.err()
}

func (a Attribution) check(c *checker) {
	c.optional("attribution.org", a.Org)
	c.optional("attribution.team", a.Team)
	c.optional("attribution.app", a.App)
	c.optional("attribution.env", a.Env)
	c.optional("attribution.user", a.User)
	c.optional("attribution.customer", a.Customer)
	c.optional("attribution.feature", a.Feature)
	c.optional("attribution.virtual_key_id", a.VirtualKeyID)
	c.optional("attribution.agent_run_id", a.AgentRunID)
	c.nonNegative("attribution.agent_step", int64(a.AgentStep))
	if a.AgentStep != 0 && a.AgentRunID == "" {
		c.addf("attribution.agent_step", "must be 0 without attribution.agent_run_id")
	}
	if len(a.Tags) > maxTags {
		c.addf("attribution.tags", "must have at most %d tags, got %d", maxTags, len(a.Tags))
	}
	for k, v := range a.Tags {
		if !tagOK(k, v) {
			a.checkTags(c) // slow path: build messages in a stable order
			break
		}
	}
}

func tagOK(k, v string) bool {
	return k != "" && len(k) <= maxStringLen && len(v) <= maxStringLen && utf8.ValidString(k) && utf8.ValidString(v)
}

func (a Attribution) checkTags(c *checker) {
	for _, k := range slices.Sorted(maps.Keys(a.Tags)) {
		field := fmt.Sprintf("attribution.tags[%q]", truncate(k))
		if k == "" {
			c.addf(field, "key must not be empty")
		}
		c.text(field+" key", k, maxStringLen)
		c.optional(field, a.Tags[k])
	}
}

func (t Tokens) check(c *checker) {
	c.nonNegative("tokens.input", t.Input)
	c.nonNegative("tokens.cached_input", t.CachedInput)
	c.nonNegative("tokens.cache_write_5m", t.CacheWrite5m)
	c.nonNegative("tokens.cache_write_1h", t.CacheWrite1h)
	c.nonNegative("tokens.output", t.Output)
	c.nonNegative("tokens.reasoning", t.Reasoning)
	if t.Reasoning > t.Output {
		c.addf("tokens.reasoning", "must be <= tokens.output (%d) since output includes reasoning, got %d", t.Output, t.Reasoning)
	}
}

func (k Cost) check(c *checker) {
	c.nonNegative("cost.total_nano_usd", k.TotalNanoUSD)
	if k.Unpriced {
		if k.TotalNanoUSD != 0 {
			c.addf("cost.total_nano_usd", "must be 0 when cost.unpriced is true, got %d", k.TotalNanoUSD)
		}
		c.optional("cost.price_version", k.PriceVersion)
	} else {
		c.required("cost.price_version", k.PriceVersion)
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}
