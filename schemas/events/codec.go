package events

import (
	"fmt"
	"time"

	"github.com/segmentio/encoding/json"
)

// Encoding flags: HTML escaping and sorted map keys match encoding/json, so
// the bytes are deterministic (golden fixtures depend on it).
const appendFlags = json.EscapeHTML | json.SortMapKeys

// Encode returns the JSON encoding of e. It does not validate: producers call
// e.Validate first.
func Encode(e Event) ([]byte, error) {
	return Append(nil, e)
}

// Append appends the JSON encoding of e to dst, so hot paths can reuse a
// buffer. Pass a pointer (&u) to avoid copying the event.
func Append(dst []byte, e Event) ([]byte, error) {
	b, err := json.Append(dst, e, appendFlags)
	if err != nil {
		return dst, fmt.Errorf("%s: encode: %w", e.SchemaName(), err)
	}
	return b, nil
}

// DecodeUsage decodes a usage.v1 payload.
func DecodeUsage(b []byte) (Usage, error) {
	var u Usage
	err := DecodeUsageInto(b, &u)
	return u, err
}

// DecodeGPUSample decodes a gpu.v1 payload.
func DecodeGPUSample(b []byte) (GPUSample, error) { return decode[GPUSample](b) }

// DecodeSpend decodes a spend.v1 payload.
func DecodeSpend(b []byte) (Spend, error) { return decode[Spend](b) }

// DecodeAnomaly decodes an anomaly.v1 payload.
func DecodeAnomaly(b []byte) (Anomaly, error) { return decode[Anomaly](b) }

// DecodeBudgetState decodes a budget-state.v1 payload.
func DecodeBudgetState(b []byte) (BudgetState, error) { return decode[BudgetState](b) }

// DecodeVerdict decodes a verdict.v1 payload.
func DecodeVerdict(b []byte) (Verdict, error) { return decode[Verdict](b) }

// DecodeBudgetEvent decodes a budget-event.v1 payload.
func DecodeBudgetEvent(b []byte) (BudgetEvent, error) { return decode[BudgetEvent](b) }

// DecodeInstance decodes an instance.v1 payload.
func DecodeInstance(b []byte) (Instance, error) { return decode[Instance](b) }

// Decode decodes any payload, dispatching on its "schema" field. The dynamic
// type of the result is the value type (events.Usage, not *events.Usage).
func Decode(b []byte) (Event, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("events: decode: %w", err)
	}
	switch head.Schema {
	case SchemaUsage:
		return asEvent(DecodeUsage(b))
	case SchemaGPU:
		return asEvent(DecodeGPUSample(b))
	case SchemaSpend:
		return asEvent(DecodeSpend(b))
	case SchemaAnomaly:
		return asEvent(DecodeAnomaly(b))
	case SchemaBudgetState:
		return asEvent(DecodeBudgetState(b))
	case SchemaVerdict:
		return asEvent(DecodeVerdict(b))
	case SchemaBudgetEvent:
		return asEvent(DecodeBudgetEvent(b))
	case SchemaInstance:
		return asEvent(DecodeInstance(b))
	}
	return nil, fmt.Errorf("events: decode: unknown schema %q", head.Schema)
}

// decodable is an Event whose pointer can normalize itself after decoding.
type decodable[T any] interface {
	*T
	Event
	normalize()
}

// decode unmarshals b, ignoring unknown fields (schemas evolve additively),
// and normalizes the result: times in UTC, empty maps and slices nil, so that
// decoding what Encode wrote gives back an equal value.
// DecodeUsageInto decodes into *u, reusing its memory (a sink decoding
// millions of events keeps one Usage instead of allocating one per event).
func DecodeUsageInto(b []byte, u *Usage) error {
	return decodeUsage(b, u, nil)
}

// UsageDecoder is DecodeUsageInto for a stream of events: values that
// repeat (attribution, models, price versions) share one string instead of
// allocating on every event. Not safe for concurrent use.
type UsageDecoder struct{ in interner }

// Decode is DecodeUsageInto.
func (d *UsageDecoder) Decode(b []byte, u *Usage) error { return decodeUsage(b, u, &d.in) }

func decodeUsage(b []byte, u *Usage, in *interner) error {
	*u = Usage{}
	if decodeUsageFast(b, u, in) {
		u.normalize()
		return nil
	}
	return decodeInto[Usage](b, u)
}

// DecodeGPUSampleInto is DecodeUsageInto for gpu.v1.
func DecodeGPUSampleInto(b []byte, g *GPUSample) error { return decodeInto[GPUSample](b, g) }

// DecodeAnomalyInto is DecodeUsageInto for anomaly.v1.
func DecodeAnomalyInto(b []byte, a *Anomaly) error { return decodeInto[Anomaly](b, a) }

// DecodeSpendInto is DecodeUsageInto for spend.v1.
func DecodeSpendInto(b []byte, s *Spend) error { return decodeInto[Spend](b, s) }

// DecodeBudgetEventInto is DecodeUsageInto for budget-event.v1.
func DecodeBudgetEventInto(b []byte, e *BudgetEvent) error { return decodeInto[BudgetEvent](b, e) }

// DecodeVerdictInto is DecodeUsageInto for verdict.v1.
func DecodeVerdictInto(b []byte, v *Verdict) error { return decodeInto[Verdict](b, v) }

func decodeInto[T any, P decodable[T]](b []byte, p P) error {
	var zero T
	*p = zero
	if err := json.Unmarshal(b, p); err != nil {
		*p = zero
		return fmt.Errorf("%s: decode: %w", p.SchemaName(), err)
	}
	p.normalize()
	return nil
}

func decode[T any, P decodable[T]](b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("%s: decode: %w", P(&v).SchemaName(), err)
	}
	P(&v).normalize()
	return v, nil
}

func asEvent[T Event](v T, err error) (Event, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}
