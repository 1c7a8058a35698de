package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/encoding/json"
	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
)

const pricesUsage = `usage: burnrate prices <list|quote|import|load> [flags]
  list    print the catalog (shipped + override)            [--format table|json|yaml]
  quote   price one call from a raw provider usage object  --provider P --model M --usage JSON [--batch]
  import  convert LiteLLM's model_prices_and_context_window.json to Burnrate's format  FILE [--out F]
  load    write the catalog into the ClickHouse prices table
Every subcommand takes --override FILE (default: prices.override_file of the config).`

func runPrices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, pricesUsage)
		return errUsage
	}
	sub, args := args[0], args[1:]
	var c common
	fs := newFlagSet("prices "+sub, stderr, &c)
	override := fs.String("override", "", "org price override file merged over the shipped catalog")
	switch sub {
	case "list":
		format := fs.String("format", "table", "table, json or yaml")
		if err := fs.Parse(args); err != nil {
			return err
		}
		cat, err := loadCatalog(c, *override)
		if err != nil {
			return err
		}
		return listPrices(stdout, cat, *format)
	case "quote":
		provider := fs.String("provider", "", "provider (openai, anthropic, google, azure, ...)")
		model := fs.String("model", "", "model as the provider names it")
		usage := fs.String("usage", "", "the provider's raw usage object (or whole response) as JSON; - reads stdin")
		batch := fs.Bool("batch", false, "price as a batch API call")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *provider == "" || *model == "" || *usage == "" {
			return errors.New("quote: --provider, --model and --usage are required")
		}
		raw := []byte(*usage)
		if *usage == "-" {
			b, err := io.ReadAll(os.Stdin)
			if err != nil {
				return fmt.Errorf("quote: read stdin: %w", err)
			}
			raw = b
		}
		tok, err := normalize.Usage(*provider, raw)
		if err != nil {
			return fmt.Errorf("quote: %w", err)
		}
		cat, err := loadCatalog(c, *override)
		if err != nil {
			return err
		}
		out, err := json.MarshalIndent(cat.Quote(prices.Call{Provider: *provider, Model: *model, Batch: *batch}, tok), "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(out))
		return nil
	case "import":
		out := fs.String("out", "", "write the catalog here instead of stdout")
		version := fs.String("version", "litellm-"+time.Now().UTC().Format("2006-01-02"), "version string of the new catalog")
		files, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(files) != 1 {
			return errors.New("import: want exactly one FILE (LiteLLM's model_prices_and_context_window.json)")
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		f, rep, err := prices.ImportLiteLLM(data, *version, time.Now().UTC().Format("2006-01-02"))
		if err != nil {
			return err
		}
		y, err := yaml.Marshal(f)
		if err != nil {
			return err
		}
		if *out != "" {
			if err := os.WriteFile(*out, y, 0o644); err != nil {
				return fmt.Errorf("import: %w", err)
			}
		} else {
			stdout.Write(y)
		}
		fmt.Fprintf(stderr, "imported %d models; %d skipped, %d partly mapped\n", len(f.Models), len(rep.Skipped), len(rep.Partial))
		for _, s := range rep.Skipped {
			fmt.Fprintln(stderr, "  skipped:", s)
		}
		for _, s := range rep.Partial {
			fmt.Fprintln(stderr, "  partial:", s)
		}
		return nil
	case "load":
		if err := fs.Parse(args); err != nil {
			return err
		}
		f, err := c.load()
		if err != nil {
			return err
		}
		cat, err := loadCatalog(c, *override)
		if err != nil {
			return err
		}
		conn, err := clickhouse.Open(f.ClickHouse)
		if err != nil {
			return err
		}
		defer conn.Close()
		n, err := clickhouse.LoadPrices(ctx, conn, f.ClickHouse.Database, cat, time.Now())
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(stdout, "prices version %s already loaded in %s.prices\n", cat.Version(), f.ClickHouse.Database)
		} else {
			fmt.Fprintf(stdout, "loaded %d prices of version %s into %s.prices\n", n, cat.Version(), f.ClickHouse.Database)
		}
		return nil
	}
	fmt.Fprintln(stderr, pricesUsage)
	return errUsage
}

// loadCatalog: the --override flag wins over prices.override_file.
func loadCatalog(c common, override string) (*prices.Catalog, error) {
	if override == "" {
		f, err := c.load()
		if err != nil {
			return nil, err
		}
		override = f.Prices.OverrideFile
	}
	return prices.Load(override)
}

func listPrices(w io.Writer, cat *prices.Catalog, format string) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(cat.File(), "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
		return nil
	case "yaml":
		return yaml.NewEncoder(w).Encode(cat.File())
	case "table":
	default:
		return fmt.Errorf("list: --format %q: want table, json or yaml", format)
	}
	fmt.Fprintf(w, "price catalog %s, effective %s (USD per 1M tokens; GPUs per hour)\n\n", cat.Version(), cat.Effective())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tMODEL\tINPUT\tCACHED\tWRITE 5M\tWRITE 1H\tOUTPUT\tTIERS\tBATCH")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	f := cat.File()
	for _, m := range f.SortedModels() {
		var tiers []string
		for _, t := range m.Tiers {
			tiers = append(tiers, fmt.Sprintf(">%dk", t.AboveInputTokens/1000))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Provider, m.Model, dash(m.Input), dash(m.CachedInput),
			dash(m.CacheWrite5m), dash(m.CacheWrite1h), dash(m.Output), dash(strings.Join(tiers, ",")), dash(m.BatchDiscount))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "GPU\tPER HOUR")
	for _, g := range f.GPUs {
		fmt.Fprintf(tw, "%s\t%s\n", g.Model, g.Hourly)
	}
	return tw.Flush()
}
