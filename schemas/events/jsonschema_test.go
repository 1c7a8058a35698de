package events

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

type jsonSchema = map[string]any

func loadSchema(t *testing.T, s Schema) jsonSchema {
	t.Helper()
	b, err := SchemaFS.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	var doc jsonSchema
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", s.Path, err)
	}
	return doc
}

// TestSchemasMatchGoTypes walks each Go type (by json tags) and its JSON
// Schema side by side and reports fields present in one only, type
// mismatches, required lists that disagree with omitempty, and enums that
// disagree with the Go constants.
func TestSchemasMatchGoTypes(t *testing.T) {
	for _, s := range Schemas() {
		t.Run(s.Name, func(t *testing.T) {
			doc := loadSchema(t, s)
			if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %v, want draft 2020-12", doc["$schema"])
			}
			if doc["title"] != s.Name {
				t.Errorf("title = %v, want %s", doc["title"], s.Name)
			}
			if c := prop(doc, "schema")["const"]; c != s.Name {
				t.Errorf("properties.schema.const = %v, want %s", c, s.Name)
			}
			for _, p := range compareType(s.Name, s.Type, doc) {
				t.Error(p)
			}
		})
	}
}

func prop(s jsonSchema, name string) jsonSchema {
	props, _ := s["properties"].(map[string]any)
	p, _ := props[name].(map[string]any)
	return p
}

// enumValues lists the allowed values of each Go enum type.
func enumValues() map[reflect.Type]string {
	return map[reflect.Type]string{
		reflect.TypeFor[Status]():          statusValues,
		reflect.TypeFor[Action]():          actionValues,
		reflect.TypeFor[Period]():          periodValues,
		reflect.TypeFor[Detector]():        detectorValues,
		reflect.TypeFor[Severity]():        severityValues,
		reflect.TypeFor[GPUSource]():       gpuSourceValues,
		reflect.TypeFor[BudgetEventKind](): budgetEventKindValues,
	}
}

// compareType returns the disagreements between Go type typ and schema s at path.
func compareType(path string, typ reflect.Type, s jsonSchema) []string {
	var problems []string
	report := func(format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	if d, _ := s["description"].(string); d == "" {
		report("schema has no description")
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if want, got := jsonType(typ), s["type"]; got != want {
		report("Go type %s is JSON %s, schema says %v", typ, want, got)
		return problems
	}
	if typ == reflect.TypeFor[time.Time]() && s["format"] != "date-time" {
		report("time.Time needs format date-time, schema has %v", s["format"])
	}
	if values, ok := enumValues()[typ]; ok {
		var enum []string
		for _, v := range asSlice(s["enum"]) {
			enum = append(enum, fmt.Sprint(v))
		}
		if got := strings.Join(enum, "|"); got != values {
			report("schema enum %s, Go allows %s", got, values)
		}
	}

	switch typ.Kind() {
	case reflect.Slice:
		items, _ := s["items"].(map[string]any)
		if want, got := jsonType(typ.Elem()), items["type"]; got != want {
			report("items: Go type %s is JSON %s, schema says %v", typ.Elem(), want, got)
		}
	case reflect.Map:
		items, _ := s["additionalProperties"].(map[string]any)
		if want, got := jsonType(typ.Elem()), items["type"]; got != want {
			report("additionalProperties: Go type %s is JSON %s, schema says %v", typ.Elem(), want, got)
		}
	case reflect.Struct:
		if typ == reflect.TypeFor[time.Time]() {
			break
		}
		props, _ := s["properties"].(map[string]any)
		var required []string
		seen := map[string]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				report("field %s has no json name", f.Name)
				continue
			}
			seen[name] = true
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required = append(required, name)
			}
			sub, ok := props[name].(map[string]any)
			if !ok {
				report("field %q (%s.%s) is missing from the schema", name, typ.Name(), f.Name)
				continue
			}
			problems = append(problems, compareType(path+"."+name, f.Type, sub)...)
		}
		for name := range props {
			if !seen[name] {
				report("schema property %q has no field in %s", name, typ)
			}
		}
		var schemaRequired []string
		for _, r := range asSlice(s["required"]) {
			schemaRequired = append(schemaRequired, fmt.Sprint(r))
		}
		sort.Strings(required)
		sort.Strings(schemaRequired)
		if !slices.Equal(required, schemaRequired) {
			report("required %v, but fields without omitempty are %v", schemaRequired, required)
		}
	}
	return problems
}

func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "unsupported kind " + t.Kind().String()
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// TestCompareTypeCatchesDrift makes sure the walk above can fail.
func TestCompareTypeCatchesDrift(t *testing.T) {
	type inner struct {
		N int64 `json:"n"`
	}
	type event struct {
		A string  `json:"a"`
		B float64 `json:"b,omitempty"`
		I inner   `json:"i"`
	}
	s := jsonSchema{"type": "object", "description": "d", "required": []any{"a", "i"}, "properties": map[string]any{
		"a": map[string]any{"type": "string", "description": "d"},
		"b": map[string]any{"type": "integer", "description": "d"},
		"i": map[string]any{"type": "object", "description": "d", "required": []any{"n"}, "properties": map[string]any{
			"m": map[string]any{"type": "integer", "description": "d"},
		}},
		"c": map[string]any{"type": "string", "description": "d"},
	}}
	got := strings.Join(compareType("x", reflect.TypeFor[event](), s), "\n")
	for _, want := range []string{
		`x.b: Go type float64 is JSON number, schema says integer`,
		`x.i: field "n" (inner.N) is missing from the schema`,
		`x.i: schema property "m" has no field in events.inner`,
		`x: schema property "c" has no field in events.event`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("compareType did not report %q; got:\n%s", want, got)
		}
	}
}

// TestFixturesMatchSchemas checks every golden fixture against its JSON
// Schema with a small validator for the keywords the schemas use.
func TestFixturesMatchSchemas(t *testing.T) {
	for name := range goldenCases() {
		schemaName := name[:strings.Index(name, ".v1")+3]
		s, ok := LookupSchema(schemaName)
		if !ok {
			t.Fatalf("%s: no schema %s", name, schemaName)
		}
		b, err := os.ReadFile(goldenPath(name))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		for _, p := range checkInstance("$", v, loadSchema(t, s)) {
			t.Errorf("%s: %s", name, p)
		}
	}
}

func checkInstance(path string, v any, s jsonSchema) []string {
	var problems []string
	report := func(format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	if c, ok := s["const"]; ok && c != v {
		report("%v, want const %v", v, c)
	}
	if enum, ok := s["enum"]; ok && !slices.Contains(asSlice(enum), v) {
		report("%v not in enum %v", v, enum)
	}
	num := func(k string) (float64, bool) { f, ok := s[k].(float64); return f, ok }
	switch x := v.(type) {
	case string:
		if s["type"] != "string" {
			report("string, want %v", s["type"])
		}
		if n, ok := num("minLength"); ok && float64(len(x)) < n {
			report("shorter than %v", n)
		}
		if n, ok := num("maxLength"); ok && float64(len(x)) > n {
			report("longer than %v", n)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			report("%q does not match %s", x, p)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil || !strings.HasSuffix(x, "Z") {
				report("%q is not an RFC 3339 UTC time", x)
			}
		}
	case float64:
		if s["type"] != "number" && !(s["type"] == "integer" && x == math.Trunc(x)) {
			report("%v, want %v", x, s["type"])
		}
		if n, ok := num("minimum"); ok && x < n {
			report("%v below minimum %v", x, n)
		}
		if n, ok := num("maximum"); ok && x > n {
			report("%v above maximum %v", x, n)
		}
	case bool:
		if s["type"] != "boolean" {
			report("boolean, want %v", s["type"])
		}
	case []any:
		if s["type"] != "array" {
			report("array, want %v", s["type"])
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range x {
			problems = append(problems, checkInstance(fmt.Sprintf("%s[%d]", path, i), e, items)...)
		}
	case map[string]any:
		if s["type"] != "object" {
			report("object, want %v", s["type"])
		}
		for _, r := range asSlice(s["required"]) {
			if _, ok := x[r.(string)]; !ok {
				report("missing required %q", r)
			}
		}
		if n, ok := num("maxProperties"); ok && float64(len(x)) > n {
			report("more than %v properties", n)
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		for k, e := range x {
			switch sub, ok := props[k].(map[string]any); {
			case ok:
				problems = append(problems, checkInstance(path+"."+k, e, sub)...)
			case extra != nil:
				problems = append(problems, checkInstance(path+"."+k, e, extra)...)
			default:
				report("property %q not in the schema", k)
			}
		}
	default:
		report("unexpected JSON value %T", v)
	}
	return problems
}

// TestCheckInstanceCatchesDrift makes sure the validator above can fail.
func TestCheckInstanceCatchesDrift(t *testing.T) {
	b, err := os.ReadFile(goldenPath("usage.v1.ok"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "id")
	v["status"] = "nuked"
	v["tokens"].(map[string]any)["output"] = -1.0
	v["occurred_at"] = "2025-03-14T10:26:53+01:00"
	got := checkInstance("$", v, loadSchema(t, Schema{Path: "jsonschema/usage.v1.json"}))
	if len(got) != 4 {
		t.Errorf("checkInstance found %d problems, want 4:\n%s", len(got), strings.Join(got, "\n"))
	}
}
