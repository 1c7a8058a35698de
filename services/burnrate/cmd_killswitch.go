package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/killswitch"
	"github.com/burnrate/burnrate/services/meter"
)

func runKillswitch(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runService(ctx, "killswitch", args, stderr, nil, func(ctx context.Context, f config.File, log *zap.Logger, reg *prometheus.Registry) error {
		ch := f.ClickHouse
		return killswitch.Run(ctx, f.Killswitch, killswitch.Deps{Kafka: f.Kafka, ClickHouse: &ch, Log: log, Registerer: reg,
			Now: time.Now, Getenv: os.Getenv, SubjectKeys: meter.SubjectKeys(), Combinations: f.Meter.Combinations, TagKeys: f.Meter.TagKeys})
	})
}

// adminClient talks to the killswitch admin API for the CLIs.
type adminClient struct {
	base, token string
	http        *http.Client
}

func adminFlags(name string, stderr io.Writer) (*flag.FlagSet, func() (adminClient, error)) {
	var c common
	fs := newFlagSet(name, stderr, &c)
	url := fs.String("admin", os.Getenv("BURNRATE_ADMIN_URL"), "killswitch admin API base URL; env BURNRATE_ADMIN_URL; default http://<killswitch.admin_listen>")
	token := fs.String("token", "", "admin token; default $<killswitch.admin_token_env> (BURNRATE_ADMIN_TOKEN)")
	return fs, func() (adminClient, error) {
		f, err := c.load()
		if err != nil {
			return adminClient{}, err
		}
		base := *url
		if base == "" {
			if f.Killswitch.AdminListen == "" {
				return adminClient{}, errors.New("no admin API: killswitch.admin_listen is empty and --admin is not set")
			}
			base = "http://" + f.Killswitch.AdminListen
		}
		tok := *token
		if tok == "" {
			tok = os.Getenv(f.Killswitch.AdminTokenEnv)
		}
		if tok == "" {
			return adminClient{}, fmt.Errorf("no admin token: pass --token or set $%s", f.Killswitch.AdminTokenEnv)
		}
		return adminClient{base: strings.TrimRight(base, "/"), token: tok, http: &http.Client{Timeout: 15 * time.Second}}, nil
	}
}

func (a adminClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("killswitch admin API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Type, Message, Field string }
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("killswitch admin API: %s: %s", e.Error.Type, e.Error.Message)
		}
		return fmt.Errorf("killswitch admin API: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

func runBudgets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, client := adminFlags("budgets", stderr)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := client()
	if err != nil {
		return err
	}
	var out struct {
		Budgets []struct {
			Budget, Subject, Period, Action, Verdict string
			PeriodEnd                                time.Time `json:"period_end"`
			LimitNanoUSD                             int64     `json:"limit_nano_usd"`
			LimitTokens                              int64     `json:"limit_tokens"`
			SpentNanoUSD                             int64     `json:"spent_nano_usd"`
			SpentTokens                              int64     `json:"spent_tokens"`
			Percent                                  int       `json:"percent"`
			Burn                                     int64     `json:"burn_nano_usd_per_hour"`
			Forecast                                 int64     `json:"forecast_nano_usd"`
		} `json:"budgets"`
	}
	if *asJSON {
		var raw json.RawMessage
		if err := a.do(ctx, http.MethodGet, "/v1/budgets", nil, &raw); err != nil {
			return err
		}
		_, err := stdout.Write(append(raw, '\n'))
		return err
	}
	if err := a.do(ctx, http.MethodGet, "/v1/budgets", nil, &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUDGET\tSUBJECT\tPERIOD\tSPENT\tLIMIT\t%\tBURN/H\tFORECAST\tACTION\tVERDICT\tRESETS")
	for _, b := range out.Budgets {
		spent, limit := dollars(b.SpentNanoUSD), dollars(b.LimitNanoUSD)
		if b.LimitNanoUSD == 0 {
			spent, limit = fmt.Sprintf("%d tok", b.SpentTokens), fmt.Sprintf("%d tok", b.LimitTokens)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", b.Budget, b.Subject, b.Period, spent, limit, b.Percent,
			dollars(b.Burn), dollars(b.Forecast), b.Action, orDash(b.Verdict), b.PeriodEnd.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runVerdicts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	if sub != "list" && sub != "kill" && sub != "lift" {
		fmt.Fprintln(stderr, "usage: burnrate verdicts [list] | kill SUBJECT --ttl 1h --reason TEXT | lift SUBJECT --reason TEXT")
		return errUsage
	}
	fs, client := adminFlags("verdicts "+sub, stderr)
	ttl := fs.Duration("ttl", time.Hour, "kill: how long the block lasts")
	reason := fs.String("reason", "", "kill, lift: why (recorded in budget_events and shown to blocked callers)")
	actor := fs.String("actor", os.Getenv("USER"), "kill, lift: who acts (audit)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	a, err := client()
	if err != nil {
		return err
	}
	if sub == "list" {
		var out struct {
			Verdicts []events.Verdict `json:"verdicts"`
		}
		if err := a.do(ctx, http.MethodGet, "/v1/verdicts", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBJECT\tACTION\tDETAIL\tEXPIRES\tISSUED BY\tREASON")
		for _, v := range out.Verdicts {
			detail := "-"
			switch {
			case v.Lease != nil:
				detail = fmt.Sprintf("%s left, %s × %d", dollars(v.Lease.RemainingNanoUSD), dollars(v.Lease.PerInstanceNanoUSD), v.Lease.Instances)
			case v.DowngradeTo != "":
				detail = "→ " + v.DowngradeTo
			case v.ThrottlePerMin > 0:
				detail = fmt.Sprintf("%d/min", v.ThrottlePerMin)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Subject, v.Action, detail, v.ExpiresAt.Format(time.RFC3339), v.IssuedBy, v.Reason)
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return fmt.Errorf("verdicts %s: want one SUBJECT (e.g. team=payments), got %d", sub, len(pos))
	}
	if *reason == "" {
		return fmt.Errorf("verdicts %s: --reason is required (it is audited)", sub)
	}
	body := map[string]string{"subject": pos[0], "reason": *reason, "actor": *actor}
	if sub == "kill" {
		body["ttl"] = ttl.String()
	}
	var out struct {
		Verdict events.Verdict `json:"verdict"`
	}
	if err := a.do(ctx, http.MethodPost, "/v1/verdicts/"+sub, body, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s until %s (verdict %s)\n", out.Verdict.Subject, out.Verdict.Action, out.Verdict.ExpiresAt.Format(time.RFC3339), out.Verdict.ID)
	return nil
}

func dollars(n int64) string { return fmt.Sprintf("$%.2f", float64(n)/1e9) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
