package prices

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed catalog.yaml
var shipped []byte

// Shipped returns the catalog embedded in the binary.
func Shipped() []byte { return shipped }

// File is the catalog's file format (see catalog.yaml for the commented
// reference). Prices are decimal strings in USD.
type File struct {
	Version   string         `yaml:"version" json:"version"`
	Effective string         `yaml:"effective" json:"effective"`
	Models    []ModelEntry   `yaml:"models" json:"models"`
	GPUs      []GPUEntry     `yaml:"gpus,omitempty" json:"gpus,omitempty"`
	Instances []InstanceType `yaml:"instances,omitempty" json:"instances,omitempty"`
}

// TokenPrices are USD per 1M tokens by category; empty means "not priced
// apart" (see catalog.yaml for the fallbacks).
type TokenPrices struct {
	Input        string `yaml:"input,omitempty" json:"input,omitempty"`
	CachedInput  string `yaml:"cached_input,omitempty" json:"cached_input,omitempty"`
	CacheWrite5m string `yaml:"cache_write_5m,omitempty" json:"cache_write_5m,omitempty"`
	CacheWrite1h string `yaml:"cache_write_1h,omitempty" json:"cache_write_1h,omitempty"`
	Output       string `yaml:"output,omitempty" json:"output,omitempty"`
	Reasoning    string `yaml:"reasoning,omitempty" json:"reasoning,omitempty"`
}

// ModelEntry prices one model of one provider.
type ModelEntry struct {
	Provider    string   `yaml:"provider" json:"provider"`
	Model       string   `yaml:"model" json:"model"`
	Aliases     []string `yaml:"aliases,omitempty" json:"aliases,omitempty"`
	TokenPrices `yaml:",inline" json:",inline"`
	Tiers       []Tier `yaml:"tiers,omitempty" json:"tiers,omitempty"`
	// BatchDiscount is the fraction taken off token prices for batch calls.
	BatchDiscount string `yaml:"batch_discount,omitempty" json:"batch_discount,omitempty"`
	// PerRequest is USD per call on top of tokens.
	PerRequest string `yaml:"per_request,omitempty" json:"per_request,omitempty"`
	// PerGPUSecond prices a self-hosted model by the GPU time of the call
	// (USD per GPU-second); overrides only.
	PerGPUSecond string `yaml:"per_gpu_second,omitempty" json:"per_gpu_second,omitempty"`
	// Discount, on an override entry, takes this fraction off the shipped
	// entry's prices instead of replacing them.
	Discount string `yaml:"discount,omitempty" json:"discount,omitempty"`
}

// Tier is a long-context price set for prompts above AboveInputTokens.
type Tier struct {
	AboveInputTokens int64 `yaml:"above_input_tokens" json:"above_input_tokens"`
	TokenPrices      `yaml:",inline" json:",inline"`
}

// GPUEntry prices one GPU model per hour, by the name DCGM reports.
type GPUEntry struct {
	Model  string `yaml:"model" json:"model"`
	Hourly string `yaml:"hourly" json:"hourly"`
}

// InstanceType prices a cloud instance per hour.
type InstanceType struct {
	Type   string `yaml:"type" json:"type"`
	Hourly string `yaml:"hourly" json:"hourly"`
	GPUs   int    `yaml:"gpus" json:"gpus"`
}

// ParseFile decodes a catalog or override file, rejecting unknown keys.
func ParseFile(data []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("prices: %w", err)
	}
	return f, nil
}

// ReadFile reads and parses a catalog or override file.
func ReadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("prices: %w", err)
	}
	f, err := ParseFile(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Merge lays an org override over a base catalog: entries with the same
// provider and model replace the base entry, or with Discount set scale it;
// new entries are added; GPUs and instances replace by name. The version
// becomes "base+override".
func Merge(base, over File) (File, error) {
	out := base
	out.Models = append([]ModelEntry(nil), base.Models...)
	idx := map[string]int{}
	for i, m := range out.Models {
		idx[m.Provider+"\x00"+m.Model] = i
	}
	aliasOf := map[string]int{}
	for i, m := range out.Models {
		for _, a := range m.Aliases {
			aliasOf[m.Provider+"\x00"+a] = i
		}
	}
	for _, m := range over.Models {
		k := m.Provider + "\x00" + m.Model
		i, exists := idx[k]
		if j, isAlias := aliasOf[k]; !exists && isAlias {
			if m.Discount != "" {
				i, exists = j, true
			} else {
				// The override prices one alias on its own: take the alias
				// away from the shipped entry.
				owner := out.Models[j]
				owner.Aliases = without(owner.Aliases, m.Model)
				out.Models[j] = owner
				delete(aliasOf, k)
			}
		}
		switch {
		case m.Discount != "" && !exists:
			return File{}, fmt.Errorf("prices: override %s/%s: discount on a model the base catalog does not price", m.Provider, m.Model)
		case m.Discount != "":
			scaled, err := discounted(out.Models[i], m.Discount)
			if err != nil {
				return File{}, fmt.Errorf("prices: override %s/%s: %w", m.Provider, m.Model, err)
			}
			out.Models[i] = scaled
		case exists:
			out.Models[i] = m
		default:
			idx[k] = len(out.Models)
			out.Models = append(out.Models, m)
		}
	}
	out.GPUs = mergeByName(base.GPUs, over.GPUs, func(g GPUEntry) string { return g.Model })
	out.Instances = mergeByName(base.Instances, over.Instances, func(t InstanceType) string { return t.Type })
	if over.Version != "" {
		out.Version = base.Version + "+" + over.Version
	}
	if over.Effective != "" {
		out.Effective = over.Effective
	}
	return out, nil
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func mergeByName[T any](base, over []T, name func(T) string) []T {
	out := append([]T(nil), base...)
	for _, o := range over {
		replaced := false
		for i := range out {
			if name(out[i]) == name(o) {
				out[i], replaced = o, true
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

// discounted scales every price of m by (1 - fraction), exactly to the
// femto-USD per token.
func discounted(m ModelEntry, fraction string) (ModelEntry, error) {
	d, err := parseScaled(fraction, 9)
	if err != nil || d > 1e9 {
		return m, fmt.Errorf("discount %q: want a fraction between 0 and 1", fraction)
	}
	scale := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		v, err := parseScaled(s, priceScale)
		if err != nil {
			return "", err
		}
		return formatScaled(mulDivRound(v, 1e9-d, 1e9), priceScale), nil
	}
	var errs []error
	sc := func(p *TokenPrices) {
		for _, f := range []*string{&p.Input, &p.CachedInput, &p.CacheWrite5m, &p.CacheWrite1h, &p.Output, &p.Reasoning} {
			v, err := scale(*f)
			errs = append(errs, err)
			*f = v
		}
	}
	out := m
	sc(&out.TokenPrices)
	out.Tiers = append([]Tier(nil), m.Tiers...)
	for i := range out.Tiers {
		sc(&out.Tiers[i].TokenPrices)
	}
	return out, errors.Join(errs...)
}

// Validate checks every entry, naming it and the field.
func (f File) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if f.Version == "" {
		add("version: required")
	}
	if f.Effective != "" {
		if _, err := time.Parse("2006-01-02", f.Effective); err != nil {
			add("effective: %q is not a date (YYYY-MM-DD)", f.Effective)
		}
	}
	seen := map[string]bool{}
	for i, m := range f.Models {
		where := fmt.Sprintf("models[%d] (%s/%s)", i, m.Provider, m.Model)
		if m.Provider == "" || m.Model == "" {
			add("%s: provider and model are required", where)
		}
		for _, name := range append([]string{m.Model}, m.Aliases...) {
			k := m.Provider + "\x00" + name
			if seen[k] {
				add("%s: %s/%s is priced twice", where, m.Provider, name)
			}
			seen[k] = true
		}
		if m.Discount != "" {
			add("%s: discount belongs in an override file only", where)
		}
		if m.Input == "" && m.PerGPUSecond == "" && m.PerRequest == "" {
			add("%s: input: required (or per_gpu_second / per_request)", where)
		}
		errs = append(errs, checkPrices(where, m.TokenPrices)...)
		for j, t := range m.Tiers {
			if t.AboveInputTokens <= 0 {
				add("%s: tiers[%d].above_input_tokens: must be > 0", where, j)
			}
			if j > 0 && t.AboveInputTokens <= m.Tiers[j-1].AboveInputTokens {
				add("%s: tiers[%d]: tiers must be in ascending above_input_tokens", where, j)
			}
			errs = append(errs, checkPrices(fmt.Sprintf("%s: tiers[%d]", where, j), t.TokenPrices)...)
		}
		for field, v := range map[string]string{"batch_discount": m.BatchDiscount, "per_request": m.PerRequest, "per_gpu_second": m.PerGPUSecond} {
			if v == "" {
				continue
			}
			n, err := parseScaled(v, priceScale)
			if err != nil {
				add("%s: %s: %v", where, field, err)
			} else if field == "batch_discount" && n > 1e9 {
				add("%s: batch_discount: %s is more than 1", where, v)
			}
		}
	}
	for i, g := range f.GPUs {
		if g.Model == "" {
			add("gpus[%d].model: required", i)
		}
		if _, err := parseScaled(g.Hourly, 9); err != nil {
			add("gpus[%d] (%s).hourly: %v", i, g.Model, err)
		}
	}
	for i, t := range f.Instances {
		if t.Type == "" {
			add("instances[%d].type: required", i)
		}
		if t.GPUs <= 0 {
			add("instances[%d] (%s).gpus: must be > 0", i, t.Type)
		}
		if _, err := parseScaled(t.Hourly, 9); err != nil {
			add("instances[%d] (%s).hourly: %v", i, t.Type, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prices: %w", err)
	}
	return nil
}

func checkPrices(where string, p TokenPrices) []error {
	var errs []error
	for _, c := range []struct{ name, v string }{
		{"input", p.Input}, {"cached_input", p.CachedInput}, {"cache_write_5m", p.CacheWrite5m},
		{"cache_write_1h", p.CacheWrite1h}, {"output", p.Output}, {"reasoning", p.Reasoning},
	} {
		if c.v == "" {
			continue
		}
		if _, err := parseScaled(c.v, priceScale); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %v", where, c.name, err))
		}
	}
	return errs
}

// SortedModels returns the entries ordered by provider then model.
func (f File) SortedModels() []ModelEntry {
	ms := append([]ModelEntry(nil), f.Models...)
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Provider != ms[j].Provider {
			return ms[i].Provider < ms[j].Provider
		}
		return ms[i].Model < ms[j].Model
	})
	return ms
}
