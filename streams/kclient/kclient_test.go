package kclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptions(t *testing.T) {
	ok := func(mutate func(*Config), wantOpts int) {
		t.Helper()
		cfg := DefaultConfig()
		mutate(&cfg)
		opts, err := Options(cfg, "sink")
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if len(opts) != wantOpts {
			t.Errorf("%+v: %d options, want %d", cfg, len(opts), wantOpts)
		}
	}
	ok(func(*Config) {}, 2)
	ok(func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Username: "u", Password: "p"} }, 3)
	ok(func(c *Config) { c.SASL = SASL{Mechanism: "SCRAM-SHA-256", Username: "u", Password: "p"} }, 3)
	ok(func(c *Config) {
		c.SASL = SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}
		c.TLS.Enabled = true
	}, 4)

	bad := func(mutate func(*Config), want string) {
		t.Helper()
		cfg := DefaultConfig()
		mutate(&cfg)
		_, err := Options(cfg, "x")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: got %v, want %q", cfg, err, want)
		}
	}
	bad(func(c *Config) { c.Brokers = nil }, "brokers: at least one")
	bad(func(c *Config) { c.Brokers = []string{"nohost"} }, `brokers[0]: "nohost" is not host:port`)
	bad(func(c *Config) { c.SASL.Mechanism = "GSSAPI" }, "sasl.mechanism")
	bad(func(c *Config) { c.SASL.Mechanism = "PLAIN" }, "sasl.username: required")
	bad(func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: "a.pem"} }, "tls.cert_file and tls.key_file")
	bad(func(c *Config) { c.TLS = TLS{CAFile: "ca.pem"} }, "tls.enabled: must be true")

	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	bad(func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: notPEM} }, "no PEM certificates")
	bad(func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")} }, "tls.ca_file")
}
