// Package clickhouse owns Burnrate's ClickHouse schema: the migrations
// embedded in the binary, the ledger that records them, and the connection
// settings every service uses.
//
// Every statement must run on Debian's clickhouse-server 18.16 and on current
// releases: no DateTime64, no LowCardinality, no Map, no insert dedup tokens,
// and INSERTs always name their columns. Migrations are append-only; an
// applied file is never edited (its checksum is checked).
package clickhouse
