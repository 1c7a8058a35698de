package events

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fuzzDecoder checks that decode never panics, and that anything it accepts
// and that validates survives Encode and decode unchanged. The seed corpus
// is the golden fixtures of the schema.
func fuzzDecoder[T Event](f *testing.F, schema string, decode func([]byte) (T, error)) {
	files, err := filepath.Glob(filepath.Join("testdata", schema+".*.golden.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden fixtures for %s: %v", schema, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"schema":"` + schema + `","unknown":[1,{"a":null}]}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := decode(in)
		if err != nil || v.Validate() != nil {
			return
		}
		out, err := Encode(v)
		if err != nil {
			t.Fatalf("valid value does not encode: %v\n%+v", err, v)
		}
		v2, err := decode(out)
		if err != nil {
			t.Fatalf("encoder output does not decode: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed the value:\nin   %s\nout  %s\nv    %+v\nv2   %+v", in, out, v, v2)
		}
		if err := v2.Validate(); err != nil {
			t.Fatalf("round trip made the value invalid: %v", err)
		}
	})
}

func FuzzDecodeUsage(f *testing.F)       { fuzzDecoder(f, SchemaUsage, DecodeUsage) }
func FuzzDecodeGPUSample(f *testing.F)   { fuzzDecoder(f, SchemaGPU, DecodeGPUSample) }
func FuzzDecodeSpend(f *testing.F)       { fuzzDecoder(f, SchemaSpend, DecodeSpend) }
func FuzzDecodeAnomaly(f *testing.F)     { fuzzDecoder(f, SchemaAnomaly, DecodeAnomaly) }
func FuzzDecodeBudgetEvent(f *testing.F) { fuzzDecoder(f, SchemaBudgetEvent, DecodeBudgetEvent) }
func FuzzDecodeInstance(f *testing.F)    { fuzzDecoder(f, SchemaInstance, DecodeInstance) }
func FuzzDecodeBudgetState(f *testing.F) { fuzzDecoder(f, SchemaBudgetState, DecodeBudgetState) }
func FuzzDecodeVerdict(f *testing.F)     { fuzzDecoder(f, SchemaVerdict, DecodeVerdict) }

// FuzzDecode covers the dispatching decoder with every fixture as a seed.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		if err != nil || e.Validate() != nil {
			return
		}
		out, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Decode(out)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip: %v\nin  %s\nout %s", err, in, out)
		}
	})
}

// FuzzDecodeUsageFast holds the fast usage decoder to the JSON library:
// whatever it accepts must decode to the same value there.
func FuzzDecodeUsageFast(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", SchemaUsage+".*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no usage fixtures: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"schema":"usage.v1","tokens":{"input":-0},"attribution":{"tags":{}}}`))
	f.Add([]byte(` {"latency_ms":123456789012345678,"stream":true} `))
	f.Fuzz(func(t *testing.T, in []byte) {
		var fast Usage
		if !decodeUsageFast(in, &fast, &interner{}) {
			return
		}
		fast.normalize()
		var lib Usage
		if err := decodeInto[Usage](in, &lib); err != nil {
			t.Fatalf("fast decoder accepted what the JSON library rejects (%v):\n%s", err, in)
		}
		if !reflect.DeepEqual(fast, lib) {
			t.Fatalf("decoders disagree on\n%s\nfast %+v\nlib  %+v", in, fast, lib)
		}
	})
}
