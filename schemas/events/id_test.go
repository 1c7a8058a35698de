package events

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNewID(t *testing.T) {
	f := func(ts time.Time, wantMS int64) {
		t.Helper()
		id := NewID(ts)
		if !isUUIDv7(id) {
			t.Fatalf("NewID(%v) = %q, not a canonical UUIDv7", ts, id)
		}
		u := uuid.MustParse(id)
		sec, nsec := u.Time().UnixTime() // google/uuid reads the v7 millisecond timestamp
		if got := sec*1000 + nsec/1e6; got != wantMS {
			t.Errorf("NewID(%v) carries %d ms, want %d", ts, got, wantMS)
		}
	}
	f(time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC), 1741944413589)
	f(time.Unix(0, 0), 0)
	f(time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC), 0) // clamped
	f(time.Date(2025, 3, 14, 10, 26, 53, 589793238, time.FixedZone("CET", 3600)), 1741944413589)
}

func TestNewIDSortsByTime(t *testing.T) {
	base := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	prev := NewID(base)
	// 250µs steps: sub-millisecond order is kept too.
	for i := 1; i < 100; i++ {
		id := NewID(base.Add(time.Duration(i) * 250 * time.Microsecond))
		if id <= prev {
			t.Fatalf("step %d: %s sorts before %s", i, id, prev)
		}
		prev = id
	}
	if a, b := NewID(base), NewID(base); a == b {
		t.Errorf("two ids for the same time are equal: %s", a)
	}
}
