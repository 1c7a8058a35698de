package normalize

import (
	"strings"
	"testing"

	"github.com/burnrate/burnrate/schemas/events"
)

func TestUsage(t *testing.T) {
	f := func(provider, raw string, want events.Tokens) {
		t.Helper()
		got, err := Usage(provider, []byte(raw))
		if err != nil {
			t.Fatalf("%s %s: %v", provider, raw, err)
		}
		if got != want {
			t.Errorf("%s %s:\n got %+v\nwant %+v", provider, raw, got, want)
		}
	}
	f("openai", `{"prompt_tokens":1200,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1000},"completion_tokens_details":{"reasoning_tokens":120}}`,
		events.Tokens{Input: 200, CachedInput: 1000, Output: 300, Reasoning: 120})
	f("vllm", `{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16,"prompt_tokens_details":null}`,
		events.Tokens{Input: 7, Output: 9})
	f("openai", `{"prompt_tokens":5,"total_tokens":5}`, events.Tokens{Input: 5}) // embeddings
	f("openai", `{"input_tokens":3000,"input_tokens_details":{"cached_tokens":2048},"output_tokens":700,"output_tokens_details":{"reasoning_tokens":512}}`,
		events.Tokens{Input: 952, CachedInput: 2048, Output: 700, Reasoning: 512})
	f("anthropic", `{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500},"output_tokens":800}`,
		events.Tokens{Input: 100, CachedInput: 5000, CacheWrite5m: 500, CacheWrite1h: 1500, Output: 800})
	f("anthropic", `{"id":"msg_1","type":"message","usage":{"input_tokens":12,"output_tokens":34}}`, events.Tokens{Input: 12, Output: 34})
	f("google", `{"promptTokenCount":1000,"candidatesTokenCount":200,"cachedContentTokenCount":400,"thoughtsTokenCount":300,"toolUsePromptTokenCount":50}`,
		events.Tokens{Input: 650, CachedInput: 400, Output: 500, Reasoning: 300})
	f("deepseek", `{"prompt_tokens":1000,"completion_tokens":10,"prompt_cache_hit_tokens":800,"prompt_cache_miss_tokens":200,"completion_tokens_details":{"reasoning_tokens":4}}`,
		events.Tokens{Input: 200, CachedInput: 800, Output: 10, Reasoning: 4})
}

func TestUsageErrorsNameTheField(t *testing.T) {
	f := func(provider, raw, wantInErr string) {
		t.Helper()
		_, err := Usage(provider, []byte(raw))
		if err == nil || !strings.Contains(err.Error(), wantInErr) {
			t.Errorf("%s %s: got %v, want an error containing %q", provider, raw, err, wantInErr)
		}
	}
	f("openai", `{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":20}}`, "prompt_tokens_details.cached_tokens (20) exceeds prompt_tokens (10)")
	f("openai", `{"prompt_tokens":10,"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":6}}`, "reasoning_tokens (6) exceeds completion_tokens (5)")
	f("openai", `{"prompt_tokens":-1}`, "prompt_tokens is -1")
	f("openai", `{"total_tokens":3}`, "neither prompt_tokens nor completion_tokens")
	f("openai", `{"prompt_tokens":"ten"}`, "openai usage")
	f("anthropic", `{"input_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":3},"output_tokens":1}`, "!= cache_creation_input_tokens (10)")
	f("anthropic", `{}`, "neither input_tokens nor output_tokens")
	f("google", `{"promptTokenCount":10,"cachedContentTokenCount":11}`, "cachedContentTokenCount (11) exceeds promptTokenCount (10)")
	f("google", `not json`, "gemini usage")
}

func TestAnthropicStreamLastValueWins(t *testing.T) {
	var s AnthropicStream
	for _, step := range []struct {
		start bool
		raw   string
	}{
		{true, `{"input_tokens":25,"cache_read_input_tokens":100,"output_tokens":1}`},
		{false, `{"output_tokens":15}`},
		{false, `{"input_tokens":25,"cache_read_input_tokens":100,"output_tokens":42}`},
	} {
		var err error
		if step.start {
			err = s.Start([]byte(step.raw))
		} else {
			err = s.Delta([]byte(step.raw))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	if want := (events.Tokens{Input: 25, CachedInput: 100, Output: 42}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// FuzzUsage: no input panics, and whatever normalises is consistent.
func FuzzUsage(f *testing.F) {
	for _, seed := range []string{
		`{"prompt_tokens":1200,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1000},"completion_tokens_details":{"reasoning_tokens":120}}`,
		`{"input_tokens":3000,"input_tokens_details":{"cached_tokens":2048},"output_tokens":700}`,
		`{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500},"output_tokens":800}`,
		`{"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":200,"thoughtsTokenCount":300}}`,
	} {
		for _, p := range []string{"openai", "anthropic", "google"} {
			f.Add(p, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, provider string, raw []byte) {
		tok, err := Usage(provider, raw)
		if err != nil {
			return
		}
		if tok.Input < 0 || tok.CachedInput < 0 || tok.CacheWrite5m < 0 || tok.CacheWrite1h < 0 || tok.Output < 0 || tok.Reasoning < 0 {
			t.Fatalf("negative count %+v from %q", tok, raw)
		}
		if tok.Reasoning > tok.Output {
			t.Fatalf("reasoning above output %+v from %q", tok, raw)
		}
	})
}

func TestUsageRejectsOverflow(t *testing.T) {
	_, err := Usage("google", []byte(`{"promptTokenCount":1,"candidatesTokenCount":9000000000000000000,"thoughtsTokenCount":9000000000000000000}`))
	if err == nil || !strings.Contains(err.Error(), "more than any call can use") {
		t.Errorf("got %v", err)
	}
}
