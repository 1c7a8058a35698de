package alert

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	f := func(w Webhook, want string) {
		t.Helper()
		cfg := DefaultConfig()
		cfg.Webhooks = []Webhook{{URL: "https://example.com/ok"}, w}
		err := cfg.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("%+v: unexpected error %v", w, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%+v: error %v, want it to contain %q", w, err, want)
		}
	}
	f(Webhook{URL: "http://hooks.example.com/x", Format: "slack", Kinds: []string{KindExhausted}, MinSeverity: "warning", Timeout: time.Second}, "")
	f(Webhook{URLEnv: "SLACK_URL"}, "")
	f(Webhook{URL: "https://a.example", URLEnv: "SLACK_URL"}, "webhooks[1]: set one of url and url_env, not both")
	f(Webhook{}, "webhooks[1].url: must be set (or url_env)")
	f(Webhook{URL: "ftp://a.example/secret"}, `webhooks[1].url: scheme "ftp" is not http or https`)
	f(Webhook{URL: "https:///path"}, "webhooks[1].url: has no host")
	f(Webhook{URLEnv: "1BAD-NAME"}, `webhooks[1].url_env: "1BAD-NAME" is not an environment variable name`)
	f(Webhook{URL: "https://a.example", Format: "teams"}, `webhooks[1].format: "teams" is not one of json, slack`)
	f(Webhook{URL: "https://a.example", Kinds: []string{KindAnomaly, "budget"}}, `webhooks[1].kinds[1]: "budget" is not one of threshold,`)
	f(Webhook{URL: "https://a.example", MinSeverity: "error"}, `webhooks[1].min_severity: "error" is not one of info, warning, critical`)
	f(Webhook{URL: "https://a.example", Timeout: -time.Second}, "webhooks[1].timeout: -1s must not be negative")
	f(Webhook{URL: "https://a.example", MaxAttempts: -1}, "webhooks[1].max_attempts: -1 must not be negative")
	f(Webhook{URL: "https://a.example", BackoffMax: -time.Second}, "webhooks[1].backoff_max: -1s must not be negative")
	f(Webhook{URL: "https://a.example", Headers: map[string]string{"Bad Name": "x"}}, `webhooks[1].headers: "Bad Name" is not a header name`)
	f(Webhook{URL: "https://a.example", Headers: map[string]string{"X-Token": "a\r\nb"}}, "webhooks[1].headers.X-Token: value must not contain CR, LF or NUL")
	f(Webhook{URL: "https://a.example", Name: "webhook-0"}, `webhooks[1].name: "webhook-0" is already the name of webhooks[0]`)

	if err := (Config{QueueSize: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "queue_size: -1 must not be negative") {
		t.Fatalf("queue_size -1: error %v", err)
	}
}

func TestValidateHidesURL(t *testing.T) {
	cfg := Config{Webhooks: []Webhook{{URL: "gopher://hooks.example/T000/B000/secret"}}}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v: want one that does not quote the URL", err)
	}
}
