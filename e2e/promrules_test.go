package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/services/dev/localch"
	"github.com/burnrate/burnrate/services/ingress"
)

// TestPrometheusRules runs promtool on the service-health rules and their
// unit tests, and checks every metric the rules and the health dashboard
// use against a real scrape of every service.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: `make deps` installs Debian's prometheus package, which has it")
	}
	dir := filepath.Join("..", "dashboards", "prometheus")
	rules, _ := filepath.Glob(filepath.Join(dir, "*-rules.yaml"))
	tests, _ := filepath.Glob(filepath.Join(dir, "*.test.yaml"))
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("rules %v, tests %v in %s", rules, tests, dir)
	}
	for _, args := range [][]string{append([]string{"check", "rules"}, rules...), append([]string{"test", "rules"}, basenames(tests)...)} {
		cmd := exec.Command(promtool, args...)
		if args[0] == "test" {
			cmd.Dir = dir
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	used := map[string][]string{} // metric → where
	for _, f := range rules {
		var doc struct {
			Groups []struct {
				Rules []struct {
					Record, Alert, Expr string
				}
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		recorded := map[string]bool{}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
			}
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				for _, m := range metricNames(r.Expr) {
					if !recorded[m] {
						used[m] = append(used[m], filepath.Base(f)+" "+r.Record+r.Alert)
					}
				}
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join("..", "dashboards", "grafana", "health.json")); err == nil {
		for _, expr := range regexp.MustCompile(`"expr":\s*"((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(string(b), -1) {
			for _, m := range metricNames(strings.ReplaceAll(expr[1], `\"`, `"`)) {
				used[m] = append(used[m], "health.json")
			}
		}
	}

	exported := scrapeAllServices(t)
	var missing []string
	for m, where := range used {
		if !exported[m] {
			missing = append(missing, fmt.Sprintf("%s (used by %s)", m, strings.Join(where, ", ")))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics no service exports:\n  %s", strings.Join(missing, "\n  "))
	}
	t.Logf("%d metrics used by the rules and the health dashboard, all in a real scrape of the services", len(used))
}

func basenames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

var (
	promIdent   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promStrings = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\{[^}]*\}|\[[^\]]*\]`)
)

// metricNames lists the burnrate_ metric names in a PromQL expression
// (label matchers, strings and ranges removed first); `up` comes from
// Prometheus itself.
func metricNames(expr string) []string {
	expr = promStrings.ReplaceAllString(expr, " ")
	var out []string
	for _, id := range promIdent.FindAllString(expr, -1) {
		if strings.HasPrefix(id, "burnrate_") && !strings.Contains(id, ":") {
			out = append(out, id)
		}
	}
	return out
}

// scrapeAllServices runs every service with traffic enough to touch its
// metrics and returns the metric names of their /metrics (histogram
// series as _bucket, _sum and _count).
func scrapeAllServices(t *testing.T) map[string]bool {
	t.Helper()
	r := newSinkRig(t, "  group: prom-sink\n")
	dir := t.TempDir()
	mockPort, _ := localch.FreePort()
	ingPort, _ := localch.FreePort()
	adminPort, _ := localch.FreePort()
	startProc(t, nil, "mock-upstream", "--listen", fmt.Sprintf("127.0.0.1:%d", mockPort))
	policies := filepath.Join(dir, "policies.yaml")
	write(t, policies, "budgets: [{subject: team=prom, period: day, limit_usd: \"0.000001\"}]\nloops: {max_repeats: 3}\n")
	cfg := filepath.Join(dir, "burnrate.yaml")
	write(t, cfg, fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %q
clickhouse:
  addr: [%s]
  database: %s
log:
  level: warn
ingress:
  listen: "127.0.0.1:%d"
  heartbeat_interval: 1s
  spool: {dir: %q}
  keys:
    - {id: vk_prom, sha256: %s, team: prom, app: scrape, env: test, attribution_headers: true}
  routes:
    - {model: gpt-4o-mini, provider: openai, base_url: "http://127.0.0.1:%d/v1", api_key_env: E2E_UPSTREAM_KEY}
sink:
  group: prom-sink
meter:
  group: prom-meter
killswitch:
  group: prom-killswitch
  policies_file: %q
  admin_listen: "127.0.0.1:%d"
  reconcile_interval: 1s
  alerts:
    webhooks: [{name: scrape, url: "http://127.0.0.1:1/hook", max_attempts: 1}]
gpu_agent:
  source: nvml
  interval: 1s
`, strings.Join(r.kcfg.Brokers, ", "), r.kcfg.TopicPrefix, strings.Join(r.chcfg.Addr, ", "), r.chcfg.Database,
		ingPort, filepath.Join(dir, "spool"), ingress.HashKey("tok-prom"), mockPort, policies, adminPort))
	ports := map[string]int{}
	for _, svc := range []string{"ingress", "sink", "meter", "killswitch", "gpu-agent"} {
		p, _ := localch.FreePort()
		ports[svc] = p
		startProc(t, []string{"E2E_UPSTREAM_KEY=sk-mock", "BURNRATE_ADMIN_TOKEN=x", fmt.Sprintf("BURNRATE_METRICS_LISTEN=127.0.0.1:%d", p)}, svc, "--config", cfg)
	}
	ingressURL := fmt.Sprintf("http://127.0.0.1:%d", ingPort)
	waitHTTP(t, ingressURL+"/healthz")
	rig := &ksRig{sinkRig: r, ingressURL: ingressURL, client: defaultClient()}
	// Calls until the tiny budget blocks the team, and a looping run.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code := rig.callAs("tok-prom", "gpt-4o-mini", "loop-1", "same prompt")
		if code == 429 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // a reconciliation, GPU agent retries, sink flushes
	out := map[string]bool{}
	for svc, p := range ports {
		m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", p))
		if len(m) == 0 {
			t.Errorf("%s exported no metrics", svc)
		}
		for series := range m {
			name := series
			if i := strings.IndexByte(name, '{'); i >= 0 {
				name = name[:i]
			}
			out[name] = true
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suf); ok {
					out[base] = true
				}
			}
		}
	}
	return out
}
