// Command burnrate is the one binary of Burnrate: one subcommand per service
// and the tools around them. main only parses flags and config, wires
// dependencies and handles signals; the work lives in the service packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// command is one subcommand.
type command struct {
	name    string
	summary string
	// issue names the work that builds a command not built yet.
	pending string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{name: "ingress", summary: "OpenAI/Anthropic-compatible gateway and usage collector", run: runIngress},
		{name: "sink", summary: "exactly-once Kafka → ClickHouse writer", run: runSink},
		{name: "meter", summary: "streaming spend, agent runs and anomalies", run: runMeter},
		{name: "killswitch", summary: "budgets, leases and loop breaker → verdicts", run: runKillswitch},
		{name: "budgets", summary: "budgets with spent, limit, burn rate and forecast (killswitch admin API)", run: runBudgets},
		{name: "verdicts", summary: "active verdicts; verdicts kill|lift SUBJECT (killswitch admin API)", run: runVerdicts},
		{name: "gpu-agent", summary: "DCGM / dcgm-exporter / NVML GPU telemetry and cost", run: runGPUAgent},
		{name: "migrate", summary: "create or upgrade the ClickHouse schema (idempotent)", run: runMigrate},
		{name: "topics", summary: "create or check the Kafka topics of the catalog (topics ensure|list)", run: runTopics},
		{name: "dev", summary: "everything on one machine: embedded broker, local ClickHouse", run: runDev},
		{name: "keys", summary: "virtual key tools (keys hash TOKEN)", run: runKeys},
		{name: "prices", summary: "price catalog tools (list, quote, import, load)", run: runPrices},
		{name: "loadgen", summary: "open-loop HTTP load generator", run: runLoadgen},
		{name: "mock-upstream", summary: "mock OpenAI/Anthropic upstream for demos and benchmarks", run: runMockUpstream},
		{name: "report", summary: "chargeback and showback from ClickHouse (report --by team,app --last 30d --format csv)", run: runReport},
		{name: "version", summary: "print the version", run: func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintf(stdout, "burnrate %s\n", Version)
			return nil
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "burnrate %s: stop AI spend before it happens.\n\nUsage: burnrate <command> [flags]\n\nServices and tools:\n", Version)
	cmds := commands()
	for _, c := range cmds {
		note := ""
		if c.run == nil {
			note = " (not built yet)"
		}
		fmt.Fprintf(w, "  %-14s %s%s\n", c.name, c.summary, note)
	}
	fmt.Fprintf(w, "\nRun 'burnrate <command> -h' for a command's flags. Every service reads one config file (--config, see deploy/config.example.yaml).\n")
}

// errUsage marks errors whose message already explained the usage.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	var cmd *command
	cmds := commands()
	for i := range cmds {
		if cmds[i].name == args[0] {
			cmd = &cmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "burnrate: unknown command %q; known: %s\n", args[0], strings.Join(names(cmds), ", "))
		return 2
	}
	if cmd.run == nil {
		fmt.Fprintf(stderr, "burnrate %s: not built yet (%s); this binary has: %s\n", cmd.name, cmd.pending, strings.Join(built(cmds), ", "))
		return 3
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "burnrate %s: %v\n", cmd.name, err)
		}
		return 1
	}
	return 0
}

func names(cmds []command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.name
	}
	sort.Strings(out)
	return out
}

func built(cmds []command) []string {
	var out []string
	for _, c := range cmds {
		if c.run != nil {
			out = append(out, c.name)
		}
	}
	return out
}
