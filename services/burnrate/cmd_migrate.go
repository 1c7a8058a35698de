package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/burnrate/burnrate/schemas/clickhouse"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("migrate", stderr, &c)
	database := fs.String("database", "", "override clickhouse.database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	if *database != "" {
		f.ClickHouse.Database = *database
	}
	conn, err := clickhouse.Open(f.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := clickhouse.Migrate(ctx, conn, f.ClickHouse.Database, time.Now)
	if err != nil {
		return err
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(stdout, "database %s is up to date at version %d\n", f.ClickHouse.Database, res.Current)
		return nil
	}
	fmt.Fprintf(stdout, "database %s migrated to version %d: applied %s\n", f.ClickHouse.Database, res.Current, strings.Join(res.Applied, ", "))
	return nil
}
