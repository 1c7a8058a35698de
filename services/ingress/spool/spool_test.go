package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rec is record i: its index in the key, a value whose size varies with i.
func rec(i int) Record {
	v := bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*37)%600)
	return Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(v, "|%d", i)}
}

func open(t testing.TB, o Options) *Spool {
	t.Helper()
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t testing.TB, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain peeks and commits batches of up to batch records until the spool
// is empty, checking that Peek never comes back empty while Len() > 0.
func drain(t testing.TB, s *Spool, batch int) []Record {
	t.Helper()
	var all []Record
	for s.Len() > 0 {
		rs, cur, err := s.Peek(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 || len(rs) > batch {
			t.Fatalf("Peek(%d) = %d records with Len() = %d", batch, len(rs), s.Len())
		}
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		all = append(all, rs...)
	}
	return all
}

// checkRecords fails unless got is records from, from+1, ...
func checkRecords(t testing.TB, got []Record, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d records, want %d", len(got), n)
	}
	for i, r := range got {
		want := rec(from + i)
		if !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) {
			t.Fatalf("record %d is %q, want %q", i, r.Key, want.Key)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func TestOrderAcrossSegments(t *testing.T) {
	f := func(segBytes int64, n, batch int) {
		t.Helper()
		dir := t.TempDir()
		s := open(t, Options{Dir: dir, SegmentBytes: segBytes})
		appendN(t, s, 0, n)
		if s.Len() != int64(n) {
			t.Fatalf("Len() = %d, want %d", s.Len(), n)
		}
		if segs := len(segFiles(t, dir)); segBytes != 0 && segBytes < 1<<20 && segs < 3 {
			t.Fatalf("%d segment files with SegmentBytes %d", segs, segBytes)
		}
		checkRecords(t, drain(t, s, batch), 0, n)
		if s.Len() != 0 || s.Bytes() != 0 {
			t.Fatalf("drained spool: Len() = %d, Bytes() = %d", s.Len(), s.Bytes())
		}
		if segs := segFiles(t, dir); len(segs) != 1 {
			t.Fatalf("consumed segments left behind: %v", segs)
		}
		// The drained spool takes new records.
		appendN(t, s, n, n+10)
		checkRecords(t, drain(t, s, batch), n, 10)
	}
	f(0, 1000, 1000)    // one segment
	f(1000, 1000, 7)    // several records per segment, batches across them
	f(1000, 1000, 1000) // one Peek spans segments
	f(1, 200, 3)        // one record per segment
	f(64<<10, 5000, 1)
}

func TestPeekIsRepeatableAndLargeRecords(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), SegmentBytes: 1 << 20})
	big := Record{Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 3<<20)} // larger than a segment and a read chunk
	for _, r := range []Record{rec(0), big, rec(2)} {
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	a, _, err := s.Peek(2)
	if err != nil {
		t.Fatal(err)
	}
	b, cur, err := s.Peek(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || len(b) != 2 || !bytes.Equal(a[1].Value, big.Value) || !bytes.Equal(b[1].Value, big.Value) {
		t.Fatalf("peeks differ or lose the large record: %d, %d records", len(a), len(b))
	}
	if err := s.Commit(cur); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, drain(t, s, 10), 2, 1)
	if _, err := Open(Options{Dir: t.TempDir(), MaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(Record{Value: make([]byte, maxRecordBytes+1)}); err == nil {
		t.Fatal("record over the limit accepted")
	}
}

func TestBound(t *testing.T) {
	f := func(maxBytes, segBytes int64) {
		t.Helper()
		s := open(t, Options{Dir: t.TempDir(), MaxBytes: maxBytes, SegmentBytes: segBytes})
		n := 0
		for ; ; n++ {
			err := s.Append(rec(n))
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Bytes() > maxBytes {
				t.Fatalf("Bytes() = %d over MaxBytes %d", s.Bytes(), maxBytes)
			}
		}
		if n < 2 {
			t.Fatalf("only %d records fit in %d bytes", n, maxBytes)
		}
		if got := testutil.ToFloat64(s.m.full); got != 1 {
			t.Fatalf("full_total = %v, want 1", got)
		}
		// Committing frees room (a segment at a time).
		rs, cur, err := s.Peek(n - 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(rec(n)); err != nil {
			t.Fatalf("after committing %d of %d records: %v", len(rs), n, err)
		}
		checkRecords(t, drain(t, s, 3), len(rs), n+1-len(rs))
	}
	f(4000, 0)       // SegmentBytes capped at MaxBytes/8
	f(4000, 1)       // a segment per record
	f(64<<10, 8<<10) // several records per segment
	f(1500, 0)       // room for a few records

	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 100})
	if err := s.Append(Record{Value: make([]byte, 200)}); !errors.Is(err, ErrFull) {
		t.Fatalf("record larger than the spool: %v, want ErrFull", err)
	}
}

func TestRestart(t *testing.T) {
	f := func(o Options, n, commit int) {
		t.Helper()
		o.Dir = t.TempDir()
		s := open(t, o)
		appendN(t, s, 0, n)
		rs, cur, err := s.Peek(commit)
		if err != nil || len(rs) != commit {
			t.Fatalf("Peek(%d) = %d records, %v", commit, len(rs), err)
		}
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		// A Peek not committed before the restart is replayed after it.
		if _, _, err := s.Peek(5); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, o)
		if s.Len() != int64(n-commit) {
			t.Fatalf("after restart Len() = %d, want %d", s.Len(), n-commit)
		}
		appendN(t, s, n, n+10)
		rs, cur, err = s.Peek(1)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, rs, commit, 1)
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, o)
		checkRecords(t, drain(t, s, 9), commit+1, n+10-commit-1)
		s.Close()
		s = open(t, o)
		if s.Len() != 0 || s.Bytes() != 0 {
			t.Fatalf("drained spool reopened: Len() = %d, Bytes() = %d", s.Len(), s.Bytes())
		}
	}
	f(Options{}, 100, 30)
	f(Options{SegmentBytes: 2000}, 100, 30) // cursor in a middle segment
	f(Options{SegmentBytes: 2000}, 100, 100)
	f(Options{SegmentBytes: 2000, Sync: SyncEveryAppend}, 50, 1)
	f(Options{SegmentBytes: 2000, Sync: SyncNone}, 50, 49)
}

func TestCrashWithoutClose(t *testing.T) {
	// Appends reach the OS before Append returns: a process that dies
	// without Close loses nothing.
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 4000, Sync: SyncNone})
	appendN(t, s, 0, 50)
	_, cur, _ := s.Peek(20)
	if err := s.Commit(cur); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, Options{Dir: dir, SegmentBytes: 4000})
	checkRecords(t, drain(t, s2, 100), 20, 30)
}

func TestTornTail(t *testing.T) {
	f := func(cut int64) {
		t.Helper()
		dir := t.TempDir()
		s := open(t, Options{Dir: dir, SegmentBytes: 4000})
		appendN(t, s, 0, 30)
		s.Close()
		segs := segFiles(t, dir)
		last := segs[len(segs)-1]
		fi, err := os.Stat(last)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(last, fi.Size()-cut); err != nil {
			t.Fatal(err)
		}
		var reports []error
		o := Options{Dir: dir, SegmentBytes: 4000, OnCorrupt: func(err error) { reports = append(reports, err) }}
		s = open(t, o)
		if got := testutil.ToFloat64(s.m.corrupt); got != 1 || len(reports) != 1 || !errors.Is(reports[0], ErrCorrupt) {
			t.Fatalf("corrupt_records_total = %v, reports %v; want 1 report", got, reports)
		}
		if s.Len() != 29 {
			t.Fatalf("Len() = %d after a torn tail, want 29", s.Len())
		}
		// The tail was cut: appends go on after the last intact record.
		appendN(t, s, 29, 40)
		s.Close()
		reports = nil
		s = open(t, o)
		if got := testutil.ToFloat64(s.m.corrupt); got != 0 || len(reports) != 0 {
			t.Fatalf("second open found damage again: %v", reports)
		}
		checkRecords(t, drain(t, s, 8), 0, 40)
	}
	f(1)                                             // inside the value
	f(5)                                             // inside the value
	f(int64(len(rec(29).Value)) + 2)                 // inside the key
	f(int64(len(rec(29).Value)) + 3 + headerLen - 1) // inside the header
}

// flip corrupts one byte of the file at off.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// frameOffset is where record k of a segment holding records first.. starts.
func frameOffset(first, k int) int64 {
	var off int64
	for i := first; i < first+k; i++ {
		r := rec(i)
		off += int64(headerLen + len(r.Key) + len(r.Value))
	}
	return off
}

func TestCorruptMiddleAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 1})
	appendN(t, s, 0, 3) // one record per segment: 0, 1, 2
	s.Close()
	// Same layout with several records per segment: corrupt the 3rd
	// record of the middle segment.
	dir = t.TempDir()
	s = open(t, Options{Dir: dir, SegmentBytes: 3000})
	appendN(t, s, 0, 40)
	s.Close()
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	// Find which records the second segment holds.
	s = open(t, Options{Dir: dir, SegmentBytes: 3000})
	first := int(s.segs[0].count)
	inMiddle := int(s.segs[1].count)
	s.Close()
	flip(t, segs[1], frameOffset(first, 2)+headerLen+1)

	var reports []string
	s = open(t, Options{Dir: dir, SegmentBytes: 3000, OnCorrupt: func(err error) { reports = append(reports, err.Error()) }})
	if got := testutil.ToFloat64(s.m.corrupt); got != 1 || len(reports) != 1 || !strings.Contains(reports[0], "checksum mismatch") {
		t.Fatalf("corrupt_records_total = %v, reports %q", got, reports)
	}
	got := drain(t, s, 1000)
	lost := inMiddle - 2
	if len(got) != 40-lost {
		t.Fatalf("%d records, want %d (all but the %d from the damaged one on)", len(got), 40-lost, lost)
	}
	checkRecords(t, got[:first+2], 0, first+2)
	checkRecords(t, got[first+2:], first+inMiddle, 40-first-inMiddle)
}

func TestCorruptWhileRunning(t *testing.T) {
	dir := t.TempDir()
	var reports []error
	s := open(t, Options{Dir: dir, SegmentBytes: 3000, OnCorrupt: func(err error) { reports = append(reports, err) }})
	appendN(t, s, 0, 40)
	first, second := int(s.segs[0].count), int(s.segs[1].count)
	// Damage record 1 of the first segment and record 0 of the second.
	flip(t, segFiles(t, dir)[0], frameOffset(0, 1)+5)
	flip(t, segFiles(t, dir)[1], 3)

	var got []Record
	errs := 0
	for s.Len() > 0 {
		rs, cur, err := s.Peek(1000)
		if errors.Is(err, ErrCorrupt) {
			errs++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rs...)
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
	}
	if errs != 2 || len(reports) != 2 {
		t.Fatalf("%d Peek errors, %d reports; want 2 each", errs, len(reports))
	}
	if c := testutil.ToFloat64(s.m.corrupt); c != float64(first-1+second) {
		t.Fatalf("corrupt_records_total = %v, want %d", c, first-1+second)
	}
	checkRecords(t, got[:1], 0, 1)
	checkRecords(t, got[1:], first+second, 40-first-second)
	if s.Bytes() != 0 {
		t.Fatalf("Bytes() = %d after draining", s.Bytes())
	}
}

func TestBadCursorFileReplaysFromOldest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	appendN(t, s, 0, 10)
	_, cur, _ := s.Peek(4)
	if err := s.Commit(cur); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	var reports []error
	s = open(t, Options{Dir: dir, OnCorrupt: func(err error) { reports = append(reports, err) }})
	if len(reports) != 1 {
		t.Fatalf("reports %v, want one about the cursor", reports)
	}
	// Duplicates, never loss.
	checkRecords(t, drain(t, s, 3), 0, 10)
}

func TestConcurrentAppendAndReplay(t *testing.T) {
	const n = 20000
	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 64 << 10, SegmentBytes: 4096, SyncEvery: 1e6})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; {
			err := s.Append(rec(i))
			switch {
			case errors.Is(err, ErrFull):
				continue // the replayer makes room
			case err != nil:
				t.Error(err)
				return
			}
			i++
		}
	}()
	var got []Record
	for len(got) < n && !t.Failed() {
		rs, cur, err := s.Peek(100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rs...)
		if err := s.Commit(cur); err != nil {
			t.Fatal(err)
		}
		_ = s.Len() + s.Bytes()
	}
	wg.Wait()
	checkRecords(t, got, 0, n)
	if testutil.ToFloat64(s.m.full) == 0 {
		t.Log("the bound was never hit")
	}
}

func TestOptionsAndLifecycle(t *testing.T) {
	for _, o := range []Options{
		{MaxBytes: 1},
		{Dir: t.TempDir()},
		{Dir: t.TempDir(), MaxBytes: 1, SegmentBytes: -1},
		{Dir: t.TempDir(), MaxBytes: 1, Sync: 7},
		{Dir: t.TempDir(), MaxBytes: 1, SyncEvery: -1},
	} {
		if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "Options.") {
			t.Errorf("Open(%+v) = %v, want an error naming the field", o, err)
		}
	}

	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, Registerer: reg})
	appendN(t, s, 0, 3)
	if got := testutil.ToFloat64(s.m.records); got != 3 {
		t.Fatalf("burnrate_spool_records = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != len(s.Collectors()) {
		t.Fatalf("%d metrics registered, %v", n, err)
	}
	if _, err := Open(Options{Dir: t.TempDir(), MaxBytes: 1, Registerer: reg}); err == nil {
		t.Fatal("second spool registered the same metrics")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Append(rec(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, _, err := s.Peek(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Peek after Close: %v", err)
	}
	s = open(t, Options{Dir: dir, Registerer: reg}) // Close unregistered
	_, stale, _ := s.Peek(1)
	checkRecords(t, drain(t, s, 10), 0, 3)
	if err := s.Commit(stale); err != nil || s.Len() != 0 {
		t.Fatalf("stale cursor: %v, Len() = %d", err, s.Len())
	}
	if err := s.Commit(Cursor{}); err != nil {
		t.Fatal(err)
	}
}

func FuzzOpenSegment(f *testing.F) {
	seed := appendFrame(nil, Record{Key: []byte("k"), Value: []byte("v")})
	f.Add(seed, false)
	f.Add(append(appendFrame(seed, Record{Value: []byte("second")}), 1, 2, 3), true)
	f.Add([]byte{}, false)
	f.Add(bytes.Repeat([]byte{0xff}, 40), false)
	f.Fuzz(func(t *testing.T, data []byte, withCursor bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if withCursor && len(data) > 0 {
			if err := writeCursor(dir, 1, int64(data[0]), false); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Sync: SyncNone})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		n := s.Len()
		if got := drain(t, s, 2); int64(len(got)) != n {
			t.Fatalf("drained %d records, Len() said %d", len(got), n)
		}
		if s.Bytes() != 0 {
			t.Fatalf("Bytes() = %d after draining", s.Bytes())
		}
		if err := s.Append(Record{Key: []byte("after"), Value: data}); err != nil {
			t.Fatal(err)
		}
		if rs := drain(t, s, 2); len(rs) != 1 || !bytes.Equal(rs[0].Value, data) {
			t.Fatalf("append after recovery: %d records", len(rs))
		}
	})
}
