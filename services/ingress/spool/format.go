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
	"slices"
	"strconv"
	"strings"
)

// On-disk layout. A spool directory holds segment files named by a
// zero-padded, ever-increasing id ("00000000000000000007.seg") and one
// cursor file. A segment is a run of frames:
//
//	crc32c  uint32 LE  over everything after it: lengths, key, value
//	keyLen  uint32 LE
//	valLen  uint32 LE
//	key, value
//
// The cursor file holds the committed read position: segment id and byte
// offset (uint64 LE each) and a crc32c of those 16 bytes. It is replaced
// with write-then-rename, so it is always the old or the new position.
const (
	headerLen      = 12
	segSuffix      = ".seg"
	cursorFile     = "cursor"
	cursorLen      = 20
	maxRecordBytes = 64 << 20 // key + value; far above any usage event
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segSuffix) }

// appendFrame appends r framed to buf.
func appendFrame(buf []byte, r Record) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(buf[start+4:], uint32(len(r.Key)))
	binary.LittleEndian.PutUint32(buf[start+8:], uint32(len(r.Value)))
	buf = append(buf, r.Key...)
	buf = append(buf, r.Value...)
	binary.LittleEndian.PutUint32(buf[start:], crc32.Checksum(buf[start+4:], castagnoli))
	return buf
}

// frameLen reads the length of the frame whose header is h (at least
// headerLen bytes). It is at most headerLen+2*maxRecordBytes; callers
// bound it further by what the segment holds.
func frameLen(h []byte) int64 {
	return headerLen + int64(binary.LittleEndian.Uint32(h[4:])) + int64(binary.LittleEndian.Uint32(h[8:]))
}

// decodeFrame checks a whole frame and returns its record, which aliases
// frame (capacities capped, so appending to Key cannot clobber Value).
func decodeFrame(frame []byte) (Record, bool) {
	if crc32.Checksum(frame[4:], castagnoli) != binary.LittleEndian.Uint32(frame) {
		return Record{}, false
	}
	k := headerLen + int(binary.LittleEndian.Uint32(frame[4:]))
	return Record{Key: frame[headerLen:k:k], Value: frame[k:len(frame):len(frame)]}, true
}

// listSegments returns the ids of the segment files in dir, oldest first.
// Other files are left alone.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil || id == 0 {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// scanResult describes one segment file as found at Open.
type scanResult struct {
	valid    int64  // length of the prefix made of whole, intact frames
	count    int64  // frames in that prefix
	startOff int64  // first frame boundary at or after the requested start
	startIdx int64  // frames before startOff
	fileSize int64  // bytes in the file
	bad      string // why the bytes after valid are unreadable; "" if none
}

// scanSegment checks every frame of a segment file. Only I/O failures are
// errors; damaged data is described in the result.
func scanSegment(path string, start int64) (res scanResult, err error) {
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("stat %s: %w", path, err)
	}
	res.fileSize = fi.Size()
	br := bufio.NewReaderSize(f, 256<<10)
	var buf []byte
	pos := int64(0)
	found := false
	defer func() {
		// A start past the intact part (a cut tail) leaves nothing unread.
		if !found {
			res.startOff, res.startIdx = res.valid, res.count
		}
	}()
	for {
		if !found && pos >= start {
			found = true
			res.startOff, res.startIdx = pos, res.count
		}
		if pos == res.fileSize {
			res.valid = pos
			return res, nil
		}
		if res.fileSize-pos < headerLen {
			res.valid, res.bad = pos, "torn frame header at the end of the file"
			return res, nil
		}
		buf = slices.Grow(buf[:0], headerLen)[:headerLen]
		if _, err := io.ReadFull(br, buf); err != nil {
			return res, fmt.Errorf("read %s at %d: %w", path, pos, err)
		}
		n := frameLen(buf)
		switch {
		case n-headerLen > maxRecordBytes:
			res.valid, res.bad = pos, fmt.Sprintf("implausible frame length %d", n)
			return res, nil
		case n > res.fileSize-pos:
			res.valid, res.bad = pos, fmt.Sprintf("torn frame: %d bytes long, %d left in the file", n, res.fileSize-pos)
			return res, nil
		}
		buf = slices.Grow(buf, int(n)-headerLen)[:n]
		if _, err := io.ReadFull(br, buf[headerLen:]); err != nil {
			return res, fmt.Errorf("read %s at %d: %w", path, pos, err)
		}
		if _, ok := decodeFrame(buf); !ok {
			res.valid, res.bad = pos, "checksum mismatch"
			return res, nil
		}
		pos += n
		res.count++
	}
}

// readCursor returns the committed position stored in dir; ok is false if
// there is none or it is unreadable.
func readCursor(dir string) (seg uint64, off int64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("read cursor: %w", err)
	}
	if len(b) != cursorLen || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return 0, 0, false, nil
	}
	seg, off = binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:]))
	if off < 0 {
		return 0, 0, false, nil
	}
	return seg, off, true, nil
}

// writeCursor replaces the cursor file; durable fsyncs it and the
// directory before returning.
func writeCursor(dir string, seg uint64, off int64, durable bool) error {
	var b [cursorLen]byte
	binary.LittleEndian.PutUint64(b[:], seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(off))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	path := filepath.Join(dir, cursorFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	_, err = f.Write(b[:])
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}

// syncDir makes file creations, renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
