package prices

import (
	"os"
	"strings"
	"testing"

	"github.com/segmentio/encoding/json"
)

func TestImportLiteLLM(t *testing.T) {
	data, err := os.ReadFile("testdata/litellm_model_prices.json")
	if err != nil {
		t.Fatal(err)
	}
	f, rep, err := ImportLiteLLM(data, "litellm-test", "2026-11-01")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("imported catalog does not validate: %v", err)
	}
	byKey := map[string]ModelEntry{}
	for _, m := range f.Models {
		byKey[m.Provider+"/"+m.Model] = m
	}
	f1 := func(key string, want ModelEntry) {
		t.Helper()
		got, ok := byKey[key]
		if !ok {
			t.Fatalf("%s not imported; have %v", key, keys(byKey))
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("%s:\n got %s\nwant %s", key, gj, wj)
		}
	}
	f1("openai/gpt-4o", ModelEntry{Provider: "openai", Model: "gpt-4o", TokenPrices: TokenPrices{Input: "2.5", CachedInput: "1.25", Output: "10"}, BatchDiscount: "0.5"})
	f1("anthropic/claude-sonnet-4-5-20250929", ModelEntry{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929",
		TokenPrices: TokenPrices{Input: "3", CachedInput: "0.3", CacheWrite5m: "3.75", CacheWrite1h: "6", Output: "15"},
		Tiers:       []Tier{{AboveInputTokens: 200000, TokenPrices: TokenPrices{Input: "6", CachedInput: "0.6", CacheWrite5m: "7.5", Output: "22.5"}}}})
	f1("google/gemini-2.5-pro", ModelEntry{Provider: "google", Model: "gemini-2.5-pro",
		TokenPrices: TokenPrices{Input: "1.25", CachedInput: "0.125", Output: "10", Reasoning: "10"},
		Tiers:       []Tier{{AboveInputTokens: 200000, TokenPrices: TokenPrices{Input: "2.5", CachedInput: "0.25", Output: "15"}}}})
	f1("together/meta-llama/Llama-3.3-70B-Instruct-Turbo", ModelEntry{Provider: "together", Model: "meta-llama/Llama-3.3-70B-Instruct-Turbo", TokenPrices: TokenPrices{Input: "0.88", Output: "0.88"}})
	f1("openai/text-embedding-3-small", ModelEntry{Provider: "openai", Model: "text-embedding-3-small", TokenPrices: TokenPrices{Input: "0.02", Output: "0"}, BatchDiscount: "0.5"})

	// What cannot be mapped is listed, not dropped silently.
	joined := strings.Join(rep.Skipped, "\n")
	for _, name := range []string{"dall-e-3", "whisper-1", "cohere.rerank-v3-5:0"} {
		if !strings.Contains(joined, name+":") {
			t.Errorf("skipped list lacks %s:\n%s", name, joined)
		}
	}
	partial := strings.Join(rep.Partial, "\n")
	for _, want := range []string{"gpt-4o-audio-preview: no Burnrate category for input_cost_per_audio_token, output_cost_per_audio_token", "search_context_cost_per_query"} {
		if !strings.Contains(partial, want) {
			t.Errorf("partial list lacks %q:\n%s", want, partial)
		}
	}
	if n := len(f.Models) + len(rep.Skipped); n != 15 {
		t.Errorf("%d models + %d skipped, want 15 entries accounted for", len(f.Models), len(rep.Skipped))
	}
}

// Import → export → import gives the same prices for every mapped model,
// and the exported per-token costs equal the source file's.
func TestLiteLLMRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/litellm_model_prices.json")
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := ImportLiteLLM(data, "v", "2026-11-01")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ExportLiteLLM(f)
	if err != nil {
		t.Fatal(err)
	}
	var src, exp map[string]map[string]json.RawMessage
	if err := json.Unmarshal(data, &src); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &exp); err != nil {
		t.Fatal(err)
	}
	for name, e := range exp {
		s, ok := src[name]
		if !ok {
			t.Errorf("exported %s, not in the source", name)
			continue
		}
		for k, v := range e {
			if k == "litellm_provider" {
				continue
			}
			a, _ := parseScaled(string(v), 15)
			b, _ := parseScaled(string(s[k]), 15)
			if a != b {
				t.Errorf("%s %s: exported %s, source %s", name, k, v, s[k])
			}
		}
	}
	again, _, err := ImportLiteLLM(out, "v", "2026-11-01")
	if err != nil {
		t.Fatal(err)
	}
	a, b := map[string]string{}, map[string]string{}
	for _, m := range f.Models {
		m.BatchDiscount = "" // not a LiteLLM price field on export
		j, _ := json.Marshal(m)
		a[m.Provider+"/"+m.Model] = string(j)
	}
	for _, m := range again.Models {
		j, _ := json.Marshal(m)
		b[m.Provider+"/"+m.Model] = string(j)
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s after round trip:\n got %s\nwant %s", k, b[k], v)
		}
	}
}

func keys(m map[string]ModelEntry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
