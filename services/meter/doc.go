// Package meter is `burnrate meter`: it turns the usage stream into what the
// killswitch decides on, within a second, and finds the spend spikes nobody
// would see until the invoice.
//
// Two stages run in one process, each a Kafka consumer group in a
// kgo.GroupTransactSession:
//
//   - The spend stage reads usage.v1 and gpu.v1 (read committed) and keeps,
//     per input partition, the spend deltas of every budget subject in
//     one-minute event-time windows, the stats of every agent run and a GPU
//     idle counter per GPU. Every FlushInterval it produces the deltas to
//     spend.v1, the changed runs and counters to meter-state.v1 and any GPU
//     idle anomaly to anomalies.v1, and commits them with the consumed
//     offsets in one transaction.
//   - The anomaly stage reads spend.v1, where all the deltas of a subject
//     share a partition, sums them per subject and minute, judges each
//     minute once the watermark (the newest window seen, less the allowed
//     lateness) has passed it, and commits anomalies, detector state and
//     offsets the same way.
//
// Exactly once: a delta is published only in the transaction that commits
// the offsets of the events it counts. When a transaction aborts (a
// rebalance, a fenced zombie, an error), the session rewinds to the
// committed offsets and the stage forgets its in-memory state; it is read
// back from meter-state.v1 (read committed, so only committed state) before
// the partition's next record is processed. A replica that takes a
// partition over does the same. Changelog records go to the changelog
// partition numbered like the input partition, which is why meter-state.v1
// needs at least as many partitions as any input topic.
package meter
