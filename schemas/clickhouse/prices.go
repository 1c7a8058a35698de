package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/burnrate/burnrate/schemas/prices"
)

// LoadPrices writes a catalog into the prices table for SQL joins. A version
// already loaded is left alone (returns 0), so loading is idempotent.
func LoadPrices(ctx context.Context, conn driver.Conn, db string, c *prices.Catalog, now time.Time) (int, error) {
	table := db + ".prices"
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+table+" WHERE version = ?", c.Version()).Scan(&n); err != nil {
		return 0, fmt.Errorf("clickhouse: check prices version %s: %w", c.Version(), err)
	}
	if n > 0 {
		return 0, nil
	}
	effective, err := time.Parse("2006-01-02", c.Effective())
	if err != nil {
		effective = now.UTC().Truncate(24 * time.Hour)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (version, effective_from, provider, model, category, unit, nano_usd_per_unit, min_context_tokens, loaded_at)")
	if err != nil {
		return 0, fmt.Errorf("clickhouse: prepare prices insert: %w", err)
	}
	rows := c.Rows()
	for _, r := range rows {
		if err := batch.Append(c.Version(), effective, r.Provider, r.Model, r.Category, r.Unit, r.NanoUSDPerUnit, r.MinContextTokens, now.UTC().Truncate(time.Second)); err != nil {
			batch.Abort()
			return 0, fmt.Errorf("clickhouse: append price %s/%s %s: %w", r.Provider, r.Model, r.Category, err)
		}
	}
	if err := batch.Send(); err != nil {
		return 0, fmt.Errorf("clickhouse: insert %d prices: %w", len(rows), err)
	}
	return len(rows), nil
}
