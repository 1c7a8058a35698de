package kclient

import (
	"errors"
	"fmt"
	"strings"
)

// Config says how to reach the Kafka cluster. Every service reads the same
// section of the config file.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// ClientID is sent to the brokers; the service name is appended.
	ClientID string `yaml:"client_id"`
	// TopicPrefix is prepended to every catalog topic name.
	TopicPrefix string `yaml:"topic_prefix"`
	SASL        SASL   `yaml:"sasl"`
	TLS         TLS    `yaml:"tls"`
}

// SASL selects SASL authentication; an empty mechanism means none.
type SASL struct {
	// Mechanism is one of "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// TLS enables TLS to the brokers.
type TLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle; empty uses the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile enable mutual TLS when both are set.
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// DefaultConfig is what a fresh install uses: a local broker and the
// burnrate. prefix.
func DefaultConfig() Config {
	return Config{
		Brokers:     []string{"127.0.0.1:9092"},
		ClientID:    "burnrate",
		TopicPrefix: "burnrate.",
	}
}

// Validate names the first bad field of each problem, relative to the kafka
// section of the config file.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one seed broker is required"))
	}
	for i, b := range c.Brokers {
		if host, port, ok := strings.Cut(b, ":"); !ok || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q is not host:port", i, b))
		}
	}
	if strings.ContainsAny(c.TopicPrefix, " /\\,") {
		errs = append(errs, fmt.Errorf("topic_prefix: %q may contain only letters, digits, '.', '_' and '-'", c.TopicPrefix))
	}
	switch c.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("sasl.username: required with mechanism %s", c.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: unknown %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", c.SASL.Mechanism))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file: set both or neither"))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "") {
		errs = append(errs, errors.New("tls.enabled: must be true when tls files are set"))
	}
	return errors.Join(errs...)
}
