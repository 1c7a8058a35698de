package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func rec(i int) Record {
	return Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("value-%06d-%s", i, "padding-padding-padding"))}
}

func drain(t *testing.T, s *Spool) []Record {
	t.Helper()
	var all []Record
	for {
		rs, cur, err := s.Peek(7)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 && s.Len() == 0 {
			return all
		}
		all = append(all, rs...)
	}
}

func TestOrderAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Commit the first 10, then restart: 90 remain, in order.
	rs, cur, err := s.Peek(10)
	if err != nil || len(rs) != 10 {
		t.Fatalf("peek %d %v", len(rs), err)
	}
	if err := s.Commit(cur); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 90 {
		t.Fatalf("after restart %d records, want 90", s.Len())
	}
	got := drain(t, s)
	for i, r := range got {
		if string(r.Value) != string(rec(i+10).Value) || string(r.Key) != string(rec(i+10).Key) {
			t.Fatalf("record %d = %s", i, r.Value)
		}
	}
	if len(got) != 90 || s.Bytes() != 0 {
		t.Fatalf("%d records drained, %d bytes left", len(got), s.Bytes())
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) > 1 {
		t.Errorf("consumed segments not deleted: %v", segs)
	}
}

func TestBound(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), MaxBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if err := s.Append(rec(n)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if n == 0 || s.Bytes() > 300 {
		t.Fatalf("%d appended, %d bytes", n, s.Bytes())
	}
	_, cur, _ := s.Peek(1)
	s.Commit(cur)
	if err := s.Append(rec(0)); err != nil {
		t.Errorf("room freed by commit not reused: %v", err)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(Options{Dir: dir, MaxBytes: 1 << 20})
	for i := 0; i < 5; i++ {
		s.Append(rec(i))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	fi, _ := os.Stat(segs[0])
	os.Truncate(segs[0], fi.Size()-5)
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 4 {
		t.Fatalf("%d records after a torn tail, want 4", s.Len())
	}
	if got := drain(t, s); len(got) != 4 || string(got[3].Value) != string(rec(3).Value) {
		t.Errorf("%d records", len(got))
	}
	// Corruption in the middle is detected, not returned.
	s.Append(rec(10))
	s.Append(rec(11))
	s.Close()
	segs, _ = filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(segs[len(segs)-1])
	b[len(b)-3] ^= 0xff
	os.WriteFile(segs[len(segs)-1], b, 0o644)
	s, _ = Open(Options{Dir: dir, MaxBytes: 1 << 20})
	if s.Len() != 1 {
		t.Errorf("%d records after corrupting the last one, want 1", s.Len())
	}
}

func TestConcurrentAppendAndReplay(t *testing.T) {
	s, _ := Open(Options{Dir: t.TempDir(), MaxBytes: 1 << 24, SegmentBytes: 4096})
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := s.Append(rec(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []Record
	for len(got) < n {
		rs, cur, err := s.Peek(100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rs...)
		s.Commit(cur)
	}
	wg.Wait()
	for i, r := range got {
		if string(r.Value) != string(rec(i).Value) {
			t.Fatalf("record %d out of order: %s", i, r.Value)
		}
	}
}

func FuzzOpenSegment(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'k', 'v'})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644)
		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		drain(t, s)
		s.Close()
	})
}

func BenchmarkAppend(b *testing.B) {
	s, _ := Open(Options{Dir: b.TempDir(), MaxBytes: 1 << 40})
	r := Record{Key: []byte("run-123"), Value: make([]byte, 500)}
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Value)))
	for i := 0; i < b.N; i++ {
		if err := s.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}
