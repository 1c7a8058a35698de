// Package sink is `burnrate sink`: a Kafka consumer group that writes
// usage.v1, gpu.v1, anomalies.v1, verdicts.v1 and budget-events.v1 into the
// ClickHouse raw tables exactly once, across crashes, restarts and
// rebalances, on ClickHouse 18.16, which has no insert deduplication tokens.
//
// # How exactly-once works
//
// ClickHouse itself holds the progress. Every row carries the Kafka
// partition and offset it came from (kafka_partition, kafka_offset), and the
// sink keeps four rules:
//
//  1. One INSERT is all or nothing. A batch holds rows of one Kafka
//     partition, from one run of consecutive offsets, whose partition-key
//     month (toYYYYMM in the server's time zone) is the same, and fewer rows
//     than min_insert_block_size_rows. clickhouse-go sends it as one native
//     block, which the server writes as one part when the client ends the
//     INSERT: the part appears whole or not at all. A client killed mid-INSERT
//     leaves nothing.
//  2. Batches of a partition land in offset order, one at a time: a batch is
//     sent only after the previous one is confirmed. So the highest offset in
//     the table for a partition means every record up to it is handled.
//  3. On assignment (kgo.AdjustFetchOffsetsFn, before any fetch) a replica
//     reads max(kafka_offset) per partition from the table and starts right
//     after it. The committed Kafka offset is used only when it is further
//     ahead, which happens when the tail of a partition went to the
//     dead-letter topic (those records leave no row). Records below the start
//     offset that still arrive (a stale buffered fetch) are skipped.
//  4. After a failed INSERT the writer does not blindly retry: it counts the
//     batch's offsets in the table first. All of them: the INSERT landed
//     (the error was in the reply); none: insert again. Retries go on with
//     backoff until they succeed or the partition is taken away.
//
// On revoke or loss of a partition the writer stops retrying, lets an
// attempt already in flight finish, and drops what has not landed; the next
// owner reads ClickHouse and starts after what landed. Rebalances are blocked
// while a poll is being processed (kgo.BlockRebalanceOnPoll), so no record is
// half-added when a partition changes hands.
//
// Kafka offsets are committed after batches are confirmed, for lag tools
// only.
//
// # Limits, stated plainly
//
//   - A replica cut off from Kafka but not from ClickHouse for longer than
//     the session timeout can land the one batch it has in flight after
//     another replica took the partition over: a duplicate of at most one
//     batch. Kafka-level fencing cannot reach into ClickHouse.
//   - Materialized views (the rollups) are written by the server after the
//     raw part, in the same INSERT. A ClickHouse crash between the two leaves
//     the raw rows without their rollup rows; the raw table stays exact.
//   - Dead letters are at-least-once: a crash after producing them and
//     before confirming the batch produces them again.
//   - A database holds one deployment's data: two sinks with different topic
//     prefixes must not share tables.
//
// # Dead letters
//
// A record that fails to decode, to validate (events.Validate), or to fit a
// column (a DateTime outside 1970..2106) goes to dead-letter.v1 with its key
// and value unchanged and the reason, source topic, partition, offset and
// timestamp in headers; it is counted in burnrate_sink_dead_letters_total
// and never stalls its partition. Tombstones (null values, from compacted
// verdicts.v1) are skipped and counted.
//
// # Back-pressure
//
// A partition whose rows waiting for ClickHouse reach max_pending_rows is
// paused (kgo.PauseFetchPartitions) and resumed below half of it, so a slow
// or stopped ClickHouse bounds memory instead of exhausting it.
package sink
