package events

// Status is the outcome of one model call in a usage event.
type Status string

const (
	StatusOK            Status = "ok"             // served by the requested model
	StatusUpstreamError Status = "upstream_error" // the provider failed; tokens may be partial
	StatusBlocked       Status = "blocked"        // refused by a verdict; never sent upstream
	StatusDowngraded    Status = "downgraded"     // served by a cheaper model (see served_model)
	StatusCached        Status = "cached"         // answered from a response cache
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return oneOf(string(s), statusValues) }

const statusValues = "ok|upstream_error|blocked|downgraded|cached"

// Action is what a verdict tells every ingress to do with its subject.
type Action string

const (
	ActionBlock     Action = "block"     // refuse calls until expires_at
	ActionDowngrade Action = "downgrade" // route calls to downgrade_to
	ActionThrottle  Action = "throttle"  // at most throttle_per_min calls a minute
	ActionLease     Action = "lease"     // spend at most the lease share per instance
	ActionAllow     Action = "allow"     // lift any earlier verdict
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool { return oneOf(string(a), actionValues) }

const actionValues = "block|downgrade|throttle|lease|allow"

// Period is the length of a budget period.
type Period string

const (
	PeriodDay    Period = "day"
	PeriodWeek   Period = "week"
	PeriodMonth  Period = "month"
	PeriodCustom Period = "custom"
)

// Valid reports whether p is a known period.
func (p Period) Valid() bool { return oneOf(string(p), periodValues) }

const periodValues = "day|week|month|custom"

// Detector is the algorithm that flagged an anomaly.
type Detector string

const (
	DetectorMAD  Detector = "mad"  // median absolute deviation
	DetectorEWMA Detector = "ewma" // exponentially weighted moving average
	// DetectorThreshold is a fixed rule, e.g. a GPU under 10 % busy for 10 minutes.
	DetectorThreshold Detector = "threshold"
)

// Valid reports whether d is a known detector.
func (d Detector) Valid() bool { return oneOf(string(d), detectorValues) }

const detectorValues = "mad|ewma|threshold"

// Severity ranks an anomaly for alert routing.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Valid reports whether s is a known severity.
func (s Severity) Valid() bool { return oneOf(string(s), severityValues) }

const severityValues = "info|warning|critical"

// GPUSource is where a GPU sample's metrics came from.
type GPUSource string

const (
	GPUSourceDCGM         GPUSource = "dcgm"          // DCGM host engine, read directly
	GPUSourceDCGMExporter GPUSource = "dcgm-exporter" // scraped from dcgm-exporter
	GPUSourceNVML         GPUSource = "nvml"          // NVML, when DCGM is absent
)

// Valid reports whether s is a known source.
func (s GPUSource) Valid() bool { return oneOf(string(s), gpuSourceValues) }

const gpuSourceValues = "dcgm|dcgm-exporter|nvml"
