package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func noEnv(string) (string, bool) { return "", false }

func TestExampleIsTheDefaults(t *testing.T) {
	b, err := os.ReadFile("../../deploy/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, Default()) {
		t.Errorf("the example differs from Default():\nexample %+v\ndefault %+v", f, Default())
	}
	// Every key of File appears in the example, so it cannot go stale.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			present[p] = true
			walk(n.Content[i+1], p)
		}
	}
	walk(root.Content[0], "")
	for _, key := range allKeys(reflect.TypeOf(File{}), "") {
		if !present[key] {
			t.Errorf("deploy/config.example.yaml lacks %s", key)
		}
	}
	for _, e := range EnvOverrides() {
		if !strings.Contains(string(b), e.Name) {
			t.Errorf("the example does not mention %s", e.Name)
		}
		if !present[e.Path] {
			t.Errorf("%s overrides %s, which is not a key", e.Name, e.Path)
		}
	}
}

func allKeys(t reflect.Type, path string) []string {
	var out []string
	for name, ft := range yamlFields(t) {
		p := join(path, name)
		out = append(out, p)
		if ft.Kind() == reflect.Struct && ft != durationType {
			out = append(out, allKeys(ft, p)...)
		}
	}
	return out
}

func TestEmptyFileIsDefaults(t *testing.T) {
	for _, in := range []string{"", "\n# only a comment\n", "---\n"} {
		f, err := Parse([]byte(in), noEnv)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(f, Default()) {
			t.Errorf("%q: %+v", in, f)
		}
	}
}

func TestBadInputNamesTheKeyPath(t *testing.T) {
	f := func(in string, wants ...string) {
		t.Helper()
		_, err := Parse([]byte(in), noEnv)
		if err == nil {
			t.Fatalf("%q parsed", in)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", in, err, w)
			}
		}
	}
	f("kafka:\n  brokers: [\"a:1\"]\n  sasl:\n    mechanizm: PLAIN\n", "kafka.sasl.mechanizm: unknown key (line 4)")
	f("kafkaa: {}\n", "kafkaa: unknown key (line 1)")
	f("prices:\n  reload_interval: fast\n", `prices.reload_interval: "fast" is not a duration (e.g. 250ms, 10s, 1h) (line 2)`)
	f("clickhouse:\n  addr: [\"127.0.0.1:9000\", \"x\"]\n", `clickhouse.addr[1]: "x" is not host:port`)
	f("clickhouse:\n  tls: maybe\n", `clickhouse.tls: "maybe" is not a valid bool (line 2)`)
	f("kafka:\n  brokers: 127.0.0.1:9092\n", "kafka.brokers: want a list (line 2)")
	f("kafka:\n  sasl:\n    mechanism: GSSAPI\n", `kafka.sasl.mechanism: unknown "GSSAPI"`)
	f("log:\n  level: loud\n", `log.level: "loud" is not one of`)
	// Several problems are reported together.
	f("log:\n  level: loud\n  format: xml\nmetrics:\n  listen: nowhere\n", "log.level", "log.format", "metrics.listen")
	f("- a\n- b\n", "must be a mapping")
	f("kafka: [\n", "config:")
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"BURNRATE_KAFKA_BROKERS":       "k1:9092, k2:9092",
		"BURNRATE_KAFKA_SASL_PASSWORD": "s3cret",
		"BURNRATE_CLICKHOUSE_ADDR":     "ch:9000",
		"BURNRATE_CLICKHOUSE_PASSWORD": "pw",
		"BURNRATE_CLICKHOUSE_DATABASE": "finance",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	f, err := Parse([]byte("kafka:\n  brokers: [\"file:9092\"]\n  sasl: {mechanism: PLAIN, username: u}\n"), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || f.Kafka.SASL.Password != "s3cret" ||
		!reflect.DeepEqual(f.ClickHouse.Addr, []string{"ch:9000"}) || f.ClickHouse.Password != "pw" || f.ClickHouse.Database != "finance" {
		t.Errorf("overrides not applied: %+v", f)
	}
	// An override is validated like the file.
	env["BURNRATE_CLICKHOUSE_DATABASE"] = "drop table"
	if _, err := Parse(nil, lookup); err == nil || !strings.Contains(err.Error(), "clickhouse.database") {
		t.Errorf("bad override accepted: %v", err)
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	f := Default()
	f.Kafka.SASL.Password = "kafka-secret"
	f.ClickHouse.Password = "ch-secret"
	r := f.Redacted()
	out, _ := yaml.Marshal(r)
	if strings.Contains(string(out), "secret") {
		t.Errorf("secrets leak:\n%s", out)
	}
	if f.Kafka.SASL.Password != "kafka-secret" {
		t.Error("Redacted changed the original")
	}
}

func TestDurationsParse(t *testing.T) {
	f, err := Parse([]byte("prices:\n  reload_interval: 1m30s\nclickhouse:\n  read_timeout: 2s\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if f.Prices.ReloadInterval != 90*time.Second || f.ClickHouse.ReadTimeout != 2*time.Second {
		t.Errorf("%+v %+v", f.Prices, f.ClickHouse)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/config.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("kafka:\n  brokers: [\"a:1\"]\n"))
	f.Add([]byte("prices: {reload_interval: 5s}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, noEnv)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
	})
}

// The README's table of environment overrides is the one in code.
func TestREADMEListsEnvOverrides(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range EnvOverrides() {
		row := "| `" + e.Name + "` | `" + e.Path + "` | " + e.Description + " |"
		if !strings.Contains(string(b), row) {
			t.Errorf("README lacks the row %s", row)
		}
	}
}
