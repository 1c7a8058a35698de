package clickhouse

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// LedgerTable records applied migrations in the target database.
const LedgerTable = "schema_migrations"

// Migration is one embedded SQL file.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("clickhouse: migration %s: name must start with a positive number and '_'", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: %w", err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("clickhouse: migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Statements splits a migration into statements (on ';' at a line end) with
// {db} replaced by the database name and comment lines removed.
func (m Migration) Statements(db string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(m.SQL, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, strings.ReplaceAll(stmt, "{db}", db))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, strings.ReplaceAll(s, "{db}", db))
	}
	return out
}

// Open connects over the native protocol.
func Open(cfg Config) (driver.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("clickhouse: config: %w", err)
	}
	opts := &chgo.Options{
		Addr: cfg.Addr,
		Auth: chgo.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		// The database may not exist yet (migrate creates it), so connect to
		// default and qualify every table name.
		DialTimeout: cfg.DialTimeout,
		ReadTimeout: cfg.ReadTimeout,
	}
	if cfg.TLS {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	conn, err := chgo.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %v: %w", cfg.Addr, err)
	}
	return conn, nil
}

// Result says what Migrate did.
type Result struct {
	Applied []string
	Current int
}

// Migrate creates the database if needed and applies every embedded
// migration not yet in the ledger. It is idempotent, refuses to run when the
// database has migrations newer than this binary, and refuses when an
// applied migration's file has changed.
func Migrate(ctx context.Context, conn driver.Conn, db string, now func() time.Time) (Result, error) {
	var res Result
	if !identRE.MatchString(db) {
		return res, fmt.Errorf("clickhouse: database %q is not a plain identifier", db)
	}
	ms, err := Migrations()
	if err != nil {
		return res, err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return res, fmt.Errorf("clickhouse: create database %s: %w", db, err)
	}
	ledger := db + "." + LedgerTable
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+ledger+
		" (version UInt32, name String, checksum String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version"); err != nil {
		return res, fmt.Errorf("clickhouse: create ledger %s: %w", ledger, err)
	}
	applied, err := readLedger(ctx, conn, ledger)
	if err != nil {
		return res, err
	}
	latest := ms[len(ms)-1].Version
	for v, a := range applied {
		if v > latest {
			return res, fmt.Errorf("clickhouse: database %s is at migration %d (%s) but this binary knows only up to %d: upgrade burnrate before running it against this database", db, v, a.name, latest)
		}
	}
	for _, m := range ms {
		if a, ok := applied[m.Version]; ok {
			if a.checksum != m.Checksum {
				return res, fmt.Errorf("clickhouse: migration %s was changed after it was applied to %s (checksum %s, applied %s); add a new migration instead", m.Name, db, m.Checksum[:12], a.checksum[:min(12, len(a.checksum))])
			}
			res.Current = m.Version
			continue
		}
		for i, stmt := range m.Statements(db) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return res, fmt.Errorf("clickhouse: migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, ledger, m, now()); err != nil {
			return res, fmt.Errorf("clickhouse: record migration %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Name)
		res.Current = m.Version
	}
	return res, nil
}

// recordMigration uses a column-named batch: a plain INSERT ... VALUES
// through Exec stalls on 18.16's native protocol.
func recordMigration(ctx context.Context, conn driver.Conn, ledger string, m Migration, at time.Time) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+ledger+" (version, name, checksum, applied_at)")
	if err != nil {
		return err
	}
	if err := batch.Append(uint32(m.Version), m.Name, m.Checksum, at.UTC().Truncate(time.Second)); err != nil {
		batch.Abort()
		return err
	}
	return batch.Send()
}

type ledgerRow struct{ name, checksum string }

func readLedger(ctx context.Context, conn driver.Conn, ledger string) (map[int]ledgerRow, error) {
	rows, err := conn.Query(ctx, "SELECT version, name, checksum FROM "+ledger)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read ledger %s: %w", ledger, err)
	}
	defer rows.Close()
	out := map[int]ledgerRow{}
	for rows.Next() {
		var v uint32
		var r ledgerRow
		if err := rows.Scan(&v, &r.name, &r.checksum); err != nil {
			return nil, fmt.Errorf("clickhouse: scan ledger: %w", err)
		}
		out[int(v)] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: read ledger: %w", err)
	}
	return out, nil
}
