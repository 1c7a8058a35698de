package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const examplePath = "../../deploy/config.example.yaml"

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// sameConfig compares two Files as the YAML they stand for, so a nil and
// an empty list (keys: []) are the same.
func sameConfig(t *testing.T, got, want File) {
	t.Helper()
	g, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("configs differ:\ngot:\n%s\nwant:\n%s", g, w)
	}
}

func TestExampleIsTheDefaults(t *testing.T) {
	f, err := Load(examplePath, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	sameConfig(t, f, Default())
}

// The example shows every key of File with a comment, and names every
// environment override, so it cannot go stale.
func TestExampleHasEveryKey(t *testing.T) {
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			keys[p] = n.Content[i]
			walk(n.Content[i+1], p)
		}
	}
	walk(root.Content[0], "")

	var want func(t reflect.Type, path string)
	want = func(typ reflect.Type, path string) {
		for name, ft := range yamlFields(typ) {
			p := join(path, name)
			k, ok := keys[p]
			if !ok {
				t.Errorf("%s lacks %s", examplePath, p)
				continue
			}
			if ft.Kind() == reflect.Struct {
				want(ft, p) // a section: its keys carry the comments
			} else if k.HeadComment == "" && k.LineComment == "" {
				t.Errorf("%s: %s (line %d) has no comment", examplePath, p, k.Line)
			}
		}
	}
	want(reflect.TypeFor[File](), "")

	for _, e := range EnvOverrides() {
		if !strings.Contains(string(b), e.Name) {
			t.Errorf("%s does not mention %s", examplePath, e.Name)
		}
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	for _, in := range []string{"", " \n\t\n", "# only a comment\n", "---\n", "~\n", "{}\n", "kafka:\nsink: ~\n"} {
		f, err := Parse([]byte(in), noEnv)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		sameConfig(t, f, Default())
	}
	f, err := Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameConfig(t, f, Default())
}

func TestValuesOverDefaults(t *testing.T) {
	f, err := Parse([]byte(`
kafka:
  brokers: ["k1:9092", "k2:9092"]
  sasl: {mechanism: SCRAM-SHA-512, username: burnrate}
clickhouse:
  read_timeout: 1m30s
meter:
  flush_interval: "100ms"
gpu_agent:
  source: dcgm-exporter
  interval: 2s
  node: gpu-7
sink:
  batch_rows: 500
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Kafka.Brokers = []string{"k1:9092", "k2:9092"}
	want.Kafka.SASL.Mechanism, want.Kafka.SASL.Username = "SCRAM-SHA-512", "burnrate"
	want.ClickHouse.ReadTimeout = 90 * time.Second
	want.Meter.FlushInterval = 100 * time.Millisecond
	want.GPUAgent.Source, want.GPUAgent.Interval, want.GPUAgent.Node = "dcgm-exporter", 2*time.Second, "gpu-7"
	want.Sink.BatchRows = 500
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %+v\nwant %+v", f, want)
	}
}

func TestBadInputNamesTheKeyPath(t *testing.T) {
	// f checks the whole message: one line per problem.
	f := func(in string, want ...string) {
		t.Helper()
		_, err := Parse([]byte(in), noEnv)
		if err == nil {
			t.Fatalf("%q parsed", in)
		}
		if got := err.Error(); got != strings.Join(want, "\n") {
			t.Errorf("%q:\ngot  %s\nwant %s", in, got, strings.Join(want, "\n"))
		}
	}

	// Unknown keys, at every depth, with a hint when it looks like a typo.
	f("kafkaa: {}\n", "config: kafkaa: unknown key (line 1); did you mean kafka?")
	f("tracing: {}\n", "config: tracing: unknown key (line 1)")
	f("log:\n  colour: true\n", "config: log.colour: unknown key (line 2)")
	f("kafka:\n  brokers: [\"a:1\"]\n  sasl:\n    mechanizm: PLAIN\n",
		"config: kafka.sasl.mechanizm: unknown key (line 4); did you mean mechanism?")
	f("ingress:\n  routes:\n    - model: a\n      providr: openai\n",
		"config: ingress.routes[0].providr: unknown key (line 4); did you mean provider?")
	f("ingress:\n  spool:\n    max_byte: 1\n",
		"config: ingress.spool.max_byte: unknown key (line 3); did you mean max_bytes?")

	// Values of the wrong type.
	f("clickhouse:\n  tls: maybe\n", `config: clickhouse.tls: "maybe" is not a valid bool (line 2)`)
	f("sink:\n  batch_rows: lots\n", `config: sink.batch_rows: "lots" is not a valid int (line 2)`)
	f("ingress:\n  max_body_bytes: 1e99\n", `config: ingress.max_body_bytes: "1e99" is not a valid int64 (line 2)`)
	f("kafka:\n  brokers: 127.0.0.1:9092\n", "config: kafka.brokers: want a list (line 2)")
	f("kafka:\n  client_id: [a, b]\n", "config: kafka.client_id: want a single string value (line 2)")
	f("kafka: 3\n", "config: kafka: want a mapping of keys (line 1)")
	f("- a\n- b\n", "config: the file must be a mapping of sections (line 1)")

	// Durations are Go duration strings.
	f("meter:\n  flush_interval: fast\n", `config: meter.flush_interval: "fast" is not a duration (e.g. 250ms, 10s, 1h) (line 2)`)
	f("gpu_agent:\n  interval: 10\n", `config: gpu_agent.interval: "10" is not a duration (e.g. 250ms, 10s, 1h) (line 2)`)
	f("sink:\n  batch_interval: [1s]\n", "config: sink.batch_interval: want a duration such as 250ms or 10s (line 2)")

	// Enums and other rules of Validate, with the line when the file set it.
	f("log:\n  level: loud\n", `config: log.level: "loud" is not one of debug, info, warn, error (line 2)`)
	f("gpu_agent:\n  source: rocm\n", `config: gpu_agent.source: "rocm" is not one of dcgm, dcgm-exporter, nvml, auto (line 2)`)
	f("kafka:\n  sasl:\n    mechanism: GSSAPI\n",
		`config: kafka.sasl.mechanism: unknown "GSSAPI" (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) (line 3)`)
	f("gpu_agent:\n  source: dcgm-exporter\n  exporter_url: \"\"\n", "config: gpu_agent.exporter_url: required with source dcgm-exporter (line 3)")
	f("meter:\n  flush_interval: -1s\n", "config: meter.flush_interval: -1s must be > 0 (line 2)")

	// List items are named by index.
	f("clickhouse:\n  addr: [\"127.0.0.1:9000\", \"x\"]\n", `config: clickhouse.addr[1]: "x" is not host:port (line 2)`)
	f("kafka:\n  brokers:\n    - a:1\n    - [b]\n", "config: kafka.brokers[1]: want a single string value (line 4)")
	f("ingress:\n  keys:\n    - id: k\n      allowed_models: [a, {b: c}]\n",
		"config: ingress.keys[0].allowed_models[1]: want a single string value (line 4)")

	// A key set twice is a mistake, not "last one wins".
	f("log:\n  level: info\n  level: debug\n", "config: log.level: set twice, first at line 2 (line 3)")

	// Every problem is reported, not only the first.
	f("log:\n  levle: info\nsink:\n  batch_rows: x\n",
		"config: log.levle: unknown key (line 2); did you mean level?",
		`config: sink.batch_rows: "x" is not a valid int (line 4)`)
	f("log:\n  level: loud\n  format: xml\nmetrics:\n  listen: nowhere\n",
		`config: log.level: "loud" is not one of debug, info, warn, error (line 2)`,
		`config: log.format: "xml" is not one of json, console (line 3)`,
		`config: metrics.listen: "nowhere" is not host:port (line 5)`)

	// One document per file.
	f("log: {level: info}\n---\nlog: {level: debug}\n", "config: a second YAML document starts at line 2; the file must hold one")
}

func TestSyntaxErrors(t *testing.T) {
	for _, in := range []string{"kafka: [\n", "a: b: c\n", "\tkafka: {}\n", "kafka: *nope\n"} {
		_, err := Parse([]byte(in), noEnv)
		if err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestManyProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("log:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  k%d: 1\n", i)
	}
	_, err := Parse([]byte(b.String()), noEnv)
	if err == nil {
		t.Fatal("parsed")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxProblems+1 || lines[maxProblems] != "config: stopped after 20 problems; there may be more" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}

	// Validation problems are all known, and counted.
	env := map[string]string{"BURNRATE_KAFKA_BROKERS": strings.Repeat("x,", 30)}
	_, err = Parse(nil, envOf(env))
	lines = strings.Split(err.Error(), "\n")
	if len(lines) != maxProblems+1 || lines[maxProblems] != "config: and 10 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestAnchorsAndMerges(t *testing.T) {
	f, err := Parse([]byte(`
kafka:
  brokers: &hosts ["h1:1", "h2:2"]
clickhouse:
  addr: *hosts
ingress:
  routes:
    - &base {model: a, provider: openai, base_url: "http://up:8000/v1"}
    - {<<: *base, model: b}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.ClickHouse.Addr, []string{"h1:1", "h2:2"}) {
		t.Errorf("alias: %v", f.ClickHouse.Addr)
	}
	if r := f.Ingress.Routes; len(r) != 2 || r[1].Model != "b" || r[1].Provider != "openai" || r[1].BaseURL != "http://up:8000/v1" {
		t.Errorf("merge: %+v", r)
	}

	// Merged keys are checked against the mapping they land in.
	_, err = Parse([]byte("sink: &s\n  batch_rows: 5\nmeter:\n  <<: *s\n"), noEnv)
	if want := "config: meter.batch_rows: unknown key (line 2)"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// A few hundred bytes of aliases can stand for a billion values; the walk
// gives up early instead.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("ingress:\n  keys:\n    - &k {id: a, allowed_models: &m [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("x")
	}
	b.WriteString("]}\n")
	for range 2000 {
		b.WriteString("    - *k\n")
	}
	start := time.Now()
	_, err := Parse([]byte(b.String()), noEnv)
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("got %.200v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"BURNRATE_KAFKA_BROKERS":       "k1:9092, k2:9092,",
		"BURNRATE_KAFKA_SASL_USERNAME": "svc",
		"BURNRATE_KAFKA_SASL_PASSWORD": "s3cret",
		"BURNRATE_KAFKA_TOPIC_PREFIX":  "", // empty: the file's value stays
		"BURNRATE_CLICKHOUSE_ADDR":     "ch:9000",
		"BURNRATE_CLICKHOUSE_DATABASE": "finance",
		"BURNRATE_CLICKHOUSE_USERNAME": "writer",
		"BURNRATE_CLICKHOUSE_PASSWORD": "pw",
		"BURNRATE_METRICS_LISTEN":      ":9999",
		"BURNRATE_INGRESS_LISTEN":      "0.0.0.0:80",
	}
	f, err := Parse([]byte("kafka:\n  brokers: [\"file:9092\"]\n  topic_prefix: prod.\n  sasl: {mechanism: PLAIN, username: fromfile}\n"), envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Kafka.Brokers = []string{"k1:9092", "k2:9092"}
	want.Kafka.TopicPrefix = "prod."
	want.Kafka.SASL = f.Kafka.SASL
	want.Kafka.SASL.Mechanism, want.Kafka.SASL.Username, want.Kafka.SASL.Password = "PLAIN", "svc", "s3cret"
	want.ClickHouse.Addr = []string{"ch:9000"}
	want.ClickHouse.Database, want.ClickHouse.Username, want.ClickHouse.Password = "finance", "writer", "pw"
	want.Metrics.Listen = ":9999"
	want.Ingress.Listen = "0.0.0.0:80"
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %+v\nwant %+v", f, want)
	}

	// An override is validated like the file, and the error names it
	// rather than the line it replaced.
	bad := func(env map[string]string, in, want string) {
		t.Helper()
		_, err := Parse([]byte(in), envOf(env))
		if err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
	bad(map[string]string{"BURNRATE_CLICKHOUSE_DATABASE": "drop table"}, "clickhouse:\n  database: ok\n",
		`config: clickhouse.database: "drop table" is not a plain identifier (letters, digits, _) (from BURNRATE_CLICKHOUSE_DATABASE)`)
	bad(map[string]string{"BURNRATE_CLICKHOUSE_ADDR": "a:1,nohost"}, "clickhouse:\n  addr: [\"x:1\", \"y:2\"]\n",
		`config: clickhouse.addr[1]: "nohost" is not host:port (from BURNRATE_CLICKHOUSE_ADDR)`)
	bad(map[string]string{"BURNRATE_KAFKA_BROKERS": " , "}, "",
		"config: kafka.brokers: at least one seed broker is required (from BURNRATE_KAFKA_BROKERS)")
}

// Each override's Path is the key its apply sets, so the documented table
// is true.
func TestEnvOverridePaths(t *testing.T) {
	for _, e := range EnvOverrides() {
		f := Default()
		e.apply(&f, "v1:1")
		var tree map[string]any
		b, _ := yaml.Marshal(f)
		if err := yaml.Unmarshal(b, &tree); err != nil {
			t.Fatal(err)
		}
		var got any = tree
		for _, k := range strings.Split(e.Path, ".") {
			m, ok := got.(map[string]any)
			if !ok {
				t.Fatalf("%s: %s is not a key path", e.Name, e.Path)
			}
			got = m[k]
		}
		if fmt.Sprint(got) != "v1:1" && fmt.Sprint(got) != "[v1:1]" {
			t.Errorf("%s sets %s to %v", e.Name, e.Path, got)
		}
		if !strings.HasPrefix(e.Name, "BURNRATE_") || e.Description == "" {
			t.Errorf("%+v", e)
		}
	}
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

func TestRedactedHidesSecrets(t *testing.T) {
	f := Default()
	f.Kafka.SASL.Password = "kafka-hunter2"
	f.ClickHouse.Password = "ch-hunter2"
	r := f.Redacted()
	out, _ := yaml.Marshal(r)
	for _, s := range []string{string(out), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secrets leak:\n%s", s)
		}
	}
	if r.Kafka.SASL.Password != "REDACTED" || Default().Redacted().Kafka.SASL.Password != "" {
		t.Error("Redacted should show whether a secret is set, and nothing more")
	}
	if f.Kafka.SASL.Password != "kafka-hunter2" || f.ClickHouse.Password != "ch-hunter2" {
		t.Error("Redacted changed the original")
	}
}

// Any string field whose key looks secret must be blanked by Redacted, so a
// section that adds one cannot forget it.
func TestRedactedCoversEverySecretLookingKey(t *testing.T) {
	f := Default()
	var secrets []string
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		for i := 0; i < v.NumField(); i++ {
			sf := v.Type().Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			p := join(path, name)
			switch fv := v.Field(i); {
			case sf.Type.Kind() == reflect.Struct:
				fill(fv, p)
			case sf.Type.Kind() == reflect.String && secretLooking(name):
				fv.SetString("hunter2-" + p)
				secrets = append(secrets, p)
			}
		}
	}
	fill(reflect.ValueOf(&f).Elem(), "")
	if len(secrets) < 2 {
		t.Fatalf("found only %v", secrets)
	}
	out := fmt.Sprintf("%+v", f.Redacted())
	for _, p := range secrets {
		if strings.Contains(out, "hunter2-"+p) {
			t.Errorf("Redacted does not hide %s", p)
		}
	}
}

func secretLooking(key string) bool {
	for _, w := range []string{"password", "secret", "token", "api_key"} {
		if strings.Contains(key, w) && !strings.HasSuffix(key, "_env") && !strings.HasSuffix(key, "_file") {
			return true
		}
	}
	return false
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "burnrate.yaml")
	if err := os.WriteFile(path, []byte("meter:\n  flush_interval: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path, envOf(map[string]string{"BURNRATE_INGRESS_LISTEN": ":8000"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.Meter.FlushInterval != time.Second || f.Ingress.Listen != ":8000" {
		t.Errorf("%+v %+v", f.Meter, f.Ingress.Listen)
	}

	if err := os.WriteFile(path, []byte("meter:\n  flush_interval: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, noEnv)
	if want := "config: " + path + `: meter.flush_interval: "soon" is not a duration (e.g. 250ms, 10s, 1h) (line 2)`; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"), noEnv)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"kafka:\n  brokers: [\"a:1\"]\n",
		"prices: {reload_interval: 5s}\n",
		"ingress:\n  routes:\n    - &r {model: a, provider: openai, base_url: \"http://x\"}\n    - {<<: *r, model: b}\n",
		"log: {level: info}\n---\n",
		"gpu_agent: {interval: 0}\n",
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, noEnv)
		if err != nil {
			// The walk accepts only what yaml.v3 decodes, so decoding never
			// fails without a key path.
			if strings.Contains(err.Error(), "unmarshal errors") {
				t.Fatalf("decode error escaped the key-path check: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
	})
}
