// Package killswitch turns budgets and agent-loop rules into verdicts: it
// reads spend.v1 (the meter's per-subject deltas and agent-run stats) and
// anomalies.v1, keeps every budget's state per period, and writes
// verdicts.v1, budget-events.v1 and its changelog budget-state.v1 in one
// Kafka transaction with the consumed offsets (streams/kstage). Alerts go to
// webhooks only after their transaction commits.
//
// Budgets (services/killswitch/policy) have a subject, a period in a time
// zone, a money and/or token limit, soft thresholds and a hard action. A
// budget's state lives with the spend.v1 partition its subject hashes to,
// so replicas split budgets the way Kafka splits partitions, and the
// changelog record of a budget goes to the same partition number
// (restored when the partition is assigned).
//
// Bounded overshoot: while a budget is far from its limit nothing is
// published. When the remaining money falls under max(burn over the last
// seconds × lease_horizon, lease_below_pct of the limit) a lease verdict
// splits it across the live ingress instances (their heartbeats on
// instances.v1); each ingress reserves a call's worst case against its
// share, so spend stops at the limit however fast it comes. A lease is
// re-split only after spend has been quiet for lease_quiet (spend still in
// flight is never granted twice) or when the instance count changes. At
// 100 % the hard action applies until the period ends; at the period end an
// allow lifts it, on the killswitch's clock.
//
// Loop rules judge the agent-run stats the meter attaches to agent_run=
// subjects and block only that run for block_for. Manual kills and lifts
// come from the admin API, are audited as budget events, and survive a
// restart (they are read back from verdicts.v1).
//
// The killswitch never sits on the request path: the ingress reads its
// verdicts from memory. It must never publish a verdict outside a committed
// transaction, nor alert for one that aborted.
package killswitch
