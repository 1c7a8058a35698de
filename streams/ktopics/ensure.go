package ktopics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Status of one topic after Ensure.
type Status string

const (
	Created  Status = "created"
	OK       Status = "ok"
	Mismatch Status = "mismatch"
)

// TopicReport is what Ensure found or did for one topic.
type TopicReport struct {
	Topic  string   `json:"topic"`
	Status Status   `json:"status"`
	Diffs  []string `json:"diffs,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Report covers every catalog topic.
type Report struct {
	Topics []TopicReport `json:"topics"`
}

// Changed reports whether Ensure created anything.
func (r Report) Changed() bool {
	for _, t := range r.Topics {
		if t.Status == Created {
			return true
		}
	}
	return false
}

// Mismatches lists the topics whose live settings differ from the catalog.
func (r Report) Mismatches() []TopicReport {
	var out []TopicReport
	for _, t := range r.Topics {
		if t.Status == Mismatch {
			out = append(out, t)
		}
	}
	return out
}

func (r Report) String() string {
	var b strings.Builder
	for _, t := range r.Topics {
		fmt.Fprintf(&b, "%-9s %s", t.Status, t.Topic)
		if len(t.Diffs) > 0 {
			fmt.Fprintf(&b, ": %s", strings.Join(t.Diffs, "; "))
		}
		if len(t.Notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(t.Notes, "; "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Admin is the part of kadm.Client that Ensure uses.
type Admin interface {
	ListBrokers(ctx context.Context) (kadm.BrokerDetails, error)
	ListTopics(ctx context.Context, topics ...string) (kadm.TopicDetails, error)
	CreateTopic(ctx context.Context, partitions int32, replicationFactor int16, configs map[string]*string, topic string) (kadm.CreateTopicResponse, error)
	DescribeTopicConfigs(ctx context.Context, topics ...string) (kadm.ResourceConfigs, error)
}

var _ Admin = (*kadm.Client)(nil)

// Ensure creates every missing catalog topic under prefix and compares the
// existing ones with the catalog. The replication factor is capped at the
// number of brokers (a single dev broker gets 1), with a note.
func Ensure(ctx context.Context, adm Admin, prefix string, catalog []Topic) (Report, error) {
	var rep Report
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return rep, fmt.Errorf("ktopics: list brokers: %w", err)
	}
	names := make([]string, len(catalog))
	for i, t := range catalog {
		names[i] = prefix + t.Name
	}
	live, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return rep, fmt.Errorf("ktopics: list topics: %w", err)
	}
	var existing []string
	for _, t := range catalog {
		full := prefix + t.Name
		rf := t.ReplicationFactor
		var notes []string
		if n := int16(len(brokers)); n > 0 && rf > n {
			notes = append(notes, fmt.Sprintf("replication factor %d: catalog wants %d, cluster has %d broker(s)", n, rf, n))
			rf = n
		}
		td, ok := live[full]
		if ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			existing = append(existing, full)
			rep.Topics = append(rep.Topics, TopicReport{Topic: full, Status: OK, Diffs: liveDiffs(td, t.Partitions, rf), Notes: notes})
			continue
		}
		configs := make(map[string]*string, len(t.Configs))
		for k, v := range t.Configs {
			configs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, t.Partitions, rf, configs, full)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			// Created by someone else since we listed (metadata lags a
			// fresh topic): check it like any existing one.
			td, err := waitTopic(ctx, adm, full)
			if err != nil {
				return rep, err
			}
			existing = append(existing, full)
			rep.Topics = append(rep.Topics, TopicReport{Topic: full, Status: OK, Diffs: liveDiffs(td, t.Partitions, rf), Notes: notes})
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("ktopics: create %s: %w", full, err)
		}
		rep.Topics = append(rep.Topics, TopicReport{Topic: full, Status: Created, Notes: notes})
	}
	if err := waitVisible(ctx, adm, rep); err != nil {
		return rep, err
	}
	if len(existing) == 0 {
		return rep, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return rep, fmt.Errorf("ktopics: describe configs: %w", err)
	}
	for i := range rep.Topics {
		tr := &rep.Topics[i]
		if tr.Status == Created {
			continue
		}
		rc, err := rcs.On(tr.Topic, nil)
		if err != nil || rc.Err != nil {
			return rep, fmt.Errorf("ktopics: describe configs of %s: %w", tr.Topic, errors.Join(err, rc.Err))
		}
		want := catalog[i].Configs
		got := map[string]string{}
		for _, c := range rc.Configs {
			got[c.Key] = c.MaybeValue()
		}
		for _, k := range sortedKeys(want) {
			if got[k] != want[k] {
				tr.Diffs = append(tr.Diffs, fmt.Sprintf("%s is %q, catalog wants %q", k, got[k], want[k]))
			}
		}
		if len(tr.Diffs) > 0 {
			tr.Status = Mismatch
		}
	}
	return rep, nil
}

func liveDiffs(td kadm.TopicDetail, partitions int32, rf int16) []string {
	var diffs []string
	if n := int32(len(td.Partitions)); n != partitions {
		diffs = append(diffs, fmt.Sprintf("%d partitions, catalog wants %d (not changed automatically: it would move keys between partitions)", n, partitions))
	}
	if got := int16(td.Partitions.NumReplicas()); got != rf {
		diffs = append(diffs, fmt.Sprintf("replication factor %d, catalog wants %d", got, rf))
	}
	return diffs
}

// waitVisible returns once every created topic shows all its partitions
// with a leader, so callers can produce right after Ensure.
func waitVisible(ctx context.Context, adm Admin, rep Report) error {
	var created []string
	for _, t := range rep.Topics {
		if t.Status == Created {
			created = append(created, t.Topic)
		}
	}
	if len(created) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		td, err := adm.ListTopics(ctx, created...)
		if err == nil && allLed(td, created) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ktopics: created topics not visible with leaders: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitTopic returns the details of a topic once all its partitions have a
// leader.
func waitTopic(ctx context.Context, adm Admin, name string) (kadm.TopicDetail, error) {
	if err := waitVisible(ctx, adm, Report{Topics: []TopicReport{{Topic: name, Status: Created}}}); err != nil {
		return kadm.TopicDetail{}, err
	}
	td, err := adm.ListTopics(ctx, name)
	if err != nil {
		return kadm.TopicDetail{}, fmt.Errorf("ktopics: list %s: %w", name, err)
	}
	return td[name], nil
}

func allLed(td kadm.TopicDetails, names []string) bool {
	for _, n := range names {
		d, ok := td[n]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return false
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}
