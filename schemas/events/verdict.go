package events

import "time"

// Verdict (verdict.v1) tells every ingress what to do with calls of one
// subject until ExpiresAt. The topic is compacted, so the latest verdict of
// a subject wins; an allow verdict lifts the earlier ones. Kafka key: subject.
type Verdict struct {
	Schema         string    `json:"schema"`
	ID             string    `json:"id"`      // UUIDv7
	Subject        string    `json:"subject"` // e.g. "team=payments" or "agent_run=..."
	Action         Action    `json:"action"`
	Reason         string    `json:"reason"` // human-readable, shown to blocked callers
	LimitNanoUSD   int64     `json:"limit_nano_usd"`
	SpentNanoUSD   int64     `json:"spent_nano_usd"`
	DowngradeTo    string    `json:"downgrade_to,omitempty"`     // model; set iff action is downgrade
	ThrottlePerMin int       `json:"throttle_per_min,omitempty"` // set iff action is throttle
	Lease          *Lease    `json:"lease,omitempty"`            // set iff action is lease
	IssuedAt       time.Time `json:"issued_at"`
	ExpiresAt      time.Time `json:"expires_at"` // e.g. period end; the verdict lifts itself then
	IssuedBy       string    `json:"issued_by"`  // killswitch instance
}

// Lease splits the remaining budget of a subject across the live ingress
// instances; each reserves a call's worst-case cost against its share.
type Lease struct {
	RemainingNanoUSD   int64 `json:"remaining_nano_usd"`
	Instances          int   `json:"instances"`
	PerInstanceNanoUSD int64 `json:"per_instance_nano_usd"` // at most remaining / instances
}

// SchemaName returns "verdict.v1".
func (Verdict) SchemaName() string { return SchemaVerdict }

func (v *Verdict) normalize() { utc(&v.IssuedAt, &v.ExpiresAt) }

// Validate reports every problem with v.
func (v Verdict) Validate() error {
	c := checker{schema: SchemaVerdict}
	c.schemaField(v.Schema)
	c.id("id", v.ID)
	c.subject("subject", v.Subject)
	c.enum("action", "action", string(v.Action), actionValues)
	c.required("reason", v.Reason)
	c.nonNegative("limit_nano_usd", v.LimitNanoUSD)
	c.nonNegative("spent_nano_usd", v.SpentNanoUSD)

	if v.Action == ActionDowngrade {
		c.required("downgrade_to", v.DowngradeTo)
	} else if v.DowngradeTo != "" {
		c.addf("downgrade_to", "must be empty unless action is downgrade")
	}
	if v.Action == ActionThrottle {
		c.positive("throttle_per_min", int64(v.ThrottlePerMin))
	} else if v.ThrottlePerMin != 0 {
		c.addf("throttle_per_min", "must be 0 unless action is throttle")
	}
	switch l := v.Lease; {
	case v.Action == ActionLease && l == nil:
		c.addf("lease", "must be set when action is lease")
	case v.Action != ActionLease && l != nil:
		c.addf("lease", "must be absent unless action is lease")
	case l != nil:
		c.nonNegative("lease.remaining_nano_usd", l.RemainingNanoUSD)
		c.positive("lease.instances", int64(l.Instances))
		c.nonNegative("lease.per_instance_nano_usd", l.PerInstanceNanoUSD)
		if l.Instances > 0 && l.RemainingNanoUSD >= 0 && l.PerInstanceNanoUSD > l.RemainingNanoUSD/int64(l.Instances) {
			c.addf("lease.per_instance_nano_usd", "must be <= remaining_nano_usd / instances (%d), got %d",
				l.RemainingNanoUSD/int64(l.Instances), l.PerInstanceNanoUSD)
		}
	}

	c.window("issued_at", "expires_at", v.IssuedAt, v.ExpiresAt)
	c.required("issued_by", v.IssuedBy)
	return c.err()
}
