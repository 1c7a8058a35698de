// Package mockupstream is a mock LLM provider for demos, tests and
// benchmarks: OpenAI- and Anthropic-shaped responses and streams with
// realistic usage, and X-Mock-* request headers that exercise every usage
// trap the ingress must handle. It must never be used as a real provider.
package mockupstream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
	"go.uber.org/zap"
)

// Config of the mock.
type Config struct {
	Listen string
	// Delay is added before every response (X-Mock-Delay overrides it).
	Delay time.Duration
	// StreamChunkDelay is the pause between streamed chunks.
	StreamChunkDelay time.Duration
	// Chunks is how many content chunks a stream sends (default 8).
	Chunks int
}

// Validate names the bad field.
func (c Config) Validate() error {
	if c.Listen != "" && !strings.Contains(c.Listen, ":") {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.Delay < 0 || c.StreamChunkDelay < 0 {
		return errors.New("delay and stream-chunk-delay: must not be negative")
	}
	return nil
}

// ParseFlags reads `burnrate mock-upstream` flags.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("burnrate mock-upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8081", "address to serve on")
	fs.DurationVar(&c.Delay, "delay", 0, "delay before every response")
	fs.DurationVar(&c.StreamChunkDelay, "stream-chunk-delay", 0, "pause between streamed chunks")
	fs.IntVar(&c.Chunks, "chunks", 8, "content chunks per stream")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *zap.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("mock-upstream: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("mock-upstream: %w", err)
	}
	srv := &http.Server{Handler: Handler(cfg), ReadHeaderTimeout: 10 * time.Second}
	log.Info("mock upstream listening", zap.String("addr", ln.Addr().String()))
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mock-upstream: %w", err)
	}
	return nil
}

type mock struct{ cfg Config }

// Handler serves the mock API.
func Handler(cfg Config) http.Handler {
	if cfg.Chunks <= 0 {
		cfg.Chunks = 8
	}
	m := &mock{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", m.openAI("chat"))
	mux.HandleFunc("POST /v1/completions", m.openAI("completion"))
	mux.HandleFunc("POST /v1/embeddings", m.openAI("embedding"))
	mux.HandleFunc("POST /v1/responses", m.openAI("response"))
	// Azure OpenAI's deployment paths.
	mux.HandleFunc("POST /openai/deployments/{deployment}/chat/completions", m.openAI("chat"))
	mux.HandleFunc("POST /openai/deployments/{deployment}/embeddings", m.openAI("embedding"))
	mux.HandleFunc("POST /v1/messages", m.anthropic)
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":0,"owned_by":"mock"},{"id":"claude-sonnet-4-5","object":"model","created":0,"owned_by":"mock"}]}`)
	})
	return mux
}

// request holds the fields the mock reads.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int64           `json:"max_tokens"`
	MaxCompletionTokens int64           `json:"max_completion_tokens"`
	MaxOutputTokens     int64           `json:"max_output_tokens"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
	System              json.RawMessage `json:"system"`
}

// knobs are the X-Mock-* headers.
type knobs struct {
	cached, reasoning, cacheWrite int64
	status                        int
	delay                         time.Duration
	interruptAfter                int
	usageWithChoices              bool
	incomplete                    bool // Responses streams end with response.incomplete
}

func readKnobs(h http.Header, def time.Duration) knobs {
	k := knobs{delay: def, interruptAfter: -1}
	num := func(name string) int64 { n, _ := strconv.ParseInt(h.Get(name), 10, 64); return n }
	k.cached, k.reasoning, k.cacheWrite = num("X-Mock-Cached-Tokens"), num("X-Mock-Reasoning-Tokens"), num("X-Mock-Cache-Write-Tokens")
	k.status = int(num("X-Mock-Status"))
	if d, err := time.ParseDuration(h.Get("X-Mock-Delay")); err == nil {
		k.delay = d
	}
	if v := h.Get("X-Mock-Interrupt-After"); v != "" {
		k.interruptAfter = int(num("X-Mock-Interrupt-After"))
	}
	k.usageWithChoices = h.Get("X-Mock-Usage-With-Choices") != ""
	k.incomplete = h.Get("X-Mock-Incomplete") != ""
	return k
}

func (r *request) promptTokens() int64 {
	n := int64(len(r.Messages)+len(r.Prompt)+len(r.Input)+len(r.System)) / 4
	if n < 1 {
		n = 1
	}
	return n
}

func (r *request) outputTokens() int64 {
	out := int64(64)
	for _, cap := range []int64{r.MaxCompletionTokens, r.MaxTokens, r.MaxOutputTokens} {
		if cap > 0 && cap < out {
			out = cap
		}
	}
	return out
}

func (m *mock) openAI(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, hr *http.Request) {
		if !strings.HasPrefix(hr.Header.Get("Authorization"), "Bearer ") && hr.Header.Get("Api-Key") == "" {
			writeJSON(w, 401, `{"error":{"message":"missing API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
			return
		}
		var req request
		body, _ := io.ReadAll(hr.Body)
		if err := json.Unmarshal(body, &req); err != nil || req.Model == "" {
			writeJSON(w, 400, `{"error":{"message":"invalid body","type":"invalid_request_error","param":null,"code":null}}`)
			return
		}
		k := readKnobs(hr.Header, m.cfg.Delay)
		if k.delay > 0 {
			time.Sleep(k.delay)
		}
		if k.status >= 400 {
			writeJSON(w, k.status, fmt.Sprintf(`{"error":{"message":"mock upstream error %d","type":"server_error","param":null,"code":null}}`, k.status))
			return
		}
		prompt, out := req.promptTokens()+k.cached, req.outputTokens()
		if k.reasoning > 0 {
			out += k.reasoning
		}
		usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":%d,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`,
			prompt, out, prompt+out, k.cached, k.reasoning)
		id := fmt.Sprintf("mock-%d", time.Now().UnixNano())
		switch kind {
		case "embedding":
			writeJSON(w, 200, fmt.Sprintf(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.0456,0.0789]}],"model":%q,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, req.Model, prompt, prompt))
		case "response":
			respUsage := fmt.Sprintf(`{"input_tokens":%d,"input_tokens_details":{"cached_tokens":%d},"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}`,
				prompt, k.cached, out, k.reasoning, prompt+out)
			if req.Stream {
				m.responsesStream(w, &req, k, id, respUsage)
				return
			}
			writeJSON(w, 200, fmt.Sprintf(`{"id":%q,"object":"response","created_at":%d,"status":"completed","model":%q,"output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"A mock answer.","annotations":[]}]}],"usage":{"input_tokens":%d,"input_tokens_details":{"cached_tokens":%d},"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}}`,
				id, time.Now().Unix(), req.Model, prompt, k.cached, out, k.reasoning, prompt+out))
		case "completion":
			writeJSON(w, 200, fmt.Sprintf(`{"id":%q,"object":"text_completion","created":%d,"model":%q,"choices":[{"text":" a mock completion.","index":0,"logprobs":null,"finish_reason":"length"}],"usage":%s}`, id, time.Now().Unix(), req.Model, usage))
		default:
			if req.Stream {
				m.openAIStream(w, &req, k, id, usage)
				return
			}
			writeJSON(w, 200, fmt.Sprintf(`{"id":%q,"object":"chat.completion","created":%d,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"A mock answer from the upstream.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":%s,"system_fingerprint":"fp_mock"}`,
				id, time.Now().Unix(), req.Model, usage))
		}
	}
}

func (m *mock) openAIStream(w http.ResponseWriter, req *request, k knobs, id, usage string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	created := time.Now().Unix()
	send := func(s string) {
		io.WriteString(w, "data: "+s+"\n\n")
		if fl != nil {
			fl.Flush()
		}
	}
	withUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	for i := 0; i < m.cfg.Chunks; i++ {
		if k.interruptAfter >= 0 && i >= k.interruptAfter {
			panic(http.ErrAbortHandler) // drop the connection mid-stream
		}
		if m.cfg.StreamChunkDelay > 0 {
			time.Sleep(m.cfg.StreamChunkDelay)
		}
		last := i == m.cfg.Chunks-1
		finish, u := "null", ""
		if last {
			finish = `"stop"`
			if withUsage && k.usageWithChoices {
				u = `,"usage":` + usage
			}
		}
		send(fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[{"index":0,"delta":{"content":"word%d "},"finish_reason":%s}]%s}`, id, created, req.Model, i, finish, u))
	}
	if withUsage && !k.usageWithChoices {
		send(fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[],"usage":%s}`, id, created, req.Model, usage))
	}
	send("[DONE]")
}

// responsesStream is a Responses API stream: response.created, text
// deltas, then response.completed, or response.incomplete (as when
// max_output_tokens cut the answer) with X-Mock-Incomplete; both carry the
// usage.
func (m *mock) responsesStream(w http.ResponseWriter, req *request, k knobs, id, usage string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	seq := 0
	send := func(typ, data string) {
		io.WriteString(w, "event: "+typ+"\ndata: "+data+"\n\n")
		if fl != nil {
			fl.Flush()
		}
		seq++
	}
	created := time.Now().Unix()
	send("response.created", fmt.Sprintf(`{"type":"response.created","sequence_number":%d,"response":{"id":%q,"object":"response","created_at":%d,"status":"in_progress","model":%q,"output":[],"usage":null}}`, seq, id, created, req.Model))
	for i := 0; i < m.cfg.Chunks; i++ {
		if k.interruptAfter >= 0 && i >= k.interruptAfter {
			panic(http.ErrAbortHandler)
		}
		if m.cfg.StreamChunkDelay > 0 {
			time.Sleep(m.cfg.StreamChunkDelay)
		}
		send("response.output_text.delta", fmt.Sprintf(`{"type":"response.output_text.delta","sequence_number":%d,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"word%d "}`, seq, i))
	}
	typ, status, details := "response.completed", "completed", "null"
	if k.incomplete {
		typ, status, details = "response.incomplete", "incomplete", `{"reason":"max_output_tokens"}`
	}
	send(typ, fmt.Sprintf(`{"type":%q,"sequence_number":%d,"response":{"id":%q,"object":"response","created_at":%d,"status":%q,"incomplete_details":%s,"model":%q,"output":[],"usage":%s}}`,
		typ, seq, id, created, status, details, req.Model, usage))
}

func (m *mock) anthropic(w http.ResponseWriter, hr *http.Request) {
	if hr.Header.Get("X-Api-Key") == "" && !strings.HasPrefix(hr.Header.Get("Authorization"), "Bearer ") {
		writeJSON(w, 401, `{"type":"error","error":{"type":"authentication_error","message":"x-api-key header is required"}}`)
		return
	}
	var req request
	body, _ := io.ReadAll(hr.Body)
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" {
		writeJSON(w, 400, `{"type":"error","error":{"type":"invalid_request_error","message":"invalid body"}}`)
		return
	}
	k := readKnobs(hr.Header, m.cfg.Delay)
	if k.delay > 0 {
		time.Sleep(k.delay)
	}
	if k.status >= 400 {
		writeJSON(w, k.status, `{"type":"error","error":{"type":"api_error","message":"mock upstream error"}}`)
		return
	}
	in, out := req.promptTokens(), req.outputTokens()
	id := fmt.Sprintf("msg_mock%d", time.Now().UnixNano())
	if !req.Stream {
		writeJSON(w, 200, fmt.Sprintf(`{"id":%q,"type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"A mock answer."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":%d}}`,
			id, req.Model, in, k.cacheWrite, k.cached, out))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	send := func(event, data string) {
		io.WriteString(w, "event: "+event+"\ndata: "+data+"\n\n")
		if fl != nil {
			fl.Flush()
		}
	}
	send("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":%q,"type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":1}}}`,
		id, req.Model, in, k.cacheWrite, k.cached))
	send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	for i := 0; i < m.cfg.Chunks; i++ {
		if k.interruptAfter >= 0 && i >= k.interruptAfter {
			panic(http.ErrAbortHandler)
		}
		if m.cfg.StreamChunkDelay > 0 {
			time.Sleep(m.cfg.StreamChunkDelay)
		}
		send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word%d "}}`, i))
		if i == m.cfg.Chunks/2 {
			// Usage in message_delta is cumulative: an early delta carries
			// a partial count that a later one replaces.
			send("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":null,"stop_sequence":null},"usage":{"output_tokens":%d}}`, out/2))
		}
	}
	send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	send("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, out))
	send("message_stop", `{"type":"message_stop"}`)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}
