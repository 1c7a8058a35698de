// Package spool is the ingress's bounded, crash-safe, append-only on-disk
// FIFO of usage events, used while Kafka is unreachable.
//
// Records are framed with their length and a CRC32C; a torn tail left by a
// crash is truncated and counted at Open. Replay is at-least-once: Peek,
// produce, then Commit, and the committed position survives restarts. One
// appender and one replayer may run at once. It never drops a record
// silently and never blocks: Append fails with ErrFull at the bound.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrFull means the spool holds MaxBytes already.
var ErrFull = errors.New("spool: full")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const headerLen = 12 // value length, key length, crc32c

// Options configure a spool.
type Options struct {
	Dir          string
	MaxBytes     int64
	SegmentBytes int64
	// SyncEvery bounds how long appended records may sit in the page cache
	// before an fsync; 0 uses 100ms, negative syncs every append.
	SyncEvery  time.Duration
	Registerer prometheus.Registerer
}

// Record is one spooled event.
type Record struct{ Key, Value []byte }

// Cursor marks a position to commit up to.
type Cursor struct {
	seg uint64
	off int64
	n   int64
	b   int64
}

type segment struct {
	id   uint64
	size int64
}

// Spool is the on-disk FIFO.
type Spool struct {
	opts Options

	mu       sync.Mutex
	segs     []segment // oldest first; the last is being appended to
	w        *os.File
	bw       *bufio.Writer
	lastSync time.Time
	readSeg  uint64
	readOff  int64
	records  int64 // unread records
	bytes    int64 // unread bytes

	bytesGauge, recordsGauge prometheus.GaugeFunc
	appends, full, corrupt   prometheus.Counter
}

func segName(id uint64) string { return fmt.Sprintf("%020d.seg", id) }

// Open recovers the spool in opts.Dir (created if missing).
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: Dir is required")
	}
	if opts.MaxBytes <= 0 {
		return nil, errors.New("spool: MaxBytes must be > 0")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 16 << 20
	}
	if opts.SyncEvery == 0 {
		opts.SyncEvery = 100 * time.Millisecond
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts,
		appends: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_spool_appends_total", Help: "Records appended to the spool."}),
		full:    prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_spool_full_total", Help: "Appends refused because the spool was full."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "burnrate_spool_corrupt_records_total", Help: "Torn or corrupt records found (and cut) at open."}),
	}
	s.bytesGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_spool_bytes", Help: "Bytes of unreplayed records in the spool."},
		func() float64 { return float64(s.Bytes()) })
	s.recordsGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "burnrate_spool_records", Help: "Unreplayed records in the spool."},
		func() float64 { return float64(s.Len()) })
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.bytesGauge, s.recordsGauge, s.appends, s.full, s.corrupt)
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) cursorPath() string { return filepath.Join(s.opts.Dir, "cursor") }

func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		s.segs = append(s.segs, segment{id: id})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].id < s.segs[j].id })
	if b, err := os.ReadFile(s.cursorPath()); err == nil {
		var seg uint64
		var off int64
		if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err == nil {
			s.readSeg, s.readOff = seg, off
		}
	}
	// Drop segments wholly before the cursor, validate the rest.
	kept := s.segs[:0]
	for _, sg := range s.segs {
		path := filepath.Join(s.opts.Dir, segName(sg.id))
		if sg.id < s.readSeg {
			os.Remove(path)
			continue
		}
		valid, n, bad, err := scan(path)
		if err != nil {
			return err
		}
		if bad > 0 {
			s.corrupt.Add(float64(bad))
			if err := os.Truncate(path, valid); err != nil {
				return fmt.Errorf("spool: cut corrupt tail of %s: %w", path, err)
			}
		}
		sg.size = valid
		start := int64(0)
		if sg.id == s.readSeg {
			start = s.readOff
			if start > valid {
				start = valid
			}
			n = countFrom(path, start)
		}
		s.records += n
		s.bytes += valid - start
		kept = append(kept, sg)
	}
	s.segs = kept
	if len(s.segs) == 0 {
		id := s.readSeg
		if id == 0 {
			id = 1
		}
		s.segs = []segment{{id: id}}
		s.readSeg, s.readOff = id, 0
	} else if s.readSeg < s.segs[0].id {
		s.readSeg, s.readOff = s.segs[0].id, 0
	}
	return s.openTail()
}

// scan returns the length of the valid prefix of a segment, its record
// count, and how many corrupt records were found after it (0 or 1: the
// rest of a segment after a bad frame is unreadable).
func scan(path string) (valid, n int64, bad int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		_, size, rerr := readRecord(br)
		if rerr == io.EOF {
			return valid, n, 0, nil
		}
		if rerr != nil {
			return valid, n, 1, nil
		}
		valid += size
		n++
	}
}

func countFrom(path string, off int64) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0
	}
	br := bufio.NewReader(f)
	var n int64
	for {
		if _, _, err := readRecord(br); err != nil {
			return n
		}
		n++
	}
}

func readRecord(br *bufio.Reader) (Record, int64, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		if err == io.EOF {
			return Record{}, 0, io.EOF
		}
		return Record{}, 0, fmt.Errorf("torn header: %w", err)
	}
	vlen, klen, sum := binary.LittleEndian.Uint32(h[0:]), binary.LittleEndian.Uint32(h[4:]), binary.LittleEndian.Uint32(h[8:])
	if vlen > 64<<20 || klen > 1<<20 {
		return Record{}, 0, errors.New("implausible record length")
	}
	buf := make([]byte, int(klen)+int(vlen))
	if _, err := io.ReadFull(br, buf); err != nil {
		return Record{}, 0, fmt.Errorf("torn record: %w", err)
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return Record{}, 0, errors.New("checksum mismatch")
	}
	return Record{Key: buf[:klen:klen], Value: buf[klen:]}, int64(headerLen + len(buf)), nil
}

func (s *Spool) openTail() error {
	last := s.segs[len(s.segs)-1]
	f, err := os.OpenFile(filepath.Join(s.opts.Dir, segName(last.id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w, s.bw = f, bufio.NewWriterSize(f, 64<<10)
	return nil
}

// Append adds a record at the tail.
func (s *Spool) Append(r Record) error {
	size := int64(headerLen + len(r.Key) + len(r.Value))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes+size > s.opts.MaxBytes {
		s.full.Inc()
		return ErrFull
	}
	tail := &s.segs[len(s.segs)-1]
	if tail.size > 0 && tail.size+size > s.opts.SegmentBytes {
		if err := s.roll(); err != nil {
			return err
		}
		tail = &s.segs[len(s.segs)-1]
	}
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(r.Value)))
	binary.LittleEndian.PutUint32(h[4:], uint32(len(r.Key)))
	crc := crc32.Update(crc32.Checksum(r.Key, castagnoli), castagnoli, r.Value)
	binary.LittleEndian.PutUint32(h[8:], crc)
	s.bw.Write(h[:])
	s.bw.Write(r.Key)
	if _, err := s.bw.Write(r.Value); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	// Flush to the OS at once (a crash of the process loses nothing);
	// fsync at most every SyncEvery (a crash of the machine may lose that).
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	if s.opts.SyncEvery < 0 || time.Since(s.lastSync) >= s.opts.SyncEvery {
		s.w.Sync()
		s.lastSync = time.Now()
	}
	tail.size += size
	s.records++
	s.bytes += size
	s.appends.Inc()
	return nil
}

func (s *Spool) roll() error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: roll: %w", err)
	}
	s.w.Sync()
	s.w.Close()
	next := s.segs[len(s.segs)-1].id + 1
	s.segs = append(s.segs, segment{id: next})
	return s.openTail()
}

// Len is the number of records not yet committed.
func (s *Spool) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// Bytes is the disk space of records not yet committed.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Peek returns up to max of the oldest records, in order, and the cursor
// that commits them. It reads within one segment per call.
func (s *Spool) Peek(max int) ([]Record, Cursor, error) {
	s.mu.Lock()
	seg, off := s.readSeg, s.readOff
	var size int64 = -1
	for _, sg := range s.segs {
		if sg.id == seg {
			size = sg.size
		}
	}
	if err := s.bw.Flush(); err != nil {
		s.mu.Unlock()
		return nil, Cursor{}, fmt.Errorf("spool: %w", err)
	}
	hasNext := len(s.segs) > 0 && s.segs[len(s.segs)-1].id > seg
	s.mu.Unlock()
	cur := Cursor{seg: seg, off: off}
	if size < 0 {
		return nil, cur, nil
	}
	if off >= size {
		if hasNext {
			// The segment is done: move to the next one on commit.
			return nil, Cursor{seg: seg + 1, off: 0}, s.Commit(Cursor{seg: seg + 1, off: 0})
		}
		return nil, cur, nil
	}
	f, err := os.Open(filepath.Join(s.opts.Dir, segName(seg)))
	if err != nil {
		return nil, cur, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, cur, fmt.Errorf("spool: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var out []Record
	for len(out) < max && cur.off < size {
		r, n, err := readRecord(br)
		if err != nil {
			return out, cur, fmt.Errorf("spool: read %s at %d: %w", segName(seg), cur.off, err)
		}
		out = append(out, r)
		cur.off += n
		cur.n++
		cur.b += n
	}
	return out, cur, nil
}

// Commit forgets every record before c, durably; segments wholly consumed
// are deleted.
func (s *Spool) Commit(c Cursor) error {
	tmp := s.cursorPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", c.seg, c.off)), 0o644); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	if err := os.Rename(tmp, s.cursorPath()); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readSeg, s.readOff = c.seg, c.off
	s.records -= c.n
	s.bytes -= c.b
	for len(s.segs) > 1 && s.segs[0].id < c.seg {
		os.Remove(filepath.Join(s.opts.Dir, segName(s.segs[0].id)))
		s.segs = s.segs[1:]
	}
	return nil
}

// Close flushes and closes the tail segment.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := errors.Join(s.bw.Flush(), s.w.Sync(), s.w.Close())
	s.w = nil
	return err
}
