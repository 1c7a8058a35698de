// Package spool is the ingress's bounded, crash-safe, append-only on-disk
// FIFO of usage events, written while Kafka is unreachable and replayed in
// order when it returns.
//
// It owns one directory: segment files of records framed with their
// lengths and a CRC32C, and a cursor file with the committed read position
// (see format.go). Replay is at-least-once: Peek, produce, then Commit; a
// committed record is not replayed after a restart, an uncommitted one is.
//
// It must never drop a record silently: a record Append accepted is either
// replayed or, if the disk damaged it, counted in
// burnrate_spool_corrupt_records_total and reported to Options.OnCorrupt.
// It must never block forever: Append refuses with ErrFull at the bound
// instead of waiting for room, and no call waits on anything but the disk.
//
// A Spool is safe for concurrent use. It is built for one appender and one
// replayer running at once: appends hold a mutex for one write(2); Peek
// reads segment files without holding it, so replay does not stall
// appends.
package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrFull is returned by Append when the record would take the spool
	// past Options.MaxBytes (or the disk has no space left).
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned by calls on a closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrCorrupt wraps the reports of damaged data that was cut.
	ErrCorrupt = errors.New("spool: corrupt data")
)

// SyncPolicy says when appended records are fsynced. Every Append writes
// its record to the OS before returning, so a crash of the process loses
// nothing under any policy; the policy bounds what a crash of the machine
// may lose.
type SyncPolicy int

const (
	// SyncInterval fsyncs in the background every Options.SyncEvery while
	// there are unsynced appends. The default.
	SyncInterval SyncPolicy = iota
	// SyncEveryAppend fsyncs before Append returns, and makes every Commit
	// durable too.
	SyncEveryAppend
	// SyncNone leaves write-back to the OS.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncInterval:
		return "interval"
	case SyncEveryAppend:
		return "every-append"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

const (
	defaultSegmentBytes = 16 << 20
	defaultSyncEvery    = 100 * time.Millisecond
)

// Options configure a Spool.
type Options struct {
	// Dir holds the spool; it is created if missing. One Spool per Dir.
	Dir string
	// MaxBytes bounds the disk space of the segment files. Committed
	// records are freed a segment at a time, so SegmentBytes is capped at
	// MaxBytes/8: at most an eighth of the bound is held by committed
	// records waiting for their segment to be deleted.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started;
	// 0 means 16 MiB. A record larger than it gets a segment of its own.
	SegmentBytes int64
	// Sync is the fsync policy; the zero value is SyncInterval.
	Sync SyncPolicy
	// SyncEvery is the SyncInterval period; 0 means 100ms.
	SyncEvery time.Duration
	// Registerer, if set, gets the spool's collectors at Open; Close
	// unregisters them.
	Registerer prometheus.Registerer
	// OnCorrupt, if set, is told of every stretch of damaged data the
	// spool cut (torn tails at Open, checksum failures anywhere), with the
	// segment, offset and bytes lost. It is called synchronously from
	// Open or Peek and must not call the Spool.
	OnCorrupt func(error)
}

func (o *Options) validate() error {
	switch {
	case o.Dir == "":
		return errors.New("Options.Dir: required")
	case o.MaxBytes <= 0:
		return fmt.Errorf("Options.MaxBytes: %d, must be > 0", o.MaxBytes)
	case o.SegmentBytes < 0:
		return fmt.Errorf("Options.SegmentBytes: %d, must be >= 0", o.SegmentBytes)
	case o.Sync < SyncInterval || o.Sync > SyncNone:
		return fmt.Errorf("Options.Sync: unknown policy %d", int(o.Sync))
	case o.SyncEvery < 0:
		return fmt.Errorf("Options.SyncEvery: %s, must be >= 0", o.SyncEvery)
	}
	return nil
}

// Record is one spooled event. The spool copies it on Append; records
// returned by Peek are the caller's.
type Record struct{ Key, Value []byte }

// Cursor is the position after the records a Peek returned. Commit(c)
// removes them and everything before; the zero Cursor commits nothing.
type Cursor struct {
	seg      uint64 // segment id
	off, idx int64  // byte offset and record index within it
}

type segment struct {
	id    uint64
	size  int64 // bytes of intact frames; appends go after them
	count int64 // records in them
}

// Spool is the on-disk FIFO. See the package doc for its guarantees.
type Spool struct {
	dir       string
	maxBytes  int64
	segBytes  int64
	policy    SyncPolicy
	onCorrupt func(error)
	reg       prometheus.Registerer

	// rmu serialises the replayer's calls (Peek, Commit) and guards the
	// reader fields. Lock order: rmu, then mu.
	rmu  sync.Mutex
	rf   *os.File // open read handle on segment rfID
	rfID uint64
	snap []segment

	mu         sync.Mutex
	closed     bool
	segs       []segment // oldest first; the last is appended to
	w          *os.File  // the last segment, O_APPEND
	wbroken    bool      // the last segment has bytes past its size: roll before appending
	roff, ridx int64     // committed position within segs[0]
	diskBytes  int64     // sum of segs[].size
	records    int64     // sum of segs[].count
	dirty      bool      // appends since the last fsync
	buf        []byte    // frame scratch

	stop, done chan struct{} // background syncer

	m metrics
}

// Open recovers the spool in opts.Dir, or starts an empty one. Damaged
// data found on disk is cut, counted and reported, never fatal; only I/O
// failures and bad options are errors.
func Open(opts Options) (*Spool, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	segBytes := opts.SegmentBytes
	if segBytes == 0 {
		segBytes = defaultSegmentBytes
	}
	segBytes = min(segBytes, max(opts.MaxBytes/8, 1))
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: opts.Dir, maxBytes: opts.MaxBytes, segBytes: segBytes, policy: opts.Sync, onCorrupt: opts.OnCorrupt}
	s.m = newMetrics(s)
	if err := s.recover(); err != nil {
		if s.w != nil {
			_ = s.w.Close() // the recovery error is the one to report
		}
		return nil, fmt.Errorf("spool: open %s: %w", opts.Dir, err)
	}
	if opts.Registerer != nil {
		for i, c := range s.m.all() {
			if err := opts.Registerer.Register(c); err != nil {
				for _, c := range s.m.all()[:i] {
					opts.Registerer.Unregister(c)
				}
				_ = s.w.Close() // the registration error is the one to report
				return nil, fmt.Errorf("spool: register metrics: %w", err)
			}
		}
		s.reg = opts.Registerer
	}
	if s.policy == SyncInterval {
		every := opts.SyncEvery
		if every == 0 {
			every = defaultSyncEvery
		}
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop(every)
	}
	return s, nil
}

// recover rebuilds the state from the directory: drops segments before the
// cursor, checks every frame of the rest, cuts damaged tails.
func (s *Spool) recover() error {
	ids, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	cseg, coff, haveCursor, err := readCursor(s.dir)
	if err != nil {
		return err
	}
	if !haveCursor && fileExists(filepath.Join(s.dir, cursorFile)) {
		// Replaying from the oldest segment duplicates, never loses.
		s.report(fmt.Errorf("cursor file unreadable, replaying from the oldest segment: %w", ErrCorrupt))
	}
	for _, id := range ids {
		path := filepath.Join(s.dir, segName(id))
		if haveCursor && id < cseg {
			// Committed; a crash came between cursor write and removal.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove committed segment: %w", err)
			}
			continue
		}
		start := int64(0)
		if haveCursor && id == cseg {
			start = coff
		}
		res, err := scanSegment(path, start)
		if err != nil {
			return err
		}
		if res.bad != "" {
			lost := res.fileSize - res.valid
			// Cutting makes the next Open find (and count) nothing.
			if err := os.Truncate(path, res.valid); err != nil {
				return fmt.Errorf("cut damaged data of %s: %w", path, err)
			}
			s.m.corrupt.Inc()
			s.m.corruptBytes.Add(float64(lost))
			s.report(fmt.Errorf("segment %s: %s at offset %d: cut %d bytes, went on with the next segment: %w",
				segName(id), res.bad, res.valid, lost, ErrCorrupt))
		}
		if len(s.segs) == 0 {
			s.roff, s.ridx = res.startOff, res.startIdx
		}
		s.segs = append(s.segs, segment{id: id, size: res.valid, count: res.count})
		s.diskBytes += res.valid
		s.records += res.count
	}
	if len(s.segs) == 0 {
		return s.rollLocked(cseg + 1)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segName(s.segs[len(s.segs)-1].id)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open tail segment: %w", err)
	}
	s.w = f
	return s.resetIfDrainedLocked()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (s *Spool) report(err error) {
	if s.onCorrupt != nil {
		s.onCorrupt(err)
	}
}

// Append writes r at the tail. It returns ErrFull (wrapped when the disk
// itself is full) if r does not fit under MaxBytes; it never waits for
// room. Under SyncEveryAppend it returns once r is fsynced.
func (s *Spool) Append(r Record) error {
	n := len(r.Key) + len(r.Value)
	if n > maxRecordBytes {
		return fmt.Errorf("spool: append: record of %d bytes is over the %d-byte limit", n, maxRecordBytes)
	}
	frame := int64(headerLen + n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.diskBytes+frame > s.maxBytes {
		s.m.full.Inc()
		return ErrFull
	}
	tail := &s.segs[len(s.segs)-1]
	if s.wbroken || (tail.size > 0 && tail.size+frame > s.segBytes) {
		if err := s.rollLocked(tail.id + 1); err != nil {
			return fmt.Errorf("spool: append: %w", err)
		}
		tail = &s.segs[len(s.segs)-1]
	}
	s.buf = appendFrame(s.buf[:0], r)
	if cap(s.buf) > 4<<20 {
		defer func() { s.buf = nil }() // do not pin one huge record's buffer
	}
	if _, err := s.w.Write(s.buf); err != nil {
		// Cut a partial frame so later appends stay readable.
		if terr := s.w.Truncate(tail.size); terr != nil {
			s.wbroken = true
		}
		if errors.Is(err, syscall.ENOSPC) {
			s.m.full.Inc()
			return fmt.Errorf("spool: append to %s: %w: %w", segName(tail.id), ErrFull, err)
		}
		return fmt.Errorf("spool: append to %s: %w", segName(tail.id), err)
	}
	tail.size += frame
	tail.count++
	s.diskBytes += frame
	s.records++
	s.m.appends.Inc()
	switch s.policy {
	case SyncEveryAppend:
		if err := s.w.Sync(); err != nil {
			// The record is written and counted: it may still be
			// replayed, so a retry by the caller can only duplicate it.
			return fmt.Errorf("spool: append: fsync %s: %w", segName(tail.id), err)
		}
	case SyncInterval:
		s.dirty = true
	}
	return nil
}

// rollLocked starts segment id as the new tail. s.mu is held.
func (s *Spool) rollLocked(id uint64) error {
	old := s.w
	if old != nil && s.policy != SyncNone {
		if err := old.Sync(); err != nil {
			return fmt.Errorf("fsync %s before rolling: %w", old.Name(), err)
		}
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segName(id)), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if s.policy != SyncNone {
		if err := syncDir(s.dir); err != nil {
			_ = f.Close() // the sync error is the one to report
			_ = os.Remove(f.Name())
			return err
		}
	}
	if old != nil {
		if s.wbroken {
			// Best effort: a leftover partial frame is cut at the next Open.
			_ = old.Truncate(s.segs[len(s.segs)-1].size)
		}
		_ = old.Close() // synced above, or SyncNone
	}
	s.segs = append(s.segs, segment{id: id})
	s.w, s.wbroken, s.dirty = f, false, false
	return nil
}

func (s *Spool) syncLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		f, dirty := s.w, s.dirty
		s.dirty = false
		s.mu.Unlock()
		if !dirty {
			continue
		}
		// Without the lock: appends go on while the disk catches up. A
		// roll meanwhile closes f after syncing it itself.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			s.m.syncErrors.Inc()
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
	}
}

// Len is the number of records not yet committed.
func (s *Spool) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records - s.ridx
}

// Bytes is the disk space of the segment files, the quantity MaxBytes
// bounds. It includes committed records of the oldest segment until that
// segment is deleted, and is 0 when the spool is empty.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes
}

// Peek returns up to max of the oldest uncommitted records, in order,
// without removing them, and the Cursor that commits them. It returns at
// least one record whenever Len() > 0 and no error occurs; repeated Peeks
// without a Commit return the same records.
//
// If it meets damaged data it cuts it (the rest of that segment), counts
// and reports it, and returns an error wrapping ErrCorrupt; the next Peek
// goes on with the next segment.
func (s *Spool) Peek(limit int) ([]Record, Cursor, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, Cursor{}, ErrClosed
	}
	s.snap = append(s.snap[:0], s.segs...)
	cur := Cursor{seg: s.segs[0].id, off: s.roff, idx: s.ridx}
	s.mu.Unlock()

	var out []Record
	for i := 0; i < len(s.snap) && len(out) < limit; {
		sg := s.snap[i]
		if cur.off >= sg.size {
			if i+1 == len(s.snap) {
				break
			}
			i++
			cur = Cursor{seg: s.snap[i].id}
			continue
		}
		var err error
		out, cur, err = s.readSegment(sg, cur, limit, out)
		if err != nil {
			return nil, Cursor{}, err
		}
		// A finished segment other than the tail is final: point past it
		// so the Commit deletes it.
		if cur.off == sg.size && i+1 < len(s.snap) && len(out) == limit {
			cur = Cursor{seg: s.snap[i+1].id}
		}
	}
	return out, cur, nil
}

// readSegment appends records of sg from cur to out, up to limit in all or
// sg's end, and returns the cursor after them.
func (s *Spool) readSegment(sg segment, cur Cursor, limit int, out []Record) ([]Record, Cursor, error) {
	f, err := s.reader(sg.id)
	if err != nil {
		return out, cur, err
	}
	need := int64(0) // set when a frame is larger than the last read
	for len(out) < limit && cur.off < sg.size {
		// Sized for the records wanted, so a small Peek reads little.
		chunk := min(sg.size-cur.off, max(int64(limit-len(out))*1024, 4096, need), 1<<20)
		chunk = max(chunk, need)
		buf := make([]byte, chunk)
		got, err := f.ReadAt(buf, cur.off)
		if err != nil && !errors.Is(err, io.EOF) {
			return out, cur, fmt.Errorf("spool: read %s at %d: %w", segName(sg.id), cur.off, err)
		}
		buf = buf[:got]
		short := int64(got) < chunk // the file ends before what was written
		atEnd := short || cur.off+chunk == sg.size
		p := int64(0)
		for len(out) < limit {
			rest := buf[p:]
			here := Cursor{seg: sg.id, off: cur.off + p, idx: cur.idx}
			if len(rest) < headerLen {
				if (len(rest) > 0 && atEnd) || short {
					return out, cur, s.cut(here, "segment file shorter than written")
				}
				break
			}
			n := frameLen(rest)
			if n > sg.size-here.off {
				return out, cur, s.cut(here, fmt.Sprintf("frame length %d past the segment's end", n))
			}
			if n > int64(len(rest)) {
				if short {
					return out, cur, s.cut(here, "segment file shorter than written")
				}
				if p == 0 {
					need = n
				}
				break
			}
			r, ok := decodeFrame(rest[:n])
			if !ok {
				return out, cur, s.cut(here, "checksum mismatch")
			}
			out = append(out, r)
			p += n
			cur.idx++
		}
		cur.off += p
	}
	return out, cur, nil
}

// reader returns a read handle on segment id. rmu is held.
func (s *Spool) reader(id uint64) (*os.File, error) {
	if s.rf != nil && s.rfID == id {
		return s.rf, nil
	}
	s.closeReader()
	f, err := os.Open(filepath.Join(s.dir, segName(id)))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.rf, s.rfID = f, id
	return f, nil
}

func (s *Spool) closeReader() {
	if s.rf != nil {
		_ = s.rf.Close() // read-only
		s.rf = nil
	}
}

// cut drops the damaged rest of segment at.seg, from at on, so replay goes
// on with the next segment. rmu is held.
func (s *Spool) cut(at Cursor, why string) error {
	s.mu.Lock()
	i := s.segIndexLocked(at.seg)
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("spool: segment %s vanished while being read", segName(at.seg))
	}
	sg := &s.segs[i]
	lostBytes, lostRecords := sg.size-at.off, sg.count-at.idx
	terr := os.Truncate(filepath.Join(s.dir, segName(at.seg)), at.off)
	if terr != nil && i == len(s.segs)-1 {
		// The damaged bytes stay in the tail file: append elsewhere.
		s.wbroken = true
	}
	sg.size, sg.count = at.off, at.idx
	s.diskBytes -= lostBytes
	s.records -= lostRecords
	s.m.corrupt.Add(float64(max(lostRecords, 1)))
	s.m.corruptBytes.Add(float64(lostBytes))
	s.mu.Unlock()
	err := fmt.Errorf("spool: segment %s: %s at offset %d: cut %d bytes (%d records), going on with the next segment: %w",
		segName(at.seg), why, at.off, lostBytes, lostRecords, ErrCorrupt)
	if terr != nil {
		err = fmt.Errorf("%w (and truncating the file failed: %v)", err, terr)
	}
	s.report(err)
	return err
}

func (s *Spool) segIndexLocked(id uint64) int {
	for i := range s.segs {
		if s.segs[i].id == id {
			return i
		}
	}
	return -1
}

// Commit removes every record before c: call it once the records of the
// Peek that returned c are safely elsewhere. Segment files it empties are
// deleted. A cursor at or before the committed position is a no-op.
func (s *Spool) Commit(c Cursor) error {
	if c.seg == 0 {
		return nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	i := s.segIndexLocked(c.seg)
	switch {
	case i < 0 && c.seg < s.segs[0].id, i == 0 && c.off <= s.roff:
		s.mu.Unlock()
		return nil
	case i < 0:
		s.mu.Unlock()
		return fmt.Errorf("spool: commit: cursor in unknown segment %s", segName(c.seg))
	case c.off > s.segs[i].size || c.idx > s.segs[i].count:
		s.mu.Unlock()
		return fmt.Errorf("spool: commit: cursor %d/%d past the end of segment %s", c.off, c.idx, segName(c.seg))
	}
	s.mu.Unlock()

	// The cursor goes first: a crash before the removals below only
	// leaves files the next Open removes.
	if err := writeCursor(s.dir, c.seg, c.off, s.policy == SyncEveryAppend); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dropHeadLocked(i); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	s.roff, s.ridx = c.off, c.idx
	if err := s.resetIfDrainedLocked(); err != nil {
		return fmt.Errorf("spool: commit: %w", err)
	}
	return nil
}

// dropHeadLocked deletes the first n segments; the tail is never among
// them. rmu and mu are held.
func (s *Spool) dropHeadLocked(n int) error {
	for n > 0 {
		sg := s.segs[0]
		if s.rf != nil && s.rfID == sg.id {
			s.closeReader()
		}
		if err := os.Remove(filepath.Join(s.dir, segName(sg.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove committed segment: %w", err)
		}
		s.segs = s.segs[1:]
		s.diskBytes -= sg.size
		s.records -= sg.count
		s.roff, s.ridx = 0, 0
		n--
	}
	return nil
}

// resetIfDrainedLocked moves appends to a fresh segment and deletes the
// old one once everything in it is committed, so an empty spool takes no
// disk. The new segment gets a higher id rather than truncating the old
// one, so a stale cursor can never cover new records. mu is held.
func (s *Spool) resetIfDrainedLocked() error {
	if len(s.segs) != 1 || s.roff < s.segs[0].size || s.segs[0].size == 0 {
		return nil
	}
	if err := s.rollLocked(s.segs[0].id + 1); err != nil {
		return err
	}
	return s.dropHeadLocked(1)
}

// Close stops the background syncer, fsyncs (unless SyncNone) and closes
// the files, and unregisters the collectors. Further calls return
// ErrClosed; Close itself is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	s.rmu.Lock()
	s.closeReader()
	s.rmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.policy != SyncNone {
		err = s.w.Sync()
	}
	err = errors.Join(err, s.w.Close())
	if s.reg != nil {
		for _, c := range s.m.all() {
			s.reg.Unregister(c)
		}
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
