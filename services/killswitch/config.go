package killswitch

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/burnrate/burnrate/services/killswitch/alert"
)

// Config is the killswitch section of the config file.
type Config struct {
	// Group is the consumer group every `burnrate killswitch` replica joins
	// (spend.v1 and anomalies.v1).
	Group string `yaml:"group"`
	// PoliciesFile holds budgets and loop rules (see
	// deploy/policies.example.yaml); empty: no policies, so no verdicts
	// but manual ones.
	PoliciesFile string `yaml:"policies_file"`
	// PoliciesReload is how often the policies file is checked for changes;
	// a file that does not parse is reported and the previous policies stay.
	PoliciesReload time.Duration `yaml:"policies_reload"`
	// FlushInterval is the longest spend waits in an open transaction
	// before its verdicts go out; it adds to the time to block.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// SessionTimeout is the Kafka group session.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// LeaseQuiet: a lease is re-split (new shares for every ingress) only
	// after the budget's spend has not grown for this long, so spend still
	// in flight is not granted twice.
	LeaseQuiet time.Duration `yaml:"lease_quiet"`
	// AdminListen is the address of the admin API; empty disables it.
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenEnv names the environment variable holding the admin API's
	// bearer token; the API refuses to start without one.
	AdminTokenEnv string `yaml:"admin_token_env"`
	// ReconcileInterval is how often budget totals are compared with
	// ClickHouse (burnrate_killswitch_reconcile_drift_nano_usd); 0 turns it
	// off.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// Alerts are the webhooks budget events are sent to.
	Alerts alert.Config `yaml:"alerts"`
}

// DefaultConfig is the killswitch section when the file sets nothing.
func DefaultConfig() Config {
	return Config{
		Group:             "burnrate-killswitch",
		PoliciesReload:    5 * time.Second,
		FlushInterval:     100 * time.Millisecond,
		SessionTimeout:    10 * time.Second,
		LeaseQuiet:        time.Second,
		AdminListen:       "127.0.0.1:8081",
		AdminTokenEnv:     "BURNRATE_ADMIN_TOKEN",
		ReconcileInterval: 5 * time.Minute,
		Alerts:            alert.DefaultConfig(),
	}
}

// Validate names the bad field relative to the killswitch section.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Group == "" {
		add("group: must not be empty")
	}
	for name, d := range map[string]time.Duration{"policies_reload": c.PoliciesReload, "flush_interval": c.FlushInterval,
		"session_timeout": c.SessionTimeout, "lease_quiet": c.LeaseQuiet} {
		if d <= 0 {
			add("%s: must be > 0, got %s", name, d)
		}
	}
	if c.SessionTimeout > 0 && c.SessionTimeout < 6*time.Second {
		add("session_timeout: must be >= 6s (the broker's minimum), got %s", c.SessionTimeout)
	}
	if c.ReconcileInterval < 0 {
		add("reconcile_interval: must not be negative")
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			add("admin_listen: %q is not host:port", c.AdminListen)
		}
		if c.AdminTokenEnv == "" {
			add("admin_token_env: required with admin_listen")
		}
	}
	for _, e := range unjoin(c.Alerts.Validate()) {
		add("alerts.%w", e)
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
