package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.P50 != 50*time.Millisecond || p.P90 != 90*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Errorf("%+v", p)
	}
}

func TestRunCountsAndErrors(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer k" || r.Header.Get("X-Extra") != "1" {
			w.WriteHeader(401)
			return
		}
		if n%10 == 0 {
			w.WriteHeader(500)
			return
		}
		if strings.Contains(r.URL.Path, "stream") {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: {}\n\ndata: [DONE]\n\n"))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Target: srv.URL + "/v1/chat/completions", Rate: 200, Duration: time.Second, Key: "k",
		Headers: map[string]string{"X-Extra": "1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 200 || res.OK+res.Errors != 200 || res.ErrorsByKind["status_500"] != 20 {
		t.Errorf("%+v", res)
	}
	res, err = Run(context.Background(), Config{Target: srv.URL + "/stream", Rate: 50, Duration: time.Second, Key: "k", Stream: true,
		Headers: map[string]string{"X-Extra": "1"}}, nil)
	if err != nil || res.TTFB == nil || res.Sent != 50 {
		t.Errorf("stream: %+v %v", res, err)
	}
}

func TestValidate(t *testing.T) {
	if _, err := Run(context.Background(), Config{Target: "ftp://x", Rate: 0, Duration: 0}, nil); err == nil ||
		!strings.Contains(err.Error(), "target") || !strings.Contains(err.Error(), "rate") || !strings.Contains(err.Error(), "duration") {
		t.Errorf("%v", err)
	}
}
