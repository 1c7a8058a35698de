package events

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

func TestDecodeErrorsNameTheTopic(t *testing.T) {
	f := func(decode func([]byte) error, in, wantPrefix string) {
		t.Helper()
		err := decode([]byte(in))
		if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) {
			t.Errorf("decode(%q) = %v, want an error starting with %q", in, err, wantPrefix)
		}
	}
	usage := func(b []byte) error { _, err := DecodeUsage(b); return err }
	verdict := func(b []byte) error { _, err := DecodeVerdict(b); return err }
	spend := func(b []byte) error { _, err := DecodeSpend(b); return err }
	dispatch := func(b []byte) error { _, err := Decode(b); return err }

	f(usage, ``, "usage.v1: decode: ")
	f(usage, `{"id":`, "usage.v1: decode: ")
	f(usage, `{"tokens":{"output":"many"}}`, "usage.v1: decode: ")
	f(usage, `{} trailing`, "usage.v1: decode: ")
	f(verdict, `[]`, "verdict.v1: decode: ")
	f(spend, `{"window_start":"yesterday"}`, "spend.v1: decode: ")
	f(dispatch, `{"schema":"usage.v9"}`, `events: decode: unknown schema "usage.v9"`)
	f(dispatch, `{"schema":`, "events: decode: ")
	f(dispatch, `{"schema":"usage.v1","latency_ms":1.5}`, "usage.v1: decode: ")
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	in := `{"schema":"spend.v1","subject":"team=a","added_in_v1_7":{"x":[1,2]},"events":2}`
	got, err := DecodeSpend([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "team=a" || got.Events != 2 {
		t.Errorf("DecodeSpend = %+v", got)
	}
}

func TestDecodeNormalizes(t *testing.T) {
	in := `{"schema":"usage.v1","occurred_at":"2025-03-14T10:26:53.5+01:00","attribution":{"tags":{}}}`
	got, err := DecodeUsage([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 3, 14, 9, 26, 53, 5e8, time.UTC)
	if got.OccurredAt != want || got.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at = %v, want %v in UTC", got.OccurredAt, want)
	}
	if got.Attribution.Tags != nil {
		t.Errorf("empty tags decoded to %#v, want nil", got.Attribution.Tags)
	}
	b, err := DecodeBudgetState([]byte(`{"thresholds_fired":[]}`))
	if err != nil || b.ThresholdsFired != nil {
		t.Errorf("empty thresholds_fired decoded to %#v, %v; want nil", b.ThresholdsFired, err)
	}
}

func TestDecodeDispatches(t *testing.T) {
	for _, s := range Schemas() {
		e, err := Decode([]byte(`{"schema":"` + s.Name + `"}`))
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if reflect.TypeOf(e) != s.Type || e.SchemaName() != s.Name {
			t.Errorf("%s: Decode gave %T", s.Name, e)
		}
	}
}

func TestAppendReusesBuffer(t *testing.T) {
	u := validUsage()
	want, err := Encode(u)
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("prefix:")
	got, err := Append(buf, &u) // a pointer encodes the same as the value
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "prefix:"+string(want) {
		t.Errorf("Append = %s", got)
	}
}

func TestSchemaJSON(t *testing.T) {
	for _, s := range Schemas() {
		b, err := SchemaJSON(s.Name)
		if err != nil || len(b) == 0 {
			t.Errorf("SchemaJSON(%q) = %d bytes, %v", s.Name, len(b), err)
		}
	}
	if _, err := SchemaJSON("usage.v0"); err == nil {
		t.Error("SchemaJSON(usage.v0) succeeded")
	}
}

func TestTagsDecodeLikeTheJSONLibrary(t *testing.T) {
	for _, in := range []string{
		`{}`, `{"a":"b"}`, ` { "a" : "b" , "c":"" } `, `{"a":"b","a":"c"}`, `{"esc":"x\"y"}`, `{"u":"\u00e9"}`,
		`{"a":1}`, `{"a":"b",}`, `{"a" "b"}`, `{"a":"b"`, `["a"]`, `{"a":"b"} x`, "{\"bad\":\"\xff\"}", `null`,
	} {
		var got Tags
		gotErr := got.UnmarshalJSON([]byte(in))
		var want map[string]string
		wantErr := json.Unmarshal([]byte(in), &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s: error %v, the JSON library says %v", in, gotErr, wantErr)
			continue
		}
		if gotErr == nil && fmt.Sprint(map[string]string(got)) != fmt.Sprint(want) {
			t.Errorf("%s: %v, the JSON library gives %v", in, got, want)
		}
	}
}

// TestUsageFixturesTakeFastPath makes sure what producers write is read by
// the fast decoder (otherwise the sink and meter silently fall back to the
// slower one) and decodes to what the JSON library gives.
func TestUsageFixturesTakeFastPath(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", SchemaUsage+".*.golden.json"))
	if len(files) == 0 {
		t.Fatal("no usage fixtures")
	}
	for _, file := range files {
		in, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var fast, lib Usage
		if !decodeUsageFast(in, &fast, &interner{}) {
			t.Errorf("%s: fast decoder refused a fixture", file)
			continue
		}
		fast.normalize()
		if err := decodeInto[Usage](in, &lib); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, lib) {
			t.Errorf("%s: decoders disagree\nfast %+v\nlib  %+v", file, fast, lib)
		}
	}
}

// TestPlainUTCAgreesWithTimeParse checks the fast time reader on the edges
// time.Parse knows: leap days, out-of-range fields, fractions of every width.
func TestPlainUTCAgreesWithTimeParse(t *testing.T) {
	in := []string{
		"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T12:00:00Z", "2000-02-29T23:59:59Z",
		"2026-04-31T00:00:00Z", "2026-12-31T23:59:59.999999999Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
		"2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z",
		"2026-01-01T00:00:00,5Z", "2026-01-01T00:00:00+00:00", "2026-01-01 00:00:00Z", "2026-1-01T00:00:00Z",
	}
	for i := 1; i <= 9; i++ {
		in = append(in, "2026-11-25T21:36:46."+strings.Repeat("7", i)+"Z")
	}
	for _, s := range in {
		got, ok := plainUTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok && (err != nil || !got.Equal(want)) {
			t.Errorf("%s: plainUTC gave %v, time.Parse %v (%v)", s, got, want, err)
		}
		if !ok && err == nil && strings.HasSuffix(s, "Z") && !strings.Contains(s, ",") && len(s) <= 30 {
			t.Errorf("%s: plainUTC refused what time.Parse reads", s)
		}
	}
}
