package prices

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

func TestShippedCatalogCoversProviders(t *testing.T) {
	c := shippedCatalog(t)
	providers := map[string]int{}
	for _, m := range c.File().Models {
		providers[m.Provider]++
	}
	for _, p := range []string{"openai", "azure", "anthropic", "google", "mistral", "deepseek", "together", "groq", "fireworks"} {
		if providers[p] == 0 {
			t.Errorf("no shipped prices for %s", p)
		}
	}
	for _, g := range []string{"NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "Tesla T4"} {
		if _, ok := c.GPUHourly(g, ""); !ok {
			t.Errorf("no GPU price for %q", g)
		}
	}
}

func TestValidateNamesTheEntry(t *testing.T) {
	f := func(yaml, want string) {
		t.Helper()
		file, err := ParseFile([]byte(yaml))
		if err == nil {
			err = file.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
	}
	f("version: v\nmodels:\n  - {provider: openai, model: x, input: \"-1\", output: \"1\"}\n", "models[0] (openai/x): input")
	f("version: v\nmodels:\n  - {provider: openai, model: x, input: \"abc\"}\n", "not a decimal number")
	f("version: v\nmodels:\n  - {provider: openai, model: x, input: \"1\", inptu: \"2\"}\n", "field inptu not found")
	f("version: v\nmodels:\n  - {provider: openai, model: x, input: \"1\"}\n  - {provider: openai, model: x, input: \"2\"}\n", "openai/x is priced twice")
	f("models: []\n", "version: required")
	f("version: v\nmodels:\n  - {provider: openai, model: x, input: \"1\", batch_discount: \"1.5\"}\n", "more than 1")
	f("version: v\nmodels:\n  - provider: a\n    model: b\n    input: \"1\"\n    tiers: [{above_input_tokens: 0, input: \"2\"}]\n", "tiers[0].above_input_tokens")
	f("version: v\ngpus:\n  - {model: X, hourly: lots}\n", "gpus[0] (X).hourly")
	f("version: v\ninstances:\n  - {type: p5, hourly: \"1\", gpus: 0}\n", "instances[0] (p5).gpus")
}

func TestMergeOverrides(t *testing.T) {
	base, err := ParseFile(Shipped())
	if err != nil {
		t.Fatal(err)
	}
	over, err := ParseFile([]byte(`version: acme-2026-11
models:
  # negotiated: 20 % off Claude Sonnet 4.5
  - {provider: anthropic, model: claude-sonnet-4-5, discount: "0.2"}
  # replaced outright
  - {provider: openai, model: gpt-4o, input: "2.00", output: "8.00"}
  # a private fine-tune
  - {provider: openai, model: ft:gpt-4o-mini:acme, input: "0.30", output: "1.20"}
  # self-hosted, priced by GPU time
  - {provider: vllm, model: llama-3.1-70b, per_gpu_second: "0.001"}
gpus:
  - {model: "NVIDIA H100 80GB HBM3", hourly: "2.10"}
`))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(base, over)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != base.Version+"+acme-2026-11" {
		t.Errorf("version %q", c.Version())
	}
	f := func(call Call, tok events.Tokens, want int64) {
		t.Helper()
		if got := c.Price(call, tok); got.TotalNanoUSD != want || got.Unpriced {
			t.Errorf("%+v: got %+v, want %d", call, got, want)
		}
	}
	// 1000 input at $3.00 × 0.8 = $2.40/M → 2,400,000; the long-context tier is discounted too.
	f(Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}, events.Tokens{Input: 1000}, 2_400_000)
	f(Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}, events.Tokens{Input: 300_000}, 300_000*4800)
	// The alias of the discounted model follows it.
	f(Call{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929"}, events.Tokens{Input: 1000}, 2_400_000)
	// Replaced: no cached price in the override falls back to input.
	f(Call{Provider: "openai", Model: "gpt-4o"}, events.Tokens{Input: 1000, CachedInput: 1000, Output: 100}, 1000*2000+1000*2000+100*8000)
	f(Call{Provider: "openai", Model: "ft:gpt-4o-mini:acme"}, events.Tokens{Input: 1000, Output: 1000}, 300_000+1_200_000)
	// 2.5 GPU-seconds at $0.001/s = 2,500,000 nano.
	f(Call{Provider: "vllm", Model: "llama-3.1-70b", GPUMillis: 2500}, events.Tokens{Input: 5000, Output: 100}, 2_500_000)
	if h, _ := c.GPUHourly("NVIDIA H100 80GB HBM3", ""); h != 2_100_000_000 {
		t.Errorf("overridden H100 hourly %d", h)
	}
	// An override may price one alias on its own.
	split, err := Merge(base, File{Version: "x", Models: []ModelEntry{{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", TokenPrices: TokenPrices{Input: "1", Output: "1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := Compile(split)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Price(Call{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929"}, events.Tokens{Input: 1000}); got.TotalNanoUSD != 1_000_000 {
		t.Errorf("alias override: %+v", got)
	}
	if got := sc.Price(Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}, events.Tokens{Input: 1000}); got.TotalNanoUSD != 3_000_000 {
		t.Errorf("the model keeps its price: %+v", got)
	}
	if _, err := Merge(base, File{Models: []ModelEntry{{Provider: "x", Model: "y", Discount: "0.1"}}}); err == nil {
		t.Error("a discount on an unknown model must fail")
	}
}

func TestWatchReloadsWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "override.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("version: o1\nmodels:\n  - {provider: openai, model: gpt-4o, input: \"1\", output: \"1\"}\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPricer(c, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloaded := make(chan string, 4)
	failed := make(chan error, 4)
	go p.Watch(ctx, path, 10*time.Millisecond, func(v string) { reloaded <- v }, func(err error) { failed <- err })
	call := Call{Provider: "openai", Model: "gpt-4o"}
	if got := p.Price(call, events.Tokens{Input: 1000}); got.TotalNanoUSD != 1_000_000 {
		t.Fatalf("before reload: %+v", got)
	}

	write("version: o2\nmodels:\n  - {provider: openai, model: gpt-4o, input: \"3\", output: \"1\"}\n")
	select {
	case v := <-reloaded:
		if !strings.HasSuffix(v, "+o2") {
			t.Errorf("reloaded version %q", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
	}
	got := p.Price(call, events.Tokens{Input: 1000})
	if got.TotalNanoUSD != 3_000_000 || !strings.HasSuffix(got.PriceVersion, "+o2") {
		t.Errorf("after reload: %+v", got)
	}

	// A broken file keeps the catalog in use.
	write("version: o3\nmodels:\n  - {provider: openai, model: gpt-4o, input: \"three\"}\n")
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "input") {
			t.Errorf("reload error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload error reported")
	}
	if got := p.Price(call, events.Tokens{Input: 1000}); got.TotalNanoUSD != 3_000_000 {
		t.Errorf("a bad file replaced the catalog: %+v", got)
	}
}
