// Package config owns Burnrate's one configuration file: its format, the
// defaults, the environment overrides for addresses and secrets, and the
// validation that names the key path of every bad value.
//
// It must never log or print a secret (use Redacted), and never read any
// file other than the one it is given.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/ingress"
	"github.com/burnrate/burnrate/streams/kclient"
)

// File is the whole configuration file. Sections for the services are added
// by the issues that build them.
type File struct {
	Kafka      kclient.Config    `yaml:"kafka"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
	Log        Log               `yaml:"log"`
	Metrics    Metrics           `yaml:"metrics"`
	Prices     Prices            `yaml:"prices"`
	Ingress    ingress.Config    `yaml:"ingress"`
}

// Log configures zap.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or console.
	Format string `yaml:"format"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the address of /metrics; empty disables it.
	Listen string `yaml:"listen"`
}

// Prices configures the price catalog.
type Prices struct {
	// OverrideFile is merged over the shipped catalog (negotiated
	// discounts, private and self-hosted models); empty for none.
	OverrideFile string `yaml:"override_file"`
	// ReloadInterval is how often the override file is checked for changes.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Default returns the configuration used when a key is not set.
func Default() File {
	return File{
		Kafka:      kclient.DefaultConfig(),
		ClickHouse: clickhouse.DefaultConfig(),
		Log:        Log{Level: "info", Format: "json"},
		Metrics:    Metrics{Listen: "127.0.0.1:9464"},
		Prices:     Prices{ReloadInterval: 10 * time.Second},
		Ingress:    ingress.DefaultConfig(),
	}
}

// Validate checks every section; each problem names its key path.
func (f File) Validate() error {
	var errs []error
	section := func(name string, err error) {
		if err == nil {
			return
		}
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("%s.%w", name, e))
		}
	}
	section("kafka", f.Kafka.Validate())
	section("clickhouse", f.ClickHouse.Validate())
	section("ingress", f.Ingress.Validate())
	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", f.Log.Level))
	}
	switch f.Log.Format {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not one of json, console", f.Log.Format))
	}
	if f.Metrics.Listen != "" && !strings.Contains(f.Metrics.Listen, ":") {
		errs = append(errs, fmt.Errorf("metrics.listen: %q is not host:port", f.Metrics.Listen))
	}
	if f.Prices.ReloadInterval < 0 {
		errs = append(errs, errors.New("prices.reload_interval: must not be negative"))
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Env is one environment override.
type Env struct {
	Name        string
	Path        string
	Description string
	apply       func(f *File, v string)
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// EnvOverrides lists the variables that override the file, applied after
// it and before validation.
func EnvOverrides() []Env {
	return []Env{
		{"BURNRATE_KAFKA_BROKERS", "kafka.brokers", "seed brokers, comma-separated host:port", func(f *File, v string) { f.Kafka.Brokers = splitList(v) }},
		{"BURNRATE_KAFKA_TOPIC_PREFIX", "kafka.topic_prefix", "topic name prefix", func(f *File, v string) { f.Kafka.TopicPrefix = v }},
		{"BURNRATE_KAFKA_SASL_USERNAME", "kafka.sasl.username", "SASL user", func(f *File, v string) { f.Kafka.SASL.Username = v }},
		{"BURNRATE_KAFKA_SASL_PASSWORD", "kafka.sasl.password", "SASL password (secret)", func(f *File, v string) { f.Kafka.SASL.Password = v }},
		{"BURNRATE_CLICKHOUSE_ADDR", "clickhouse.addr", "native-protocol addresses, comma-separated host:port", func(f *File, v string) { f.ClickHouse.Addr = splitList(v) }},
		{"BURNRATE_CLICKHOUSE_DATABASE", "clickhouse.database", "database name", func(f *File, v string) { f.ClickHouse.Database = v }},
		{"BURNRATE_CLICKHOUSE_USERNAME", "clickhouse.username", "ClickHouse user", func(f *File, v string) { f.ClickHouse.Username = v }},
		{"BURNRATE_CLICKHOUSE_PASSWORD", "clickhouse.password", "ClickHouse password (secret)", func(f *File, v string) { f.ClickHouse.Password = v }},
		{"BURNRATE_METRICS_LISTEN", "metrics.listen", "address of /metrics", func(f *File, v string) { f.Metrics.Listen = v }},
		{"BURNRATE_INGRESS_LISTEN", "ingress.listen", "gateway address", func(f *File, v string) { f.Ingress.Listen = v }},
	}
}

// Load reads path (see Parse).
func Load(path string, lookup func(string) (string, bool)) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(b, lookup)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes data over the defaults, rejecting unknown keys and values of
// the wrong type with their key path, applies env overrides through lookup
// (nil: none) and validates.
func Parse(data []byte, lookup func(string) (string, bool)) (File, error) {
	f := Default()
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return File{}, fmt.Errorf("config: %w", err)
		}
		if len(root.Content) > 0 {
			doc := root.Content[0]
			if doc.Kind != yaml.MappingNode && !(doc.Kind == yaml.ScalarNode && doc.Tag == "!!null") {
				return File{}, fmt.Errorf("config: the file must be a mapping of sections (line %d)", doc.Line)
			}
			if err := errors.Join(check(doc, reflect.TypeOf(f), "")...); err != nil {
				return File{}, fmt.Errorf("config: %w", err)
			}
			if err := doc.Decode(&f); err != nil {
				return File{}, fmt.Errorf("config: %w", err)
			}
		}
	}
	if lookup != nil {
		for _, e := range EnvOverrides() {
			if v, ok := lookup(e.Name); ok && v != "" {
				e.apply(&f, v)
			}
		}
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	return f, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// check walks the YAML tree against the Go type and reports unknown keys and
// values that cannot decode, each with its dotted key path and line.
func check(n *yaml.Node, t reflect.Type, path string) []error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := func(format string, a ...any) error {
		p := path
		if p == "" {
			p = "(top level)"
		}
		return fmt.Errorf("%s: %s (line %d)", p, fmt.Sprintf(format, a...), n.Line)
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return []error{at("want a duration such as 250ms or 10s")}
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			return []error{at("%q is not a duration (e.g. 250ms, 10s, 1h)", n.Value)}
		}
		return nil
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []error{at("want a mapping of keys")}
		}
		fields := yamlFields(t)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", child, k.Line))
				continue
			}
			errs = append(errs, check(v, ft, child)...)
		}
		return errs
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{at("want a list")}
		}
		var errs []error
		for i, item := range n.Content {
			errs = append(errs, check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []error{at("want a mapping")}
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
		return errs
	default:
		if n.Kind != yaml.ScalarNode {
			return []error{at("want a single %s value", t.Kind())}
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return []error{at("%q is not a valid %s", n.Value, t.Kind())}
		}
		return nil
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps yaml keys to field types, following ",inline".
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(sf.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = sf.Type
	}
	return out
}

// Redacted returns a copy with every secret blanked, for logs.
func (f File) Redacted() File {
	if f.Kafka.SASL.Password != "" {
		f.Kafka.SASL.Password = "REDACTED"
	}
	if f.ClickHouse.Password != "" {
		f.ClickHouse.Password = "REDACTED"
	}
	return f
}
