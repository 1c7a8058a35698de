package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config says how to reach ClickHouse over the native protocol.
type Config struct {
	// Addr is one or more host:port of the native (TCP) interface.
	Addr     []string `yaml:"addr"`
	Database string   `yaml:"database"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	TLS      bool     `yaml:"tls"`
	// DialTimeout bounds connecting; ReadTimeout bounds one query.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// DefaultConfig is a local server with the burnrate database.
func DefaultConfig() Config {
	return Config{
		Addr:        []string{"127.0.0.1:9000"},
		Database:    "burnrate",
		Username:    "default",
		DialTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second,
	}
}

// Validate names the bad field relative to the clickhouse section.
func (c Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, errors.New("addr: at least one host:port is required"))
	}
	for i, a := range c.Addr {
		if host, port, ok := strings.Cut(a, ":"); !ok || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("addr[%d]: %q is not host:port", i, a))
		}
	}
	if !identRE.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("database: %q is not a plain identifier (letters, digits, _)", c.Database))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, errors.New("dial_timeout: must not be negative"))
	}
	if c.ReadTimeout < 0 {
		errs = append(errs, errors.New("read_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}
