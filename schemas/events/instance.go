package events

import "time"

// Instance (instance.v1) is a heartbeat of one running service instance.
// Every ingress announces itself so the killswitch can split a lease across
// the live ones: an instance counts until ExpiresAt, and a graceful
// shutdown writes a tombstone. Compacted topic; Kafka key: instance.
type Instance struct {
	Schema      string    `json:"schema"`
	Instance    string    `json:"instance"` // unique per process, e.g. "ingress-7f9c-host1-4242"
	Role        string    `json:"role"`     // "ingress"
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	ExpiresAt   time.Time `json:"expires_at"` // a few heartbeat intervals after heartbeat_at
}

// SchemaName returns "instance.v1".
func (Instance) SchemaName() string { return SchemaInstance }

func (i *Instance) normalize() { utc(&i.StartedAt, &i.HeartbeatAt, &i.ExpiresAt) }

// Validate reports every problem with i.
func (i Instance) Validate() error {
	c := checker{schema: SchemaInstance}
	c.schemaField(i.Schema)
	c.required("instance", i.Instance)
	c.required("role", i.Role)
	c.time("started_at", i.StartedAt)
	c.time("heartbeat_at", i.HeartbeatAt)
	c.window("heartbeat_at", "expires_at", i.HeartbeatAt, i.ExpiresAt)
	if i.HeartbeatAt.Before(i.StartedAt) {
		c.addf("heartbeat_at", "must not be before started_at")
	}
	return c.err()
}
