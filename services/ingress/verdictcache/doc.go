// Package verdictcache is the in-memory copy of the verdicts topic that every
// ingress reads before every model call: Cache answers "may this call go
// ahead, and how?" for all subjects of a call at once, and Consumer keeps it
// current by reading verdicts.v1 (all partitions, from the start, no group).
//
// verdictcache never blocks; lookups are lock-free and allocation-free.
// Check reads an immutable snapshot swapped in by the single writer, and the
// only shared mutable state it touches (throttle windows, lease shares) is
// updated with compare-and-swap. It never waits on Kafka: while the consumer
// has not caught up, Check answers by the fail-open setting instead.
package verdictcache
