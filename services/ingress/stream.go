package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
)

// relayStream forwards an SSE body event by event (never buffered whole),
// flushing each, while it reads usage on the way: OpenAI's final usage
// chunk (dropped when the ingress added include_usage and the client had
// not asked for it) and Anthropic's message_start / cumulative
// message_delta. A stream that ends early gets estimated tokens.
func (g *Gateway) relayStream(w http.ResponseWriter, body io.Reader, c *call, upStart time.Time, clientWantsUsage bool) {
	flusher, _ := w.(http.Flusher)
	br := bufio.NewReaderSize(body, 32<<10)
	var event bytes.Buffer
	var anth normalize.AnthropicStream
	var openAITokens *events.Tokens
	// chunks estimates output tokens of an interrupted stream: providers
	// send about one token per content chunk.
	var chunks int64
	complete, first := false, true
	clientGone := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			event.Write(line)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		boundary := len(bytes.TrimSpace(line)) == 0 && event.Len() > 0
		if boundary || (err != nil && event.Len() > 0) {
			ev := event.Bytes()
			forward := true
			data := sseData(ev)
			chunks++
			switch {
			case bytes.Equal(data, []byte("[DONE]")):
				complete = true
			case c.ep.anthropic:
				if done := g.anthropicEvent(data, &anth); done {
					complete = true
				}
			case c.ep.responses:
				// Both terminal events carry the billed usage; incomplete
				// means the answer was cut (e.g. max_output_tokens), not the
				// stream.
				if bytes.Contains(data, []byte(`"response.completed"`)) || bytes.Contains(data, []byte(`"response.incomplete"`)) {
					var e struct {
						Response struct {
							Usage json.RawMessage `json:"usage"`
						} `json:"response"`
					}
					if json.Unmarshal(data, &e) == nil && len(e.Response.Usage) > 0 {
						if t, err := normalize.OpenAIResponsesUsage(e.Response.Usage); err == nil {
							openAITokens = &t
						}
					}
					complete = true
				}
			default:
				if bytes.Contains(data, []byte(`"usage"`)) {
					var chunk struct {
						Choices []json.RawMessage `json:"choices"`
						Usage   json.RawMessage   `json:"usage"`
					}
					if json.Unmarshal(data, &chunk) == nil && len(chunk.Usage) > 0 && string(chunk.Usage) != "null" {
						if t, err := normalize.OpenAIChatUsage(chunk.Usage); err == nil {
							openAITokens = &t
						}
						// The extra usage-only chunk the ingress asked for is
						// not the client's to see.
						if !clientWantsUsage && len(chunk.Choices) == 0 {
							forward = false
						}
					}
				}
			}
			if forward && !clientGone {
				if first {
					c.ttft = time.Since(upStart)
					first = false
				}
				if _, werr := w.Write(ev); werr != nil {
					clientGone = true
				} else if flusher != nil {
					flusher.Flush()
				}
			}
			event.Reset()
		}
		if err != nil {
			break
		}
	}
	switch {
	case c.ep.anthropic && anth.Seen():
		t, err := anth.Tokens()
		if err == nil {
			c.tokens = t
		}
	case openAITokens != nil:
		c.tokens = *openAITokens
	}
	if !complete || c.tokens == (events.Tokens{}) {
		// Interrupted (or no usage sent): estimate from what we saw.
		c.estimated = true
		if c.tokens == (events.Tokens{}) {
			c.tokens = events.Tokens{Input: c.req.estimatedPromptTokens(), Output: chunks}
		}
		if !complete {
			c.status = events.StatusUpstreamError
			c.errMsg = "stream ended before completion"
		}
	}
	if clientGone && c.errMsg == "" {
		c.errMsg = "client closed the stream"
	}
}

// sseData returns the data: payload of one SSE event (lines joined).
func sseData(ev []byte) []byte {
	var out []byte
	for len(ev) > 0 {
		i := bytes.IndexByte(ev, '\n')
		var line []byte
		if i < 0 {
			line, ev = ev, nil
		} else {
			line, ev = ev[:i], ev[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		if bytes.HasPrefix(line, []byte("data:")) {
			d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if out == nil {
				out = d
			} else {
				out = append(append(out, '\n'), d...)
			}
		}
	}
	return out
}

// anthropicEvent applies usage from message_start and message_delta;
// it reports message_stop.
func (g *Gateway) anthropicEvent(data []byte, s *normalize.AnthropicStream) bool {
	var e struct {
		Type    string `json:"type"`
		Message struct {
			Usage json.RawMessage `json:"usage"`
		} `json:"message"`
		Usage json.RawMessage `json:"usage"`
	}
	if json.Unmarshal(data, &e) != nil {
		return false
	}
	switch e.Type {
	case "message_start":
		if len(e.Message.Usage) > 0 {
			s.Start(e.Message.Usage)
		}
	case "message_delta":
		if len(e.Usage) > 0 {
			s.Delta(e.Usage)
		}
	case "message_stop":
		return true
	}
	return false
}
