package events

import (
	"os"
	"testing"
)

func BenchmarkDecodeUsage(b *testing.B) {
	in, err := os.ReadFile(goldenPath("usage.v1.ok"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := DecodeUsage(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeUsage(b *testing.B) {
	u := validUsage()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Append(buf[:0], &u); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkValidateUsage(b *testing.B) {
	u := validUsage()
	b.ReportAllocs()
	for b.Loop() {
		if err := u.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
