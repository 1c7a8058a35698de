package prices

import "github.com/burnrate/burnrate/schemas/events"

// Line is one category of a quote.
type Line struct {
	Category string `json:"category"`
	Tokens   int64  `json:"tokens"`
	// NanoUSDPerMillion is the price applied (nano-USD per 1M tokens).
	NanoUSDPerMillion int64 `json:"nano_usd_per_million"`
	// NanoUSD is this line alone, rounded half up; the total is the exact
	// sum rounded once, so lines may differ from it by a few nano-USD.
	NanoUSD int64 `json:"nano_usd"`
}

// Quote explains a price: the same total as Price, with the lines behind it.
type Quote struct {
	Provider     string        `json:"provider"`
	Model        string        `json:"model"`
	Batch        bool          `json:"batch,omitempty"`
	Tokens       events.Tokens `json:"tokens"`
	NanoUSD      int64         `json:"nano_usd"`
	PriceVersion string        `json:"price_version"`
	Unpriced     bool          `json:"unpriced,omitempty"`
	// Tier is the long-context threshold applied, 0 for base prices.
	Tier       int64  `json:"tier_above_input_tokens,omitempty"`
	PerRequest int64  `json:"per_request_nano_usd,omitempty"`
	Lines      []Line `json:"breakdown"`
}

// Quote prices a call and shows the lines.
func (c *Catalog) Quote(call Call, t events.Tokens) Quote {
	cost := c.Price(call, t)
	q := Quote{Provider: call.Provider, Model: call.Model, Batch: call.Batch, Tokens: t, NanoUSD: cost.TotalNanoUSD,
		PriceVersion: cost.PriceVersion, Unpriced: cost.Unpriced, Lines: []Line{}}
	m, ok := c.models[modelKey{call.Provider, call.Model}]
	if !ok {
		return q
	}
	r := m.normal
	if call.Batch {
		r = m.batch
	}
	prompt := t.Input + t.CachedInput + t.CacheWrite5m + t.CacheWrite1h
	for _, tr := range m.tiers {
		if prompt > tr.above {
			r, q.Tier = tr.normal, tr.above
			if call.Batch {
				r = tr.batch
			}
			break
		}
	}
	line := func(cat string, n, price int64) {
		if n == 0 {
			return
		}
		var a acc128
		a.add(n, price)
		q.Lines = append(q.Lines, Line{Category: cat, Tokens: n, NanoUSDPerMillion: price, NanoUSD: a.nano()})
	}
	line("input", t.Input, r.input)
	line("cached_input", t.CachedInput, r.cachedInput)
	line("cache_write_5m", t.CacheWrite5m, r.cacheWrite5m)
	line("cache_write_1h", t.CacheWrite1h, r.cacheWrite1h)
	if r.reasoningApart {
		line("output", t.Output-t.Reasoning, r.output)
		line("reasoning", t.Reasoning, r.reasoning)
	} else {
		line("output", t.Output, r.output)
	}
	q.PerRequest = m.perRequest
	return q
}
