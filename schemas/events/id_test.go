package events

import (
	"strings"
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

// isUUIDv7 must agree with parsing by github.com/google/uuid plus the
// canonical-lowercase rule.
func TestIsUUIDv7AgreesWithTheUUIDLibrary(t *testing.T) {
	ref := func(s string) bool {
		u, err := uuid.Parse(s)
		return len(s) == 36 && err == nil && u.Version() == 7 && u.Variant() == uuid.RFC4122 && strings.ToLower(s) == s
	}
	good := NewID(time.Now())
	for _, s := range []string{
		good, strings.ToUpper(good), "", "not-a-uuid",
		"019593fa-5b4b-796f-b8ed-6d6bcdf2caa7", "019593fa-5b4b-496f-b8ed-6d6bcdf2caa7", "019593fa-5b4b-796f-78ed-6d6bcdf2caa7",
		"019593fa-5b4b-796f-c8ed-6d6bcdf2caa7", "019593fa-5b4b-796f-a8ed-6d6bcdf2caa7", "019593fa_5b4b-796f-b8ed-6d6bcdf2caa7",
		"019593fa-5b4b-796f-b8ed-6d6bcdf2caag", "{019593fa-5b4b-796f-b8ed-6d6bcdf2ca}", "urn:uuid:019593fa-5b4b-796f-b8ed-6d6",
		"019593fa5b4b796fb8ed6d6bcdf2caa7",
	} {
		if got, want := isUUIDv7(s), ref(s); got != want {
			t.Errorf("isUUIDv7(%q) = %v, the uuid library says %v", s, got, want)
		}
	}
}
