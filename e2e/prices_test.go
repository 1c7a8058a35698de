package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segmentio/encoding/json"
)

func TestPricesQuoteCLI(t *testing.T) {
	out, err := burnrate(t, nil, "prices", "quote", "--provider", "anthropic", "--model", "claude-sonnet-4-5",
		"--usage", `{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":5000,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1500},"output_tokens":800}`)
	if err != nil {
		t.Fatalf("quote: %v\n%s", err, out)
	}
	var q struct {
		NanoUSD   int64 `json:"nano_usd"`
		Breakdown []struct {
			Category string `json:"category"`
			NanoUSD  int64  `json:"nano_usd"`
		} `json:"breakdown"`
	}
	if err := json.Unmarshal([]byte(out), &q); err != nil {
		t.Fatalf("quote output is not JSON: %v\n%s", err, out)
	}
	// 100×3000 + 5000×300 + 500×3750 + 1500×6000 + 800×15000
	if q.NanoUSD != 24_675_000 || len(q.Breakdown) != 5 {
		t.Errorf("quote %+v", q)
	}
	out, err = burnrate(t, nil, "prices", "quote", "--provider", "openai", "--model", "gpt-4o", "--usage", `{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":20}}`)
	if err == nil || !strings.Contains(out, "cached_tokens (20) exceeds prompt_tokens (10)") {
		t.Errorf("bad usage must fail naming the field: %v\n%s", err, out)
	}
}

func TestPricesImportAndList(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "imported.yaml")
	res, err := burnrate(t, nil, "prices", "import", "../schemas/prices/testdata/litellm_model_prices.json", "--out", out, "--version", "litellm-test")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, res)
	}
	if !strings.Contains(res, "skipped: dall-e-3") {
		t.Errorf("import does not list what it skipped:\n%s", res)
	}
	// The imported file works as an override.
	res, err = burnrate(t, nil, "prices", "list", "--override", out)
	if err != nil || !strings.Contains(res, "+litellm-test") || !strings.Contains(res, "meta-llama/Llama-3.3-70B-Instruct-Turbo") {
		t.Fatalf("list with override: %v\n%s", err, res)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func TestPricesLoadIntoClickHouse(t *testing.T) {
	chcfg := env.ClickHouseConfig(t)
	envs := []string{"BURNRATE_CLICKHOUSE_ADDR=" + strings.Join(chcfg.Addr, ","), "BURNRATE_CLICKHOUSE_DATABASE=" + chcfg.Database}
	if out, err := burnrate(t, envs, "migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	out, err := burnrate(t, envs, "prices", "load")
	if err != nil || !strings.Contains(out, "loaded") {
		t.Fatalf("prices load: %v\n%s", err, out)
	}
	out, err = burnrate(t, envs, "prices", "load")
	if err != nil || !strings.Contains(out, "already loaded") {
		t.Fatalf("second prices load: %v\n%s", err, out)
	}
}
