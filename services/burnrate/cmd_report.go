package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	chschema "github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/report"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("report", stderr, &c)
	by := fs.String("by", "team", "comma-separated dimensions: team, app, env, user, customer, feature, key, model, provider, org, agent_run, status, day, month, tag.<key> (usage); team, app, namespace, node, gpu_model, day, month (gpu)")
	source := fs.String("source", "usage", "usage (model calls) or gpu (GPU samples)")
	from := fs.String("from", "", "start, RFC 3339 or YYYY-MM-DD (UTC); default: --last before --to")
	to := fs.String("to", "", "end (exclusive), RFC 3339 or YYYY-MM-DD (UTC); default: now")
	last := fs.Duration("last", 30*24*time.Hour, "period length when --from is not set")
	format := fs.String("format", "table", "table, csv or json")
	progress := fs.Bool("progress", isTerminal(os.Stderr), "show rows read on stderr while ClickHouse works (default when stderr is a terminal)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	o := report.Options{Source: *source, Format: *format, To: time.Now().UTC()}
	if *by != "" {
		o.By = strings.Split(*by, ",")
	}
	if *to != "" {
		if o.To, err = parseDay(*to); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	o.From = o.To.Add(-*last)
	if *from != "" {
		if o.From, err = parseDay(*from); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	if *progress {
		o.Progress = stderr
	}
	if err := o.Validate(); err != nil {
		return err
	}
	conn, err := chschema.Open(f.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	return report.Run(ctx, conn, f.ClickHouse.Database, o, stdout)
}

func parseDay(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
	}
	return t, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
