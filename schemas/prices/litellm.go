package prices

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/segmentio/encoding/json"
)

// LiteLLM's model_prices_and_context_window.json: a JSON object from model
// name to an entry of per-token USD costs (plus non-price fields we ignore).

// ImportReport says what an import could not carry over.
type ImportReport struct {
	// Skipped entries (not priced per token, e.g. per image or per second).
	Skipped []string
	// Partial entries: mapped, but some price fields had no Burnrate
	// category (e.g. audio tokens); their names are listed.
	Partial []string
}

// providerNames maps litellm_provider to Burnrate's provider names.
var providerNames = map[string]string{
	"openai":                    "openai",
	"text-completion-openai":    "openai",
	"azure":                     "azure",
	"anthropic":                 "anthropic",
	"gemini":                    "google",
	"vertex_ai-language-models": "google",
	"mistral":                   "mistral",
	"codestral":                 "mistral",
	"deepseek":                  "deepseek",
	"groq":                      "groq",
	"together_ai":               "together",
	"fireworks_ai":              "fireworks",
}

var tierRE = regexp.MustCompile(`^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost)_above_(\d+)k_tokens$`)

// Price fields we map; the rest of the *_cost_* fields make an entry partial.
var (
	baseFields = map[string]func(*TokenPrices) *string{
		"input_cost_per_token":                      func(p *TokenPrices) *string { return &p.Input },
		"output_cost_per_token":                     func(p *TokenPrices) *string { return &p.Output },
		"cache_read_input_token_cost":               func(p *TokenPrices) *string { return &p.CachedInput },
		"cache_creation_input_token_cost":           func(p *TokenPrices) *string { return &p.CacheWrite5m },
		"cache_creation_input_token_cost_above_1hr": func(p *TokenPrices) *string { return &p.CacheWrite1h },
		"output_cost_per_reasoning_token":           func(p *TokenPrices) *string { return &p.Reasoning },
	}
	tierFields = map[string]func(*TokenPrices) *string{
		"input_cost_per_token":            func(p *TokenPrices) *string { return &p.Input },
		"output_cost_per_token":           func(p *TokenPrices) *string { return &p.Output },
		"cache_read_input_token_cost":     func(p *TokenPrices) *string { return &p.CachedInput },
		"cache_creation_input_token_cost": func(p *TokenPrices) *string { return &p.CacheWrite5m },
	}
	textModes = map[string]bool{"": true, "chat": true, "completion": true, "embedding": true, "responses": true}
)

// ImportLiteLLM converts LiteLLM's price file to Burnrate's format. Entries
// it cannot map are listed in the report, never silently dropped.
func ImportLiteLLM(data []byte, version, effective string) (File, ImportReport, error) {
	var raw map[string]map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return File{}, ImportReport{}, fmt.Errorf("prices: litellm file: %w", err)
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)
	out := File{Version: version, Effective: effective}
	var rep ImportReport
	for _, name := range names {
		if name == "sample_spec" {
			continue
		}
		m, ignored, reason := importEntry(name, raw[name])
		if reason != "" {
			rep.Skipped = append(rep.Skipped, name+": "+reason)
			continue
		}
		if len(ignored) > 0 {
			rep.Partial = append(rep.Partial, name+": no Burnrate category for "+strings.Join(ignored, ", "))
		}
		out.Models = append(out.Models, m)
	}
	return out, rep, nil
}

func importEntry(name string, fields map[string]json.RawMessage) (ModelEntry, []string, string) {
	str := func(k string) string {
		var s string
		json.Unmarshal(fields[k], &s)
		return s
	}
	mode := str("mode")
	if !textModes[mode] {
		return ModelEntry{}, nil, fmt.Sprintf("mode %q is not priced per token", mode)
	}
	if _, ok := fields["input_cost_per_token"]; !ok {
		return ModelEntry{}, nil, "no input_cost_per_token"
	}
	lp := str("litellm_provider")
	provider, ok := providerNames[lp]
	if !ok {
		provider = lp
	}
	if provider == "" {
		return ModelEntry{}, nil, "no litellm_provider"
	}
	model := name
	for _, prefix := range []string{lp + "/", provider + "/"} {
		model = strings.TrimPrefix(model, prefix)
	}
	m := ModelEntry{Provider: provider, Model: model}
	tiers := map[int64]*Tier{}
	var ignored []string
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.Contains(k, "cost") {
			continue
		}
		num, isNum := number(fields[k])
		if !isNum {
			ignored = append(ignored, k)
			continue
		}
		perM, err := perTokenToPerMillion(num)
		if err != nil {
			return ModelEntry{}, nil, fmt.Sprintf("%s: %v", k, err)
		}
		if f, ok := baseFields[k]; ok {
			*f(&m.TokenPrices) = perM
			continue
		}
		if sm := tierRE.FindStringSubmatch(k); sm != nil {
			n, _ := strconv.ParseInt(sm[2], 10, 64)
			t := tiers[n*1000]
			if t == nil {
				t = &Tier{AboveInputTokens: n * 1000}
				tiers[n*1000] = t
			}
			*tierFields[sm[1]](&t.TokenPrices) = perM
			continue
		}
		if k == "input_cost_per_token_batches" || k == "output_cost_per_token_batches" {
			continue // folded into batch_discount below
		}
		ignored = append(ignored, k)
	}
	if m.Output == "" {
		m.Output = "0"
	}
	if d, ok := batchDiscount(fields); ok {
		m.BatchDiscount = d
	}
	for _, t := range tiers {
		m.Tiers = append(m.Tiers, *t)
	}
	sort.Slice(m.Tiers, func(i, j int) bool { return m.Tiers[i].AboveInputTokens < m.Tiers[j].AboveInputTokens })
	return m, ignored, ""
}

// number returns the JSON number's literal text.
func number(raw json.RawMessage) (string, bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s[0] == '"' || s[0] == '{' || s[0] == '[' || s == "true" || s == "false" {
		return "", false
	}
	return s, true
}

// perTokenToPerMillion turns "2.5e-06" (USD per token) into "2.5" (USD per
// 1M tokens) exactly.
func perTokenToPerMillion(s string) (string, error) {
	femto, err := parseScaled(s, 15)
	if err != nil {
		return "", err
	}
	return formatScaled(femto, priceScale), nil
}

// batchDiscount derives the fraction off from the *_batches prices when it
// is the same for input and output.
func batchDiscount(fields map[string]json.RawMessage) (string, bool) {
	frac := func(base, batch string) (int64, bool) {
		b, ok1 := number(fields[base])
		p, ok2 := number(fields[batch])
		if !ok1 || !ok2 {
			return 0, false
		}
		bv, err1 := parseScaled(b, 15)
		pv, err2 := parseScaled(p, 15)
		if err1 != nil || err2 != nil || bv == 0 || pv > bv {
			return 0, false
		}
		return mulDivRound(bv-pv, 1e9, bv), true
	}
	in, ok := frac("input_cost_per_token", "input_cost_per_token_batches")
	if !ok {
		return "", false
	}
	if out, ok := frac("output_cost_per_token", "output_cost_per_token_batches"); ok && out != in {
		return "", false
	}
	return formatScaled(in, 9), true
}

// ExportLiteLLM writes a catalog back in LiteLLM's format (the price fields
// only), so imports can be checked and other tools fed.
func ExportLiteLLM(f File) ([]byte, error) {
	lpFor := map[string]string{
		"openai": "openai", "azure": "azure", "anthropic": "anthropic", "google": "gemini", "mistral": "mistral",
		"deepseek": "deepseek", "groq": "groq", "together": "together_ai", "fireworks": "fireworks_ai",
	}
	out := map[string]map[string]any{}
	for _, m := range f.Models {
		e := map[string]any{}
		lp := lpFor[m.Provider]
		if lp == "" {
			lp = m.Provider
		}
		e["litellm_provider"] = lp
		put := func(key, perM string) error {
			if perM == "" {
				return nil
			}
			femto, err := parseScaled(perM, priceScale)
			if err != nil {
				return fmt.Errorf("%s/%s %s: %w", m.Provider, m.Model, key, err)
			}
			e[key] = json.Number(formatScaled(femto, 15))
			return nil
		}
		for k, f := range baseFields {
			if err := put(k, *f(&m.TokenPrices)); err != nil {
				return nil, err
			}
		}
		for _, t := range m.Tiers {
			for k, f := range tierFields {
				if err := put(fmt.Sprintf("%s_above_%dk_tokens", k, t.AboveInputTokens/1000), *f(&t.TokenPrices)); err != nil {
					return nil, err
				}
			}
		}
		name := m.Model
		if lp != "openai" && lp != "anthropic" {
			name = lp + "/" + m.Model
		}
		out[name] = e
	}
	return json.MarshalIndent(out, "", "  ")
}
