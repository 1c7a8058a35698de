package ingress

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkGatewayChat is the gateway's own work per non-streaming call
// (upstream in-process), so allocations on the request path show up.
func BenchmarkGatewayChat(b *testing.B) {
	h := newRig(b)
	body := chat("gpt-4o-mini", "")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokenPayments)
		w := httptest.NewRecorder()
		h.gw.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
