package prices

import "sort"

// Row is one price in the shape of the ClickHouse prices table: nano-USD
// per unit, where unit is "1M_tokens", "request", "gpu_second", "gpu_hour"
// or "instance_hour".
type Row struct {
	Provider         string
	Model            string
	Category         string
	Unit             string
	NanoUSDPerUnit   int64
	MinContextTokens uint64
}

// Rows flattens the catalog into table rows (after fallbacks, so SQL joins
// see the price actually charged for every category).
func (c *Catalog) Rows() []Row {
	var rows []Row
	for _, e := range c.file.Models {
		m := c.models[modelKey{e.Provider, e.Model}]
		add := func(r rates, above uint64) {
			for _, x := range []struct {
				cat string
				v   int64
			}{
				{"input", r.input}, {"cached_input", r.cachedInput}, {"cache_write_5m", r.cacheWrite5m},
				{"cache_write_1h", r.cacheWrite1h}, {"output", r.output}, {"reasoning", r.reasoning},
			} {
				rows = append(rows, Row{e.Provider, e.Model, x.cat, "1M_tokens", x.v, above})
			}
		}
		add(m.normal, 0)
		for _, t := range m.tiers {
			add(t.normal, uint64(t.above))
		}
		if m.perRequest > 0 {
			rows = append(rows, Row{e.Provider, e.Model, "request", "request", m.perRequest, 0})
		}
		if m.perGPUSecond > 0 {
			rows = append(rows, Row{e.Provider, e.Model, "gpu", "gpu_second", m.perGPUSecond, 0})
		}
	}
	for _, g := range c.file.GPUs {
		rows = append(rows, Row{"", g.Model, "gpu", "gpu_hour", c.gpus[g.Model], 0})
	}
	for _, t := range c.file.Instances {
		v, _ := parseScaled(t.Hourly, priceScale)
		rows = append(rows, Row{"", t.Type, "instance", "instance_hour", v, 0})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Provider != rows[j].Provider {
			return rows[i].Provider < rows[j].Provider
		}
		return rows[i].Model < rows[j].Model
	})
	return rows
}

// Effective is the catalog's effective date (YYYY-MM-DD).
func (c *Catalog) Effective() string { return c.effective }
