// Package ktopics is the one catalog of Burnrate's Kafka topics (names, keys,
// partitions, replication and configs) and the code that creates or checks
// them on a cluster with kadm.
//
// Topic names are built here and nowhere else. Ensure never deletes a topic,
// never shrinks or grows partitions and never rewrites a config on its own:
// it creates what is missing and reports what differs.
package ktopics

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Topic is one catalog entry. Name excludes the configurable prefix.
type Topic struct {
	Name              string
	Key               string // what the record key is, for people
	WrittenBy         string
	ReadBy            string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// Topic names without the prefix.
const (
	Usage       = "usage.v1"
	GPU         = "gpu.v1"
	Spend       = "spend.v1"
	Anomalies   = "anomalies.v1"
	BudgetState = "budget-state.v1"
	Verdicts    = "verdicts.v1"
	// DeadLetter holds records the sink could not decode or validate, each
	// with the error and its source topic, partition and offset in headers.
	DeadLetter = "dead-letter.v1"
	// MeterState is the meter's changelog: agent runs, GPU idle counters
	// and anomaly detector state, written in the meter's transactions and
	// read back when a meter replica takes a partition over.
	MeterState = "meter-state.v1"
	// BudgetEvents holds what the killswitch did or noticed (thresholds,
	// exhausted budgets, forecasts, loop breaks, manual kills), written in
	// its transactions; the sink puts it in budget_events.
	BudgetEvents = "budget-events.v1"
	// Instances holds heartbeats of live ingress instances, so the
	// killswitch can split leases across them.
	Instances = "instances.v1"
)

func deleteAfter(d time.Duration) map[string]string {
	return map[string]string{
		"cleanup.policy": "delete",
		"retention.ms":   strconv.FormatInt(d.Milliseconds(), 10),
	}
}

func compacted() map[string]string {
	return map[string]string{
		"cleanup.policy":            "compact",
		"min.cleanable.dirty.ratio": "0.1",
		"segment.ms":                strconv.FormatInt(time.Hour.Milliseconds(), 10),
	}
}

const day = 24 * time.Hour

// Catalog returns every topic of design.md, in a stable order.
func Catalog() []Topic {
	return []Topic{
		{Name: Usage, Key: "agent run id, else virtual key id", WrittenBy: "ingress", ReadBy: "sink, meter, anyone",
			Partitions: 12, ReplicationFactor: 3, Configs: deleteAfter(7 * day)},
		{Name: GPU, Key: "GPU UUID", WrittenBy: "gpu-agent", ReadBy: "sink, meter",
			Partitions: 6, ReplicationFactor: 3, Configs: deleteAfter(7 * day)},
		{Name: Spend, Key: "budget subject (e.g. team=payments)", WrittenBy: "meter (transactional)", ReadBy: "killswitch",
			Partitions: 6, ReplicationFactor: 3, Configs: deleteAfter(day)},
		{Name: Anomalies, Key: "subject", WrittenBy: "meter", ReadBy: "sink, anyone",
			Partitions: 3, ReplicationFactor: 3, Configs: deleteAfter(30 * day)},
		{Name: BudgetState, Key: "subject + period", WrittenBy: "killswitch (transactional)", ReadBy: "killswitch restore",
			Partitions: 6, ReplicationFactor: 3, Configs: compacted()},
		{Name: Verdicts, Key: "subject", WrittenBy: "killswitch", ReadBy: "every ingress (all partitions, from the start), sink",
			Partitions: 3, ReplicationFactor: 3, Configs: compacted()},
		{Name: DeadLetter, Key: "the source record's key", WrittenBy: "sink", ReadBy: "people fixing producers",
			Partitions: 3, ReplicationFactor: 3, Configs: deleteAfter(30 * day)},
		{Name: MeterState, Key: "stage/input partition/state key; partition = the input partition", WrittenBy: "meter (transactional)", ReadBy: "meter restore",
			Partitions: 12, ReplicationFactor: 3, Configs: compacted()},
		{Name: BudgetEvents, Key: "subject", WrittenBy: "killswitch (transactional)", ReadBy: "sink, anyone",
			Partitions: 3, ReplicationFactor: 3, Configs: deleteAfter(30 * day)},
		{Name: Instances, Key: "instance id", WrittenBy: "ingress (heartbeats; tombstone on shutdown)", ReadBy: "killswitch (all partitions, from the start)",
			Partitions: 1, ReplicationFactor: 3, Configs: compacted()},
	}
}

// Lookup returns the catalog entry for a name without prefix.
func Lookup(name string) (Topic, error) {
	for _, t := range Catalog() {
		if t.Name == name {
			return t, nil
		}
	}
	return Topic{}, fmt.Errorf("ktopics: %q is not in the catalog", name)
}

// Names maps every catalog topic to its full name under prefix.
type Names struct{ prefix string }

// WithPrefix returns the topic names under prefix (e.g. "burnrate.").
func WithPrefix(prefix string) Names { return Names{prefix: prefix} }

// Full returns prefix + name.
func (n Names) Full(name string) string { return n.prefix + name }

// Usage and the others return the full topic names.
func (n Names) Usage() string       { return n.prefix + Usage }
func (n Names) GPU() string         { return n.prefix + GPU }
func (n Names) Spend() string       { return n.prefix + Spend }
func (n Names) Anomalies() string   { return n.prefix + Anomalies }
func (n Names) BudgetState() string { return n.prefix + BudgetState }
func (n Names) Verdicts() string    { return n.prefix + Verdicts }
func (n Names) DeadLetter() string  { return n.prefix + DeadLetter }
func (n Names) MeterState() string  { return n.prefix + MeterState }

// BudgetEvents returns the full name of budget-events.v1.
func (n Names) BudgetEvents() string { return n.prefix + BudgetEvents }

// Instances returns the full name of instances.v1.
func (n Names) Instances() string { return n.prefix + Instances }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
