package spool

import (
	"testing"
)

// event is a usage event of the typical size.
var event = Record{Key: []byte("run_01JD6Q2Z8XK3"), Value: make([]byte, 500)}

func BenchmarkAppend(b *testing.B) {
	for _, p := range []SyncPolicy{SyncInterval, SyncNone, SyncEveryAppend} {
		b.Run(p.String(), func(b *testing.B) {
			s := open(b, Options{Dir: b.TempDir(), MaxBytes: 1 << 40, Sync: p})
			b.ReportAllocs()
			b.SetBytes(int64(len(event.Key) + len(event.Value)))
			for b.Loop() {
				if err := s.Append(event); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplay measures Peek+Commit of 500-byte records in batches of
// 1000, as the emitter replays.
func BenchmarkReplay(b *testing.B) {
	s := open(b, Options{Dir: b.TempDir(), MaxBytes: 1 << 40})
	for range b.N {
		if err := s.Append(event); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(event.Key) + len(event.Value)))
	b.ResetTimer()
	n := 0
	for n < b.N {
		rs, cur, err := s.Peek(1000)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(cur); err != nil {
			b.Fatal(err)
		}
		n += len(rs)
	}
}
