package config

import "strings"

// Env is one environment variable that overrides a key of the file. The
// README's configuration reference is checked against EnvOverrides.
type Env struct {
	// Name is the variable, e.g. BURNRATE_KAFKA_BROKERS.
	Name string
	// Path is the key it overrides, e.g. kafka.brokers.
	Path string
	// Description says what the value is, for the reference table.
	Description string
	apply       func(f *File, v string)
}

// EnvOverrides lists the variables that override the file. They are applied
// after the file and before validation, in this order; an unset or empty
// variable leaves the key as the file (or the default) has it. List values
// are comma-separated.
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

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
