package killswitch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// view reads instances.v1 and verdicts.v1 (every partition, from the
// start, committed records, no group): the live ingress instances a lease
// is split across, and the verdicts of every replica for the admin API.
type view struct {
	mu        sync.Mutex
	instances map[string]time.Time // instance → expires_at
	verdicts  map[string]events.Verdict
	now       func() time.Time
	caughtUp  chan struct{}
}

func newView(now func() time.Time) *view {
	return &view{instances: map[string]time.Time{}, verdicts: map[string]events.Verdict{}, now: now, caughtUp: make(chan struct{})}
}

// live counts instances whose heartbeat has not expired.
func (v *view) live() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	now, n := v.now(), 0
	for _, exp := range v.instances {
		if now.Before(exp) {
			n++
		}
	}
	return n
}

// active lists unexpired verdicts other than allow, by subject.
func (v *view) active() []events.Verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	var out []events.Verdict
	for _, vd := range v.verdicts {
		if vd.Action != events.ActionAllow && now.Before(vd.ExpiresAt) {
			out = append(out, vd)
		}
	}
	slices.SortFunc(out, func(a, b events.Verdict) int { return strings.Compare(a.Subject, b.Subject) })
	return out
}

// latest returns the newest verdict of subject, expired or not.
func (v *view) latest(subject string) (events.Verdict, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	vd, ok := v.verdicts[subject]
	return vd, ok
}

// manual returns the active verdicts an admin issued (to restore kills).
func (v *view) manual() map[string]events.Verdict {
	out := map[string]events.Verdict{}
	for _, vd := range v.active() {
		if strings.HasPrefix(vd.IssuedBy, adminPrefix) {
			out[vd.Subject] = vd
		}
	}
	return out
}

// run follows both topics until ctx ends; caughtUp closes once it has read
// what was there when it started.
func (v *view) run(ctx context.Context, kcfg kclient.Config, log *zap.Logger) error {
	names := ktopics.WithPrefix(kcfg.TopicPrefix)
	topics := []string{names.Instances(), names.Verdicts()}
	cl, err := kclient.New(kcfg, "killswitch-view",
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())
	if err != nil {
		return fmt.Errorf("killswitch view: %w", err)
	}
	defer cl.Close()
	ends, err := endOffsets(ctx, kadm.NewClient(cl), topics)
	if err != nil {
		return fmt.Errorf("killswitch view: %w", err)
	}
	if len(ends) == 0 {
		close(v.caughtUp)
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			log.Warn("view fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		v.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			k := tpKey{r.Topic, r.Partition}
			if end, ok := ends[k]; ok && r.Offset >= end-1 {
				delete(ends, k)
				if len(ends) == 0 {
					close(v.caughtUp)
				}
			}
			if r.Attrs.IsControl() {
				return
			}
			switch r.Topic {
			case names.Instances():
				if r.Value == nil {
					delete(v.instances, string(r.Key))
				} else if in, err := events.DecodeInstance(r.Value); err == nil && in.Validate() == nil {
					v.instances[in.Instance] = in.ExpiresAt
				}
			case names.Verdicts():
				if r.Value == nil {
					delete(v.verdicts, string(r.Key))
				} else if vd, err := events.DecodeVerdict(r.Value); err == nil && vd.Validate() == nil {
					v.verdicts[vd.Subject] = vd
				}
			}
		})
		v.mu.Unlock()
	}
}

type tpKey struct {
	topic     string
	partition int32
}

// endOffsets lists the last stable offset of every partition with records.
func endOffsets(ctx context.Context, adm *kadm.Client, topics []string) (map[tpKey]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[tpKey]int64{}
	var firstErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			out[tpKey{o.Topic, o.Partition}] = o.Offset
		}
	})
	return out, firstErr
}
