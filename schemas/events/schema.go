package events

import (
	"embed"
	"fmt"
	"reflect"
)

// Payload names. Every event's "schema" field holds one of these.
const (
	SchemaUsage       = "usage.v1"
	SchemaGPU         = "gpu.v1"
	SchemaSpend       = "spend.v1"
	SchemaAnomaly     = "anomaly.v1"
	SchemaBudgetState = "budget-state.v1"
	SchemaVerdict     = "verdict.v1"
	SchemaBudgetEvent = "budget-event.v1"
	SchemaInstance    = "instance.v1"
)

// Event is implemented by every payload type, by value and by pointer.
type Event interface {
	// SchemaName returns the payload name of the type (e.g. "usage.v1"),
	// whatever the value's Schema field holds.
	SchemaName() string
	// Validate reports every problem found, each a *FieldError.
	Validate() error
}

var (
	_ Event = Usage{}
	_ Event = GPUSample{}
	_ Event = Spend{}
	_ Event = Anomaly{}
	_ Event = BudgetState{}
	_ Event = Verdict{}
	_ Event = BudgetEvent{}
	_ Event = Instance{}
)

// SchemaFS holds the JSON Schemas, one per payload, at
// jsonschema/<name>.json.
//
//go:embed jsonschema/*.json
var SchemaFS embed.FS

// Schema ties a payload name to its Go type and its JSON Schema file.
type Schema struct {
	Name string       // payload name, e.g. "usage.v1"
	Path string       // path of the JSON Schema within SchemaFS
	Type reflect.Type // the Go type, e.g. events.Usage
}

// Schemas returns every payload schema, in a fixed order.
func Schemas() []Schema {
	return []Schema{
		newSchema[Usage](SchemaUsage),
		newSchema[GPUSample](SchemaGPU),
		newSchema[Spend](SchemaSpend),
		newSchema[Anomaly](SchemaAnomaly),
		newSchema[BudgetState](SchemaBudgetState),
		newSchema[Verdict](SchemaVerdict),
		newSchema[BudgetEvent](SchemaBudgetEvent),
		newSchema[Instance](SchemaInstance),
	}
}

// LookupSchema returns the schema with the given payload name.
func LookupSchema(name string) (Schema, bool) {
	for _, s := range Schemas() {
		if s.Name == name {
			return s, true
		}
	}
	return Schema{}, false
}

// SchemaJSON returns the JSON Schema document of the named payload.
func SchemaJSON(name string) ([]byte, error) {
	s, ok := LookupSchema(name)
	if !ok {
		return nil, fmt.Errorf("events: unknown schema %q", name)
	}
	b, err := SchemaFS.ReadFile(s.Path)
	if err != nil {
		return nil, fmt.Errorf("events: read JSON Schema of %s: %w", name, err)
	}
	return b, nil
}

func newSchema[T Event](name string) Schema {
	return Schema{Name: name, Path: "jsonschema/" + name + ".json", Type: reflect.TypeFor[T]()}
}
