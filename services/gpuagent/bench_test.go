package gpuagent

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkScrapeAndPrice is one interval of an 8-GPU node: parse the
// dcgm-exporter fixture and price and attribute every GPU.
func BenchmarkScrapeAndPrice(b *testing.B) {
	fixture, err := os.ReadFile("testdata/exporter/v2-k8s.prom")
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Node = "bench"
	cfg.Attribution = []Rule{{Namespace: "ml-*", Team: "ml"}}
	a := testAgent(b, cfg)
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := ParseExporter(bytes.NewReader(fixture))
		if err != nil {
			b.Fatal(err)
		}
		a.src.(*fixedSource).rs = rs
		if _, err := a.sample(context.Background(), at); err != nil {
			b.Fatal(err)
		}
	}
}
