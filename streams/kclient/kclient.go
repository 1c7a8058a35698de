// Package kclient builds franz-go clients from Burnrate's kafka config:
// seed brokers, SASL (PLAIN, SCRAM), TLS and client id, in one place.
//
// It never logs credentials and never creates topics (see ktopics).
package kclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Options turns the config into franz-go options; service is appended to
// the client id so brokers can tell the services apart.
func Options(cfg Config, service string) ([]kgo.Opt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	id := cfg.ClientID
	if service != "" {
		id += "-" + service
	}
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID(id)}
	switch cfg.SASL.Mechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsSha512Mechanism()))
	}
	if cfg.TLS.Enabled {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// New builds a client; extra options (consumer group, producer settings)
// come after the connection options.
func New(cfg Config, service string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := Options(cfg, service)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

func tlsConfig(c TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls.ca_file: no PEM certificates in %s", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// NewGroupTransactSession is New for a transactional consumer group
// (kgo.GroupTransactSession): consume, produce and commit offsets in one
// Kafka transaction.
func NewGroupTransactSession(cfg Config, service string, extra ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	opts, err := Options(cfg, service)
	if err != nil {
		return nil, err
	}
	s, err := kgo.NewGroupTransactSession(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka transactional session: %w", err)
	}
	return s, nil
}
