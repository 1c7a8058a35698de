package mockupstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/segmentio/encoding/json"
)

func post(t *testing.T, srv *httptest.Server, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestShapesAndKnobs(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{}))
	defer srv.Close()
	_, b := post(t, srv, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":5}`,
		"X-Mock-Cached-Tokens", "3", "X-Mock-Reasoning-Tokens", "2")
	var r struct {
		Usage struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
			Details    struct {
				Cached int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
			CDetails struct {
				Reasoning int64 `json:"reasoning_tokens"`
			} `json:"completion_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		t.Fatal(err)
	}
	u := r.Usage
	if u.Details.Cached != 3 || u.Prompt <= 3 || u.CDetails.Reasoning != 2 || u.Completion != 7 {
		t.Errorf("usage %+v (prompt includes cached, completion includes reasoning)", u)
	}
	// Streams: usage only when asked, on a usage-only chunk.
	_, b = post(t, srv, "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`)
	if strings.Contains(b, `"usage"`) || !strings.HasSuffix(b, "data: [DONE]\n\n") {
		t.Errorf("stream without include_usage: %s", b)
	}
	_, b = post(t, srv, "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`)
	if !strings.Contains(b, `"choices":[],"usage":{`) {
		t.Errorf("stream with include_usage: %s", b)
	}
	resp, _ := post(t, srv, "/v1/chat/completions", `{"model":"m","messages":[]}`, "X-Mock-Status", "503")
	if resp.StatusCode != 503 {
		t.Errorf("X-Mock-Status: %d", resp.StatusCode)
	}
	// Anthropic: cumulative message_delta usage, cache fields apart from input.
	_, b = post(t, srv, "/v1/messages", `{"model":"c","max_tokens":10,"stream":true,"messages":[]}`, "X-Mock-Cached-Tokens", "7")
	if strings.Count(b, "event: message_delta") != 2 || !strings.Contains(b, `"cache_read_input_tokens":7`) || !strings.Contains(b, `"output_tokens":10}`) {
		t.Errorf("anthropic stream: %s", b)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/messages", strings.NewReader(`{"model":"c","max_tokens":1,"messages":[]}`))
	resp, _ = http.DefaultClient.Do(req)
	if resp.StatusCode != 401 {
		t.Errorf("no key: %d", resp.StatusCode)
	}
}
