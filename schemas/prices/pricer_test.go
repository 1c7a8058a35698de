package prices

import (
	"math/rand"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"testing"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
)

func shippedCatalog(t testing.TB) *Catalog {
	t.Helper()
	f, err := ParseFile(Shipped())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every provider trap with a real-shaped payload and the nano-USD worked out
// by hand (per-token price in nano-USD = USD per 1M tokens × 1000).
func TestPriceProviderPayloads(t *testing.T) {
	c := shippedCatalog(t)
	f := func(name, provider, model, raw string, batch bool, want int64) {
		t.Helper()
		tok, err := normalize.Usage(provider, []byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := c.Price(Call{Provider: provider, Model: model, Batch: batch}, tok)
		if got.TotalNanoUSD != want || got.Unpriced || got.PriceVersion != c.Version() {
			t.Errorf("%s: got %+v (tokens %+v), want %d nano-USD", name, got, tok, want)
		}
	}
	// OpenAI: prompt_tokens 1200 include 1000 cached. 200×2500 + 1000×1250 + 300×10000.
	// (Billing cached as input would give 6,000,000.)
	f("openai cached prompt", "openai", "gpt-4o",
		`{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":1000,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`,
		false, 4_750_000)
	// OpenAI o3: completion_tokens 2000 include 1500 reasoning: 500×2000 + 2000×8000.
	// (Adding reasoning on top would give 29,000,000.)
	f("openai reasoning inside completion", "openai", "o3",
		`{"prompt_tokens":500,"completion_tokens":2000,"total_tokens":2500,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":1500}}`,
		false, 17_000_000)
	// Responses API: input_tokens 3000 include 2048 cached: 952×2000 + 2048×500 + 700×8000.
	f("openai responses", "openai", "gpt-4.1",
		`{"input_tokens":3000,"input_tokens_details":{"cached_tokens":2048},"output_tokens":700,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":3700}`,
		false, 8_528_000)
	// Whole chat completion body: the usage object is found inside it.
	f("openai whole body", "openai", "gpt-4o-mini",
		`{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`,
		false, 10*150+5*600)
	// Azure OpenAI: same shape as OpenAI.
	f("azure openai", "azure", "gpt-4o",
		`{"completion_tokens":50,"prompt_tokens":2000,"total_tokens":2050,"prompt_tokens_details":{"cached_tokens":1024}}`,
		false, 976*2500+1024*1250+50*10000)
	// An OpenAI-compatible server without details: everything is uncached input.
	f("compatible server without details", "deepseek", "deepseek-chat",
		`{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100}`,
		false, 1000*280+100*420)
	// DeepSeek's own cache fields: prompt_tokens = hit + miss.
	f("deepseek cache hit", "deepseek", "deepseek-chat",
		`{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_cache_hit_tokens":800,"prompt_cache_miss_tokens":200}`,
		false, 200*280+800*28+100*420)
	// Anthropic: input_tokens exclude cache reads and writes; writes split 5m/1h.
	// 100×3000 + 5000×300 + 500×3750 + 1500×6000 + 800×15000.
	f("anthropic cache split", "anthropic", "claude-sonnet-4-5",
		`{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500},"output_tokens":800,"service_tier":"standard"}`,
		false, 24_675_000)
	// Anthropic without the split: all writes are 5m.
	f("anthropic cache without split", "anthropic", "claude-haiku-4-5",
		`{"input_tokens":10,"cache_creation_input_tokens":1000,"cache_read_input_tokens":0,"output_tokens":20}`,
		false, 10*1000+1000*1250+20*5000)
	// Anthropic long context: 250,000 prompt tokens > 200k → tier prices for the whole call.
	f("anthropic long context tier", "anthropic", "claude-sonnet-4-5",
		`{"input_tokens":250000,"output_tokens":1000}`, false, 250_000*6000+1000*22500)
	// Gemini: thoughts on top of candidates; cached inside prompt.
	// 600×300 + 400×30 + (200+300)×2500.
	f("gemini thoughts on top", "google", "gemini-2.5-flash",
		`{"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":200,"cachedContentTokenCount":400,"thoughtsTokenCount":300,"totalTokenCount":1500}}`,
		false, 1_442_000)
	// Gemini 2.5 Pro above 200k prompt tokens.
	f("gemini long context", "google", "gemini-2.5-pro",
		`{"promptTokenCount":300000,"candidatesTokenCount":1000,"totalTokenCount":301000}`, false, 300_000*2500+1000*15000)
	// Batch halves gpt-4o-mini's cached price to 37.5 nano per token: 3 tokens
	// are 112.5 nano, rounded half up once to 113.
	f("batch discount rounding", "openai", "gpt-4o-mini",
		`{"prompt_tokens":3,"completion_tokens":0,"prompt_tokens_details":{"cached_tokens":3}}`, true, 113)
}

// Anthropic stream: message_start carries output_tokens 1, then cumulative
// deltas 300 and 800: last value wins (summing would give 1101).
func TestPriceAnthropicStream(t *testing.T) {
	c := shippedCatalog(t)
	var s normalize.AnthropicStream
	steps := []func() error{
		func() error {
			return s.Start([]byte(`{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"output_tokens":1}`))
		},
		func() error { return s.Delta([]byte(`{"output_tokens":300}`)) },
		func() error { return s.Delta([]byte(`{"output_tokens":800}`)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	got := c.Price(Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}, tok)
	// 100×3000 + 5000×300 + 2000×3750 + 800×15000
	if want := int64(21_300_000); got.TotalNanoUSD != want {
		t.Errorf("got %d (tokens %+v), want %d", got.TotalNanoUSD, tok, want)
	}
}

func TestPriceUnknownModelIsUnpricedNotDropped(t *testing.T) {
	c := shippedCatalog(t)
	got := c.Price(Call{Provider: "vllm", Model: "my-finetune"}, events.Tokens{Input: 10, Output: 10})
	if !got.Unpriced || got.TotalNanoUSD != 0 {
		t.Errorf("unknown model: %+v", got)
	}
}

func TestPriceAliasesAndGPUs(t *testing.T) {
	c := shippedCatalog(t)
	a := c.Price(Call{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929"}, events.Tokens{Input: 1000})
	b := c.Price(Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}, events.Tokens{Input: 1000})
	if a != b || a.TotalNanoUSD != 3_000_000 {
		t.Errorf("alias priced %+v, model %+v", a, b)
	}
	h, ok := c.GPUHourly("NVIDIA H100 80GB HBM3", "")
	if !ok || h != 2_990_000_000 {
		t.Fatalf("H100 hourly %d %v", h, ok)
	}
	// 10 s of an H100 at $2.99/h = 8,305,555.5… nano → 8,305,556.
	if got := GPUCost(h, 10_000); got != 8_305_556 {
		t.Errorf("10 s of H100 = %d nano-USD", got)
	}
	// p5.48xlarge: $98.32 / 8 GPUs = $12.29 per GPU-hour.
	if v, ok := c.GPUHourly("anything", "p5.48xlarge"); !ok || v != 12_290_000_000 {
		t.Errorf("p5 per-GPU hourly %d %v", v, ok)
	}
}

func randomTokens(r *rand.Rand, max int64) events.Tokens {
	t := events.Tokens{
		Input: r.Int63n(max), CachedInput: r.Int63n(max), CacheWrite5m: r.Int63n(max),
		CacheWrite1h: r.Int63n(max), Output: r.Int63n(max),
	}
	t.Reasoning = r.Int63n(t.Output + 1)
	return t
}

// Cost never falls when any token count grows (tiers included: their
// prices are higher), for every shipped model.
func TestPriceIsMonotone(t *testing.T) {
	c := shippedCatalog(t)
	r := rand.New(rand.NewSource(1))
	for _, m := range c.File().Models {
		call := Call{Provider: m.Provider, Model: m.Model}
		for i := 0; i < 300; i++ {
			base := randomTokens(r, 150_000)
			before := c.Price(call, base).TotalNanoUSD
			grow := base
			d := r.Int63n(100_000) + 1
			switch r.Intn(5) {
			case 0:
				grow.Input += d
			case 1:
				grow.CachedInput += d
			case 2:
				grow.CacheWrite5m += d
			case 3:
				grow.CacheWrite1h += d
			case 4:
				grow.Output += d
			}
			if after := c.Price(call, grow).TotalNanoUSD; after < before {
				t.Fatalf("%s/%s: %+v costs %d, more tokens %+v cost %d", m.Provider, m.Model, base, before, grow, after)
			}
		}
	}
}

// Splitting a call in two changes the total by at most one nano-USD per
// extra rounding (prompts kept under every long-context threshold).
func TestPriceIsAdditiveWithinRounding(t *testing.T) {
	c := shippedCatalog(t)
	r := rand.New(rand.NewSource(2))
	for _, m := range c.File().Models {
		call := Call{Provider: m.Provider, Model: m.Model, Batch: r.Intn(2) == 0}
		for i := 0; i < 300; i++ {
			whole := randomTokens(r, 40_000)
			part := events.Tokens{
				Input: r.Int63n(whole.Input + 1), CachedInput: r.Int63n(whole.CachedInput + 1),
				CacheWrite5m: r.Int63n(whole.CacheWrite5m + 1), CacheWrite1h: r.Int63n(whole.CacheWrite1h + 1),
				Output: r.Int63n(whole.Output + 1),
			}
			rest := events.Tokens{
				Input: whole.Input - part.Input, CachedInput: whole.CachedInput - part.CachedInput,
				CacheWrite5m: whole.CacheWrite5m - part.CacheWrite5m, CacheWrite1h: whole.CacheWrite1h - part.CacheWrite1h,
				Output: whole.Output - part.Output,
			}
			sum := c.Price(call, part).TotalNanoUSD + c.Price(call, rest).TotalNanoUSD
			w := c.Price(call, whole).TotalNanoUSD
			if diff := sum - w; diff < -1 || diff > 1 {
				t.Fatalf("%s/%s: parts cost %d, whole %d (%+v)", m.Provider, m.Model, sum, w, whole)
			}
		}
	}
}

func BenchmarkPriceUsage(b *testing.B) {
	c := shippedCatalog(b)
	p := NewPricer(c, nil)
	call := Call{Provider: "anthropic", Model: "claude-sonnet-4-5"}
	tok := events.Tokens{Input: 1200, CachedInput: 30_000, CacheWrite5m: 2000, CacheWrite1h: 500, Output: 800}
	b.ReportAllocs()
	b.ResetTimer()
	var sink int64
	for i := 0; i < b.N; i++ {
		sink += p.Price(call, tok).TotalNanoUSD
	}
	if sink == 0 {
		b.Fatal("zero cost")
	}
}

func TestUnpricedIsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPricer(shippedCatalog(t), reg)
	p.Price(Call{Provider: "openai", Model: "gpt-9"}, events.Tokens{Input: 1})
	p.Price(Call{Provider: "made-up", Model: "x"}, events.Tokens{Input: 1})
	p.Price(Call{Provider: "openai", Model: "gpt-4o"}, events.Tokens{Input: 1})
	if got := testutil.ToFloat64(p.unpriced.WithLabelValues("openai")); got != 1 {
		t.Errorf("unpriced{openai} = %v", got)
	}
	// Providers the catalog does not know share one label value.
	if got := testutil.ToFloat64(p.unpriced.WithLabelValues("other")); got != 1 {
		t.Errorf("unpriced{other} = %v", got)
	}
}
