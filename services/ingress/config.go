package ingress

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config is the ingress section of the config file.
type Config struct {
	// Listen is the gateway's address.
	Listen string `yaml:"listen"`
	// MaxBodyBytes caps a request body (413 above it).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout and IdleTimeout protect the listener.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// UpstreamTimeout bounds one upstream attempt until its response
	// headers; a stream may then run as long as it keeps sending.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// FailOpen: while the verdict cache has not caught up, allow calls
	// (true) or refuse them (false).
	FailOpen bool `yaml:"fail_open"`
	// Keys are the virtual keys clients use (stored hashed).
	Keys []Key `yaml:"keys"`
	// Routes map the model names clients ask for to upstreams.
	Routes []Route `yaml:"routes"`
	// CheapRules send simple requests to a cheaper model.
	CheapRules []CheapRule `yaml:"cheap_rules"`
	// Spool keeps usage events on disk while Kafka is unreachable.
	Spool SpoolConfig `yaml:"spool"`
	// InstanceID names this ingress in its heartbeats (instances.v1), by
	// which the killswitch splits leases; empty: ingress-<host>-<pid>.
	InstanceID string `yaml:"instance_id"`
	// HeartbeatInterval is how often it announces itself; it stops
	// counting after three missed heartbeats.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// Key is one virtual key. Only the SHA-256 of the bearer token is kept.
type Key struct {
	ID string `yaml:"id"`
	// SHA256 is the hex SHA-256 of the token (`burnrate keys hash TOKEN`).
	SHA256 string `yaml:"sha256"`
	Team   string `yaml:"team"`
	App    string `yaml:"app"`
	Env    string `yaml:"env"`
	Org    string `yaml:"org"`
	// AllowedModels limits the model names the key may call; empty: all.
	AllowedModels []string `yaml:"allowed_models"`
	// MaxInputTokens refuses prompts estimated above it (400); 0: no cap.
	MaxInputTokens int64 `yaml:"max_input_tokens"`
	// MaxOutputTokens caps max_tokens of each call; 0: no cap.
	MaxOutputTokens int64 `yaml:"max_output_tokens"`
	// AttributionHeaders lets callers add user, customer, feature, agent
	// run and tags with X-Burnrate-* headers.
	AttributionHeaders bool `yaml:"attribution_headers"`
	// Feature, Customer and User are defaults when no header sets them.
	Feature  string `yaml:"feature"`
	Customer string `yaml:"customer"`
	User     string `yaml:"user"`
}

// Route sends one client-facing model name to an upstream.
type Route struct {
	// Model is the name clients ask for.
	Model string `yaml:"model"`
	// Provider: openai (any OpenAI-compatible server), azure or anthropic.
	// It is also the provider name prices are looked up under, unless
	// PriceAs is set.
	Provider string `yaml:"provider"`
	// PriceAs is the provider name in the price catalog (e.g. a vLLM
	// route priced as "vllm"); empty: Provider.
	PriceAs string `yaml:"price_as"`
	// UpstreamModel is the model name sent upstream (Azure: the
	// deployment); empty: Model.
	UpstreamModel string `yaml:"upstream_model"`
	// BaseURL: https://api.openai.com/v1, https://api.anthropic.com/v1,
	// https://NAME.openai.azure.com (Azure), http://vllm:8000/v1 ...
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv or APIKeyFile hold the provider credential; it never
	// reaches clients, logs or events.
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// AzureAPIVersion is the api-version query parameter (azure only).
	AzureAPIVersion string `yaml:"azure_api_version"`
	// Fallbacks are route models tried in order on upstream 5xx, 429 or
	// timeout, before any byte reached the client.
	Fallbacks []string `yaml:"fallbacks"`
}

// CheapRule routes a request for From to To when its estimated prompt is
// at most MaxPromptTokens and (with NoTools) it carries no tools.
type CheapRule struct {
	From            string `yaml:"from"`
	To              string `yaml:"to"`
	MaxPromptTokens int64  `yaml:"max_prompt_tokens"`
	NoTools         bool   `yaml:"no_tools"`
}

// SpoolConfig bounds the on-disk spool.
type SpoolConfig struct {
	Dir      string `yaml:"dir"`
	MaxBytes int64  `yaml:"max_bytes"`
	// WhenFull: "fail_closed" refuses calls while the spool is full;
	// "drop" keeps serving and drops events, counted and logged.
	WhenFull string `yaml:"when_full"`
}

// DefaultConfig is a gateway on :8080 with no keys and no routes.
func DefaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:8080",
		MaxBodyBytes:      8 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		UpstreamTimeout:   60 * time.Second,
		FailOpen:          true,
		Spool:             SpoolConfig{Dir: "burnrate-spool", MaxBytes: 1 << 30, WhenFull: "fail_closed"},
		HeartbeatInterval: 5 * time.Second,
	}
}

var providers = map[string]bool{"openai": true, "azure": true, "anthropic": true}

// Validate names the bad field relative to the ingress section.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !strings.Contains(c.Listen, ":") {
		add("listen: %q is not host:port", c.Listen)
	}
	if c.MaxBodyBytes <= 0 {
		add("max_body_bytes: must be > 0")
	}
	for name, d := range map[string]time.Duration{"read_header_timeout": c.ReadHeaderTimeout, "idle_timeout": c.IdleTimeout, "upstream_timeout": c.UpstreamTimeout, "heartbeat_interval": c.HeartbeatInterval} {
		if d <= 0 {
			add("%s: must be > 0", name)
		}
	}
	ids, hashes := map[string]bool{}, map[string]bool{}
	for i, k := range c.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		if k.ID == "" {
			add("%s.id: required", p)
		} else if ids[k.ID] {
			add("%s.id: %q is used twice", p, k.ID)
		}
		ids[k.ID] = true
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 {
			add("%s.sha256: want the 64-hex-digit SHA-256 of the token (burnrate keys hash TOKEN), not the token", p)
		} else if hashes[strings.ToLower(k.SHA256)] {
			add("%s.sha256: the same token hash is used by two keys", p)
		}
		hashes[strings.ToLower(k.SHA256)] = true
		if k.MaxInputTokens < 0 || k.MaxOutputTokens < 0 {
			add("%s: max_input_tokens and max_output_tokens must be >= 0", p)
		}
	}
	models := map[string]bool{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Model == "" {
			add("%s.model: required", p)
		} else if models[r.Model] {
			add("%s.model: %q is routed twice", p, r.Model)
		}
		models[r.Model] = true
		if !providers[r.Provider] {
			add("%s.provider: %q is not one of openai, azure, anthropic", p, r.Provider)
		}
		if u, err := url.Parse(r.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("%s.base_url: %q is not an http(s) URL", p, r.BaseURL)
		}
		if r.APIKeyEnv != "" && r.APIKeyFile != "" {
			add("%s: set api_key_env or api_key_file, not both", p)
		}
		if r.Provider == "azure" && r.AzureAPIVersion == "" {
			add("%s.azure_api_version: required for azure", p)
		}
	}
	for i, r := range c.Routes {
		for j, f := range r.Fallbacks {
			if !models[f] {
				add("routes[%d].fallbacks[%d]: %q is not a routed model", i, j, f)
			}
		}
	}
	for i, k := range c.Keys {
		for j, m := range k.AllowedModels {
			if !models[m] {
				add("keys[%d].allowed_models[%d]: %q is not a routed model", i, j, m)
			}
		}
	}
	for i, r := range c.CheapRules {
		if !models[r.From] || !models[r.To] {
			add("cheap_rules[%d]: from %q and to %q must both be routed models", i, r.From, r.To)
		}
		if r.MaxPromptTokens <= 0 {
			add("cheap_rules[%d].max_prompt_tokens: must be > 0", i)
		}
	}
	if c.Spool.Dir == "" {
		add("spool.dir: required")
	}
	if c.Spool.MaxBytes <= 0 {
		add("spool.max_bytes: must be > 0")
	}
	if c.Spool.WhenFull != "fail_closed" && c.Spool.WhenFull != "drop" {
		add("spool.when_full: %q is not fail_closed or drop", c.Spool.WhenFull)
	}
	return errors.Join(errs...)
}
