package alert

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults of the fields whose zero value means "the default".
const (
	defaultQueueSize   = 1000
	defaultTimeout     = 5 * time.Second
	defaultMaxAttempts = 5
	defaultBackoffMax  = 30 * time.Second
)

const (
	// backoffStart is the wait after a first failed attempt.
	backoffStart = 500 * time.Millisecond
	// drainTimeout bounds the deliveries after Run's ctx is done.
	drainTimeout = 5 * time.Second
)

// formats are the webhook body formats; the first is the default.
var formats = [...]string{"json", "slack"}

// Config is the alerts section of the killswitch config.
type Config struct {
	Webhooks []Webhook `yaml:"webhooks"`
	// QueueSize is how many alerts may wait for delivery per webhook; past
	// it new alerts are dropped (counted and logged). 0 means 1000.
	QueueSize int `yaml:"queue_size"`
}

// Webhook is one receiver. Zero values mean the documented default.
type Webhook struct {
	// Name labels the webhook in metrics and logs; default "webhook-<index>".
	Name string `yaml:"name"`
	// URL is the http(s) endpoint. Exactly one of URL and URLEnv is set.
	URL string `yaml:"url"`
	// URLEnv names an environment variable holding the URL, read at New:
	// Slack URLs are secrets and stay out of the file.
	URLEnv string `yaml:"url_env"`
	// Format is json (the Alert as JSON, the default) or slack ({"text": ...}).
	Format string `yaml:"format"`
	// Kinds, when set, are the only alert kinds sent to this webhook.
	Kinds []string `yaml:"kinds"`
	// MinSeverity is the least severe alert sent: info (default), warning
	// or critical.
	MinSeverity string `yaml:"min_severity"`
	// Headers are extra request headers, e.g. Authorization. Their values
	// are never logged. Content-Type and User-Agent are fixed.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds each attempt; default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the attempts per alert; default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffMax caps the wait between attempts, Retry-After included;
	// default 30s. The wait starts at 500ms and doubles, with jitter.
	BackoffMax time.Duration `yaml:"backoff_max"`
}

// DefaultConfig returns the alerts defaults: no webhooks.
func DefaultConfig() Config {
	return Config{QueueSize: defaultQueueSize}
}

// name is the webhook's label: its Name or webhook-<i>.
func (w Webhook) name(i int) string {
	if w.Name != "" {
		return w.Name
	}
	return fmt.Sprintf("webhook-%d", i)
}

// Validate names the bad field relative to the alerts section. A url_env
// URL is read and checked at New, not here.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.QueueSize < 0 {
		add("queue_size: %d must not be negative", c.QueueSize)
	}
	names := map[string]int{}
	for i, w := range c.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		name := w.name(i)
		if j, dup := names[name]; dup {
			add("%s.name: %q is already the name of webhooks[%d]", p, name, j)
		} else {
			names[name] = i
		}
		switch {
		case w.URL != "" && w.URLEnv != "":
			add("%s: set one of url and url_env, not both", p)
		case w.URL != "":
			if err := checkURL(w.URL); err != nil {
				add("%s.url: %w", p, err)
			}
		case w.URLEnv != "":
			if !isEnvName(w.URLEnv) {
				add("%s.url_env: %q is not an environment variable name", p, w.URLEnv)
			}
		default:
			add("%s.url: must be set (or url_env)", p)
		}
		if w.Format != "" && !slices.Contains(formats[:], w.Format) {
			add("%s.format: %q is not one of %s", p, w.Format, strings.Join(formats[:], ", "))
		}
		for j, k := range w.Kinds {
			if !slices.Contains(kinds[:], k) {
				add("%s.kinds[%d]: %q is not one of %s", p, j, k, strings.Join(kinds[:], ", "))
			}
		}
		if w.MinSeverity != "" && !slices.Contains(severities[:], w.MinSeverity) {
			add("%s.min_severity: %q is not one of %s", p, w.MinSeverity, strings.Join(severities[:], ", "))
		}
		for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
			switch {
			case !isToken(k):
				add("%s.headers: %q is not a header name", p, k)
			case strings.ContainsAny(w.Headers[k], "\r\n\x00"):
				// The value is not quoted: it may be a secret.
				add("%s.headers.%s: value must not contain CR, LF or NUL", p, k)
			}
		}
		if w.Timeout < 0 {
			add("%s.timeout: %s must not be negative", p, w.Timeout)
		}
		if w.MaxAttempts < 0 {
			add("%s.max_attempts: %d must not be negative", p, w.MaxAttempts)
		}
		if w.BackoffMax < 0 {
			add("%s.backoff_max: %s must not be negative", p, w.BackoffMax)
		}
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL. Its errors never quote the URL,
// which may be a secret (a Slack webhook's path is its credential).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.Host == "":
		return errors.New("has no host")
	}
	return nil
}

func isEnvName(s string) bool {
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// isToken reports whether s is an HTTP header name (RFC 9110 token).
func isToken(s string) bool {
	for _, r := range s {
		if r > '~' || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return s != ""
}
