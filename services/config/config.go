// Package config owns Burnrate's one configuration file: its format and
// defaults, the environment overrides for addresses and secrets, and the
// validation that names the key path (and line) of every bad value.
//
// Sections that belong to a service are that service's Config type (kafka,
// clickhouse and ingress already are); the others are small structs here
// until their service is built, each with its own Validate, so moving one is
// a cut and paste.
//
// The package must never log or print a secret (hand File.Redacted to
// loggers), and never reads any file other than the one Load is given:
// files named inside the config (policies, TLS, price overrides) are read by
// the services that use them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/gpuagent"
	"github.com/burnrate/burnrate/services/ingress"
	"github.com/burnrate/burnrate/services/killswitch"
	"github.com/burnrate/burnrate/services/meter"
	"github.com/burnrate/burnrate/services/sink"
	"github.com/burnrate/burnrate/streams/kclient"
)

// File is the whole configuration file.
type File struct {
	Kafka      kclient.Config    `yaml:"kafka"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
	Log        Log               `yaml:"log"`
	Metrics    Metrics           `yaml:"metrics"`
	Prices     Prices            `yaml:"prices"`
	Ingress    ingress.Config    `yaml:"ingress"`
	Sink       sink.Config       `yaml:"sink"`
	Meter      meter.Config      `yaml:"meter"`
	Killswitch killswitch.Config `yaml:"killswitch"`
	GPUAgent   gpuagent.Config   `yaml:"gpu_agent"`
}

// Log configures zap.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or console.
	Format string `yaml:"format"`
}

// Validate names the bad field relative to the log section.
func (l Log) Validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("level: %q is not one of debug, info, warn, error", l.Level))
	}
	switch l.Format {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("format: %q is not one of json, console", l.Format))
	}
	return errors.Join(errs...)
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the address of /metrics; empty disables it.
	Listen string `yaml:"listen"`
}

// Validate names the bad field relative to the metrics section.
func (m Metrics) Validate() error {
	if m.Listen != "" && !isHostPort(m.Listen) {
		return fmt.Errorf("listen: %q is not host:port", m.Listen)
	}
	return nil
}

// Prices configures the price catalog.
type Prices struct {
	// OverrideFile is merged over the shipped catalog (negotiated
	// discounts, private and self-hosted models); empty for none.
	OverrideFile string `yaml:"override_file"`
	// ReloadInterval is how often the override file is checked for changes.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Validate names the bad field relative to the prices section.
func (p Prices) Validate() error {
	if p.ReloadInterval < 0 {
		return errors.New("reload_interval: must not be negative")
	}
	return nil
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
		Sink:       sink.DefaultConfig(),
		Meter:      meter.DefaultConfig(),
		Killswitch: killswitch.DefaultConfig(),
		GPUAgent:   gpuagent.DefaultConfig(),
	}
}

// Validate checks every section and reports all problems, each prefixed
// with its key path (kafka.brokers[0]: ...).
func (f File) Validate() error {
	var errs []error
	section := func(name string, err error) {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("%s.%w", name, e))
		}
	}
	section("kafka", f.Kafka.Validate())
	section("clickhouse", f.ClickHouse.Validate())
	section("log", f.Log.Validate())
	section("metrics", f.Metrics.Validate())
	section("prices", f.Prices.Validate())
	section("ingress", f.Ingress.Validate())
	section("sink", f.Sink.Validate())
	section("meter", f.Meter.Validate())
	section("killswitch", f.Killswitch.Validate())
	section("gpu_agent", f.GPUAgent.Validate())
	return errors.Join(errs...)
}

// Redacted returns a copy with every secret replaced, safe to log. The
// original is not changed.
func (f File) Redacted() File {
	f.Kafka.SASL.Password = redact(f.Kafka.SASL.Password)
	f.ClickHouse.Password = redact(f.ClickHouse.Password)
	return f
}

// redact keeps "is it set?" visible without the value.
func redact(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// Load reads the file at path and parses it like Parse; errors name the
// file. lookup is os.LookupEnv in production.
func Load(path string, lookup func(string) (string, bool)) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	f, errs := parse(b, lookup)
	if len(errs) > 0 {
		return File{}, prefixAll("config: "+path+": ", errs)
	}
	return f, nil
}

// Parse decodes data over Default(), rejecting unknown keys and values that
// do not fit with their key path and line, applies the environment overrides
// of EnvOverrides through lookup (nil: none), and validates the result.
// Every problem found is reported, one per line of the error.
func Parse(data []byte, lookup func(string) (string, bool)) (File, error) {
	f, errs := parse(data, lookup)
	if len(errs) > 0 {
		return File{}, prefixAll("config: ", errs)
	}
	return f, nil
}

func parse(data []byte, lookup func(string) (string, bool)) (File, []error) {
	f := Default()
	origins := map[string]string{} // key path -> "line N" or "from VAR"
	if len(bytes.TrimSpace(data)) > 0 {
		doc, err := document(data)
		if err != nil {
			return File{}, []error{err}
		}
		if doc != nil {
			if errs := checkNode(doc, origins); len(errs) > 0 {
				return File{}, errs
			}
			if err := doc.Decode(&f); err != nil {
				// checkNode accepts only what decodes; reaching this is a bug
				// there, but still an error rather than a panic.
				return File{}, []error{err}
			}
		}
	}
	if lookup != nil {
		for _, e := range EnvOverrides() {
			if v, ok := lookup(e.Name); ok && v != "" {
				e.apply(&f, v)
				for p := range origins {
					if p == e.Path || strings.HasPrefix(p, e.Path+".") || strings.HasPrefix(p, e.Path+"[") {
						delete(origins, p)
					}
				}
				origins[e.Path] = "from " + e.Name
			}
		}
	}
	errs := unjoin(f.Validate())
	for i, e := range errs {
		if o := originOf(e.Error(), origins); o != "" {
			errs[i] = fmt.Errorf("%w (%s)", e, o)
		}
	}
	if len(errs) > 0 {
		return File{}, errs
	}
	return f, nil
}

// document returns the single YAML document of data as a mapping node, or
// nil when it is empty.
func document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("a second YAML document starts at line %d; the file must hold one", next.Line)
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	doc := root.Content[0]
	if doc.Kind == yaml.ScalarNode && doc.ShortTag() == "!!null" {
		return nil, nil
	}
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the file must be a mapping of sections (line %d)", doc.Line)
	}
	return doc, nil
}

// originOf finds where the value named by a validation message came from:
// the exact key's line in the file, or the environment variable that set it
// or one of its parents.
func originOf(msg string, origins map[string]string) string {
	path, _, ok := strings.Cut(msg, ": ")
	if !ok {
		return ""
	}
	if o := origins[path]; strings.HasPrefix(o, "line ") {
		return o
	}
	for p := path; p != ""; p = parent(p) {
		if o := origins[p]; strings.HasPrefix(o, "from ") {
			return o
		}
	}
	return ""
}

func parent(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

// maxProblems keeps a hopeless file from producing a wall of errors.
const maxProblems = 20

func prefixAll(prefix string, errs []error) error {
	out := make([]error, 0, min(len(errs), maxProblems+1))
	for i, e := range errs {
		if i == maxProblems && len(errs) > maxProblems+1 {
			out = append(out, fmt.Errorf("%sand %d more problems", prefix, len(errs)-maxProblems))
			break
		}
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// isHostPort accepts host:port and :port with a numeric port.
func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}
