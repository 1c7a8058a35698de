package prices

import (
	"fmt"
	"math/bits"
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/burnrate/burnrate/schemas/events"
)

// rates are integer nano-USD per 1M tokens (= femto-USD per token).
type rates struct {
	input, cachedInput, cacheWrite5m, cacheWrite1h, output, reasoning int64
	// reasoningApart: reasoning tokens are priced at reasoning instead of
	// output (they are still counted inside output).
	reasoningApart bool
}

type tier struct {
	above         int64
	normal, batch rates
}

type model struct {
	normal, batch rates
	tiers         []tier
	perRequest    int64 // nano-USD per call
	perGPUSecond  int64 // nano-USD per GPU-second (self-hosted)
}

type modelKey struct{ provider, model string }

// Catalog is a compiled, immutable price catalog ready for the hot path.
type Catalog struct {
	version   string
	effective string
	file      File
	models    map[modelKey]*model
	gpus      map[string]int64 // nano-USD per GPU-hour
	instances map[string]InstanceType
	providers map[string]bool
	// overrideDigest is the sha256 of the override file it was built from.
	overrideDigest [32]byte
}

// Compile validates a catalog file and builds the lookup tables.
func Compile(f File) (*Catalog, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	c := &Catalog{version: f.Version, effective: f.Effective, file: f,
		models: map[modelKey]*model{}, gpus: map[string]int64{}, instances: map[string]InstanceType{}, providers: map[string]bool{}}
	for _, e := range f.Models {
		m, err := compileModel(e)
		if err != nil {
			return nil, fmt.Errorf("prices: %s/%s: %w", e.Provider, e.Model, err)
		}
		for _, name := range append([]string{e.Model}, e.Aliases...) {
			c.models[modelKey{e.Provider, name}] = m
		}
		c.providers[e.Provider] = true
	}
	for _, g := range f.GPUs {
		v, _ := parseScaled(g.Hourly, priceScale)
		c.gpus[g.Model] = v
	}
	for _, t := range f.Instances {
		c.instances[t.Type] = t
	}
	return c, nil
}

func compileModel(e ModelEntry) (*model, error) {
	var discount int64
	if e.BatchDiscount != "" {
		discount, _ = parseScaled(e.BatchDiscount, priceScale)
	}
	normal, err := compileRates(e.TokenPrices, TokenPrices{})
	if err != nil {
		return nil, err
	}
	m := &model{normal: normal, batch: normal.discounted(discount)}
	for _, t := range e.Tiers {
		r, err := compileRates(t.TokenPrices, e.TokenPrices)
		if err != nil {
			return nil, err
		}
		m.tiers = append(m.tiers, tier{above: t.AboveInputTokens, normal: r, batch: r.discounted(discount)})
	}
	// Highest threshold first: the first tier that applies wins.
	sort.Slice(m.tiers, func(i, j int) bool { return m.tiers[i].above > m.tiers[j].above })
	if e.PerRequest != "" {
		m.perRequest, _ = parseScaled(e.PerRequest, priceScale)
	}
	if e.PerGPUSecond != "" {
		m.perGPUSecond, _ = parseScaled(e.PerGPUSecond, priceScale)
	}
	return m, nil
}

// compileRates applies the documented fallbacks: cache prices fall back to
// input, reasoning to output; a tier falls back to its model's base price
// for a category it leaves out.
func compileRates(p, base TokenPrices) (rates, error) {
	get := func(vals ...string) int64 {
		for _, v := range vals {
			if v != "" {
				n, _ := parseScaled(v, priceScale)
				return n
			}
		}
		return 0
	}
	r := rates{
		input:  get(p.Input, base.Input),
		output: get(p.Output, base.Output),
	}
	r.cachedInput = get(p.CachedInput, base.CachedInput, p.Input, base.Input)
	r.cacheWrite5m = get(p.CacheWrite5m, base.CacheWrite5m, p.Input, base.Input)
	r.cacheWrite1h = get(p.CacheWrite1h, base.CacheWrite1h, p.Input, base.Input)
	r.reasoningApart = p.Reasoning != "" || base.Reasoning != ""
	r.reasoning = get(p.Reasoning, base.Reasoning, p.Output, base.Output)
	return r, nil
}

func (r rates) discounted(fraction int64) rates {
	if fraction == 0 {
		return r
	}
	keep := int64(1e9) - fraction
	d := func(v int64) int64 { return mulDivRound(v, keep, 1e9) }
	return rates{d(r.input), d(r.cachedInput), d(r.cacheWrite5m), d(r.cacheWrite1h), d(r.output), d(r.reasoning), r.reasoningApart}
}

// Version is the catalog version every priced event records.
func (c *Catalog) Version() string { return c.version }

// File returns the catalog as loaded (after overrides).
func (c *Catalog) File() File { return c.file }

// Call describes what is being priced beyond its tokens.
type Call struct {
	Provider, Model string
	Batch           bool
	// GPUMillis is the GPU time of a call to a self-hosted model priced per
	// GPU-second.
	GPUMillis int64
}

// Price returns the cost of one call. The rounding rule: every category's
// tokens × price is summed exactly in femto-USD (128-bit), and the sum is
// rounded half up to nano-USD once. An unknown model costs 0 with
// Unpriced=true; it is never an error, so the event is kept.
//
// Tokens follow Burnrate's convention: Output includes Reasoning.
func (c *Catalog) Price(call Call, t events.Tokens) events.Cost {
	m, ok := c.models[modelKey{call.Provider, call.Model}]
	if !ok {
		return events.Cost{PriceVersion: c.version, Unpriced: true}
	}
	r := &m.normal
	if call.Batch {
		r = &m.batch
	}
	if len(m.tiers) > 0 {
		prompt := t.Input + t.CachedInput + t.CacheWrite5m + t.CacheWrite1h
		for i := range m.tiers {
			if prompt > m.tiers[i].above {
				r = &m.tiers[i].normal
				if call.Batch {
					r = &m.tiers[i].batch
				}
				break
			}
		}
	}
	var acc acc128
	acc.add(t.Input, r.input)
	acc.add(t.CachedInput, r.cachedInput)
	acc.add(t.CacheWrite5m, r.cacheWrite5m)
	acc.add(t.CacheWrite1h, r.cacheWrite1h)
	if r.reasoningApart {
		acc.add(t.Output-t.Reasoning, r.output)
		acc.add(t.Reasoning, r.reasoning)
	} else {
		acc.add(t.Output, r.output)
	}
	total := acc.nano()
	total = satAdd(total, m.perRequest)
	if m.perGPUSecond > 0 && call.GPUMillis > 0 {
		total = satAdd(total, mulDivRound(call.GPUMillis, m.perGPUSecond, 1000))
	}
	return events.Cost{TotalNanoUSD: total, PriceVersion: c.version}
}

// GPUHourly returns the nano-USD per GPU-hour for a GPU model name as DCGM
// reports it, or for an instance type (hourly / GPUs per instance).
func (c *Catalog) GPUHourly(gpuModel, instanceType string) (int64, bool) {
	if instanceType != "" {
		if t, ok := c.instances[instanceType]; ok {
			v, _ := parseScaled(t.Hourly, priceScale)
			return mulDivRound(v, 1, int64(t.GPUs)), true
		}
	}
	v, ok := c.gpus[gpuModel]
	return v, ok
}

// GPUCost prices interval milliseconds of one GPU at an hourly rate, rounded
// half up to nano-USD.
func GPUCost(hourlyNano, intervalMillis int64) int64 {
	return mulDivRound(hourlyNano, intervalMillis, 3_600_000)
}

// acc128 is an unsigned 128-bit accumulator of femto-USD.
type acc128 struct{ hi, lo uint64 }

func (a *acc128) add(tokens, perMillionNano int64) {
	if tokens <= 0 || perMillionNano <= 0 {
		return
	}
	hi, lo := bits.Mul64(uint64(tokens), uint64(perMillionNano))
	var carry uint64
	a.lo, carry = bits.Add64(a.lo, lo, 0)
	a.hi += hi + carry
}

// nano rounds the femto-USD sum half up to nano-USD, saturating.
func (a *acc128) nano() int64 {
	lo, carry := bits.Add64(a.lo, femtoPerNano/2, 0)
	hi := a.hi + carry
	if hi >= femtoPerNano {
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, femtoPerNano)
	if q > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(q)
}

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// Pricer holds the current catalog and swaps it atomically on reload; the
// hot path reads it without locks.
type Pricer struct {
	cur      atomic.Pointer[Catalog]
	unpriced *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	info     *prometheus.GaugeVec
}

// NewPricer starts with c and registers its metrics on reg (nil: none).
func NewPricer(c *Catalog, reg prometheus.Registerer) *Pricer {
	p := &Pricer{
		unpriced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_prices_unpriced_total",
			Help: "Calls priced at 0 because the catalog has no price for the model, by provider (other: a provider the catalog does not know).",
		}, []string{"provider"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burnrate_prices_reloads_total",
			Help: "Price catalog reloads by result (ok, error).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "burnrate_prices_catalog_info",
			Help: "The price catalog version in use (value 1).",
		}, []string{"version"}),
	}
	if reg != nil {
		reg.MustRegister(p.unpriced, p.reloads, p.info)
	}
	p.Swap(c)
	return p
}

// Catalog returns the catalog in use now.
func (p *Pricer) Catalog() *Catalog { return p.cur.Load() }

// Swap installs a new catalog.
func (p *Pricer) Swap(c *Catalog) {
	if old := p.cur.Swap(c); old != nil {
		p.info.DeleteLabelValues(old.version)
	}
	p.info.WithLabelValues(c.version).Set(1)
}

// Price prices with the current catalog and counts unpriced calls.
func (p *Pricer) Price(call Call, t events.Tokens) events.Cost {
	c := p.cur.Load()
	cost := c.Price(call, t)
	if cost.Unpriced {
		provider := call.Provider
		if !c.providers[provider] {
			provider = "other"
		}
		p.unpriced.WithLabelValues(provider).Inc()
	}
	return cost
}
