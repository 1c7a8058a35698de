// Package normalize turns the usage objects of model providers into
// Burnrate's token categories (events.Tokens), getting every known trap
// right: OpenAI prompt_tokens include cached_tokens and completion_tokens
// include reasoning_tokens; Anthropic input_tokens exclude cache reads and
// writes and its stream deltas are cumulative (last value wins); Gemini
// thinking tokens come on top of candidates.
//
// It never guesses silently: inconsistent counts are an error naming the
// field, and it never sees prompt content.
package normalize

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/schemas/events"
)

// Shape is the usage object layout of a provider API.
type Shape int

const (
	// OpenAIChat: chat/completions, completions, embeddings; also Azure
	// OpenAI, Mistral, DeepSeek, vLLM and other OpenAI-compatible servers.
	OpenAIChat Shape = iota + 1
	// OpenAIResponses: the Responses API (input_tokens include cached).
	OpenAIResponses
	// Anthropic: the Messages API.
	Anthropic
	// Gemini: usageMetadata.
	Gemini
)

// ShapeFor picks the layout by provider name and, for OpenAI-style
// providers, by the fields present (Responses vs Chat).
func ShapeFor(provider string, raw []byte) Shape {
	switch strings.ToLower(provider) {
	case "anthropic":
		return Anthropic
	case "google", "gemini", "vertex_ai":
		return Gemini
	}
	if strings.Contains(string(raw), `"input_tokens"`) && !strings.Contains(string(raw), `"prompt_tokens"`) {
		return OpenAIResponses
	}
	return OpenAIChat
}

// Usage normalises a raw usage object (or a whole response that carries one
// under "usage" or "usageMetadata") from provider.
func Usage(provider string, raw []byte) (events.Tokens, error) {
	raw = unwrap(raw)
	switch ShapeFor(provider, raw) {
	case Anthropic:
		return AnthropicUsage(raw)
	case Gemini:
		return GeminiUsage(raw)
	case OpenAIResponses:
		return OpenAIResponsesUsage(raw)
	default:
		return OpenAIChatUsage(raw)
	}
}

// unwrap descends into "usage" / "usageMetadata" when given a whole body.
// Only those two keys are decoded: a response body can be large.
func unwrap(raw []byte) []byte {
	var outer struct {
		Usage         json.RawMessage `json:"usage"`
		UsageMetadata json.RawMessage `json:"usageMetadata"`
	}
	if json.Unmarshal(raw, &outer) != nil {
		return raw
	}
	for _, inner := range []json.RawMessage{outer.Usage, outer.UsageMetadata} {
		if len(inner) > 0 && inner[0] == '{' {
			return inner
		}
	}
	return raw
}

func decode(kind string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("normalize: %s usage: %w", kind, err)
	}
	return nil
}

func val(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

type fieldCheck struct {
	name string
	v    int64
}

// maxTokens bounds one count so sums of categories cannot overflow.
const maxTokens = 1 << 50

func nonNegative(kind string, fields ...fieldCheck) error {
	var errs []error
	for _, f := range fields {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("normalize: %s usage: %s is %d, must be >= 0", kind, f.name, f.v))
		}
		if f.v > maxTokens {
			errs = append(errs, fmt.Errorf("normalize: %s usage: %s is %d, more than any call can use", kind, f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

type openAIChat struct {
	PromptTokens        *int64 `json:"prompt_tokens"`
	CompletionTokens    *int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens *int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens *int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
	// DeepSeek reports its cache this way; prompt_tokens = hit + miss.
	PromptCacheHitTokens *int64 `json:"prompt_cache_hit_tokens"`
}

// OpenAIChatUsage: prompt_tokens includes prompt_tokens_details.cached_tokens;
// completion_tokens includes completion_tokens_details.reasoning_tokens.
// Servers that omit the details get all prompt tokens as uncached input.
func OpenAIChatUsage(raw []byte) (events.Tokens, error) {
	var u openAIChat
	if err := decode("openai", raw, &u); err != nil {
		return events.Tokens{}, err
	}
	if u.PromptTokens == nil && u.CompletionTokens == nil {
		return events.Tokens{}, errors.New("normalize: openai usage: neither prompt_tokens nor completion_tokens present")
	}
	prompt, completion := val(u.PromptTokens), val(u.CompletionTokens)
	var cached, reasoning int64
	cachedField := "prompt_tokens_details.cached_tokens"
	if u.PromptTokensDetails != nil {
		cached = val(u.PromptTokensDetails.CachedTokens)
	}
	if cached == 0 && u.PromptCacheHitTokens != nil {
		cached, cachedField = *u.PromptCacheHitTokens, "prompt_cache_hit_tokens"
	}
	if u.CompletionTokensDetails != nil {
		reasoning = val(u.CompletionTokensDetails.ReasoningTokens)
	}
	if err := nonNegative("openai", fieldCheck{"prompt_tokens", prompt}, fieldCheck{"completion_tokens", completion},
		fieldCheck{cachedField, cached}, fieldCheck{"completion_tokens_details.reasoning_tokens", reasoning}); err != nil {
		return events.Tokens{}, err
	}
	if cached > prompt {
		return events.Tokens{}, fmt.Errorf("normalize: openai usage: %s (%d) exceeds prompt_tokens (%d)", cachedField, cached, prompt)
	}
	if reasoning > completion {
		return events.Tokens{}, fmt.Errorf("normalize: openai usage: completion_tokens_details.reasoning_tokens (%d) exceeds completion_tokens (%d)", reasoning, completion)
	}
	return events.Tokens{Input: prompt - cached, CachedInput: cached, Output: completion, Reasoning: reasoning}, nil
}

type openAIResponses struct {
	InputTokens        *int64 `json:"input_tokens"`
	OutputTokens       *int64 `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens *int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails *struct {
		ReasoningTokens *int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

// OpenAIResponsesUsage: input_tokens includes cached_tokens; output_tokens
// includes reasoning_tokens.
func OpenAIResponsesUsage(raw []byte) (events.Tokens, error) {
	var u openAIResponses
	if err := decode("openai responses", raw, &u); err != nil {
		return events.Tokens{}, err
	}
	if u.InputTokens == nil && u.OutputTokens == nil {
		return events.Tokens{}, errors.New("normalize: openai responses usage: neither input_tokens nor output_tokens present")
	}
	in, out := val(u.InputTokens), val(u.OutputTokens)
	var cached, reasoning int64
	if u.InputTokensDetails != nil {
		cached = val(u.InputTokensDetails.CachedTokens)
	}
	if u.OutputTokensDetails != nil {
		reasoning = val(u.OutputTokensDetails.ReasoningTokens)
	}
	if err := nonNegative("openai responses", fieldCheck{"input_tokens", in}, fieldCheck{"output_tokens", out},
		fieldCheck{"input_tokens_details.cached_tokens", cached}, fieldCheck{"output_tokens_details.reasoning_tokens", reasoning}); err != nil {
		return events.Tokens{}, err
	}
	if cached > in {
		return events.Tokens{}, fmt.Errorf("normalize: openai responses usage: input_tokens_details.cached_tokens (%d) exceeds input_tokens (%d)", cached, in)
	}
	if reasoning > out {
		return events.Tokens{}, fmt.Errorf("normalize: openai responses usage: output_tokens_details.reasoning_tokens (%d) exceeds output_tokens (%d)", reasoning, out)
	}
	return events.Tokens{Input: in - cached, CachedInput: cached, Output: out, Reasoning: reasoning}, nil
}

type anthropicUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheCreation            *struct {
		Ephemeral5m *int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h *int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
}

// AnthropicUsage: input_tokens excludes cache reads and writes, which come
// apart; cache_creation splits writes into 5m and 1h (without the split, all
// writes are 5m, the API default). Thinking tokens are inside output_tokens.
func AnthropicUsage(raw []byte) (events.Tokens, error) {
	var s AnthropicStream
	if err := s.apply(raw, "anthropic"); err != nil {
		return events.Tokens{}, err
	}
	if !s.seen {
		return events.Tokens{}, errors.New("normalize: anthropic usage: neither input_tokens nor output_tokens present")
	}
	return s.Tokens()
}

// AnthropicStream follows a Messages stream: message_start carries the
// initial usage, each message_delta carries cumulative counts. Every field
// takes the last value seen; counts are never summed.
type AnthropicStream struct {
	input, output, cacheRead, cacheWrite, write5m, write1h int64
	split, seen                                            bool
}

// Start applies message_start's message.usage.
func (s *AnthropicStream) Start(usage []byte) error { return s.apply(usage, "anthropic message_start") }

// Delta applies a message_delta's usage (cumulative).
func (s *AnthropicStream) Delta(usage []byte) error { return s.apply(usage, "anthropic message_delta") }

func (s *AnthropicStream) apply(raw []byte, kind string) error {
	var u anthropicUsage
	if err := decode(kind, raw, &u); err != nil {
		return err
	}
	set := func(dst *int64, p *int64) {
		if p != nil {
			*dst = *p
		}
	}
	s.seen = s.seen || u.InputTokens != nil || u.OutputTokens != nil
	set(&s.input, u.InputTokens)
	set(&s.output, u.OutputTokens)
	set(&s.cacheRead, u.CacheReadInputTokens)
	set(&s.cacheWrite, u.CacheCreationInputTokens)
	if u.CacheCreation != nil && (u.CacheCreation.Ephemeral5m != nil || u.CacheCreation.Ephemeral1h != nil) {
		s.split = true
		set(&s.write5m, u.CacheCreation.Ephemeral5m)
		set(&s.write1h, u.CacheCreation.Ephemeral1h)
	}
	return nonNegative(kind, fieldCheck{"input_tokens", s.input}, fieldCheck{"output_tokens", s.output},
		fieldCheck{"cache_read_input_tokens", s.cacheRead}, fieldCheck{"cache_creation_input_tokens", s.cacheWrite},
		fieldCheck{"cache_creation.ephemeral_5m_input_tokens", s.write5m}, fieldCheck{"cache_creation.ephemeral_1h_input_tokens", s.write1h})
}

// Seen reports whether any usage has been applied.
func (s *AnthropicStream) Seen() bool { return s.seen }

// Tokens returns the normalised counts so far.
func (s *AnthropicStream) Tokens() (events.Tokens, error) {
	t := events.Tokens{Input: s.input, CachedInput: s.cacheRead, Output: s.output, CacheWrite5m: s.cacheWrite}
	if s.split {
		t.CacheWrite5m, t.CacheWrite1h = s.write5m, s.write1h
		if s.cacheWrite != 0 && s.write5m+s.write1h != s.cacheWrite {
			return events.Tokens{}, fmt.Errorf("normalize: anthropic usage: cache_creation 5m (%d) + 1h (%d) != cache_creation_input_tokens (%d)", s.write5m, s.write1h, s.cacheWrite)
		}
	}
	return t, nil
}

type geminiUsage struct {
	PromptTokenCount        *int64 `json:"promptTokenCount"`
	CandidatesTokenCount    *int64 `json:"candidatesTokenCount"`
	CachedContentTokenCount *int64 `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      *int64 `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount *int64 `json:"toolUsePromptTokenCount"`
}

// GeminiUsage: promptTokenCount includes cachedContentTokenCount; tool-use
// prompt tokens are billed as input; thoughtsTokenCount comes on top of
// candidatesTokenCount and is billed as output.
func GeminiUsage(raw []byte) (events.Tokens, error) {
	var u geminiUsage
	if err := decode("gemini", raw, &u); err != nil {
		return events.Tokens{}, err
	}
	if u.PromptTokenCount == nil && u.CandidatesTokenCount == nil {
		return events.Tokens{}, errors.New("normalize: gemini usage: neither promptTokenCount nor candidatesTokenCount present")
	}
	prompt, cand, cached, thoughts, tool := val(u.PromptTokenCount), val(u.CandidatesTokenCount), val(u.CachedContentTokenCount), val(u.ThoughtsTokenCount), val(u.ToolUsePromptTokenCount)
	if err := nonNegative("gemini", fieldCheck{"promptTokenCount", prompt}, fieldCheck{"candidatesTokenCount", cand},
		fieldCheck{"cachedContentTokenCount", cached}, fieldCheck{"thoughtsTokenCount", thoughts}, fieldCheck{"toolUsePromptTokenCount", tool}); err != nil {
		return events.Tokens{}, err
	}
	if cached > prompt {
		return events.Tokens{}, fmt.Errorf("normalize: gemini usage: cachedContentTokenCount (%d) exceeds promptTokenCount (%d)", cached, prompt)
	}
	return events.Tokens{Input: prompt - cached + tool, CachedInput: cached, Output: cand + thoughts, Reasoning: thoughts}, nil
}
