// Package events owns the payloads of Burnrate's Kafka topics: one Go type,
// one JSON Schema (draft 2020-12, embedded in SchemaFS) and golden fixtures
// per payload name (usage.v1, gpu.v1, spend.v1, anomaly.v1, budget-state.v1,
// verdict.v1), plus the codec and the validation every producer runs before
// it writes.
//
// Conventions every payload follows:
//   - a "schema" field holding the payload name, so consumers can dispatch;
//   - snake_case field names;
//   - money as integer nano-USD (1e-9 USD) in int64 fields ending in
//     _nano_usd, never floats;
//   - times as RFC 3339 strings in UTC with a Z suffix (decoders convert
//     other offsets to UTC; Validate rejects non-UTC times).
//
// What this package must never do:
//   - carry prompt or completion content, or provider credentials: a usage
//     event identifies a prompt only by a hex fingerprint;
//   - change a schema other than additively: fields are added, never renamed,
//     retyped or removed, and never made newly required. Breaking changes get a
//     new name (usage.v2). Decoders therefore ignore unknown fields, and only
//     malformed JSON is a decode error;
//   - do I/O, log, or hold mutable package state. Topic names, keys and
//     partition counts belong to the topic catalog in streams/, not here.
package events
