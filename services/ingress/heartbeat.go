package ingress

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
)

// heartbeatMisses is how many heartbeats an instance may miss before the
// killswitch stops counting it (its expires_at).
const heartbeatMisses = 3

// defaultInstanceID names this process when the config does not.
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("ingress-%s-%d", host, os.Getpid())
}

// announce tells the killswitch this ingress is alive, so that a lease is
// split across the live instances: a heartbeat to instances.v1 every
// interval, and a tombstone when ctx ends (a crashed instance expires
// instead). It returns after the tombstone was handed to the producer.
func announce(ctx context.Context, p *kgo.Client, topic, id string, interval time.Duration, now func() time.Time, log *zap.Logger) {
	started := now().UTC()
	failing := false
	beat := func() {
		at := now().UTC()
		v, err := events.Encode(&events.Instance{Schema: events.SchemaInstance, Instance: id, Role: "ingress",
			StartedAt: started, HeartbeatAt: at, ExpiresAt: at.Add(heartbeatMisses * interval)})
		if err != nil {
			log.Error("heartbeat: encode", zap.Error(err))
			return
		}
		p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil && !failing {
				log.Warn("heartbeat not delivered; the killswitch will stop counting this instance in its leases", zap.Error(err))
			}
			failing = err != nil
		})
	}
	beat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			beat()
		case <-ctx.Done():
			p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(id)}, nil) // tombstone
			return
		}
	}
}
