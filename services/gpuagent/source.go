package gpuagent

import (
	"context"
	"errors"

	"github.com/burnrate/burnrate/schemas/events"
)

// ErrUnavailable is wrapped by a source that cannot run on this node (no
// libdcgm, no libnvidia-ml, no exporter answering): the agent logs it once
// and falls back to the next configured source instead of exiting.
var ErrUnavailable = errors.New("GPU source unavailable")

// Reading is one GPU, or one MIG instance, as a source saw it at one
// moment. Fractions are in [0, 1]; a field the source does not report is
// negative (-1).
type Reading struct {
	UUID        string // "GPU-…", or the MIG device UUID ("MIG-…") for an instance
	Index       int    // GPU index on the node
	Model       string // as DCGM/NVML name it, e.g. "NVIDIA H100 80GB HBM3"
	MIGProfile  string // e.g. "1g.10gb"; empty without MIG
	MIGInstance string // GPU instance id within the GPU; empty without MIG
	Hostname    string // node name the source reports, if any

	Util           float64 // DCGM_FI_DEV_GPU_UTIL / 100
	GrEngineActive float64 // DCGM_FI_PROF_GR_ENGINE_ACTIVE
	SMActive       float64 // DCGM_FI_PROF_SM_ACTIVE
	TensorActive   float64 // DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
	DRAMActive     float64 // DCGM_FI_PROF_DRAM_ACTIVE
	FBUsedBytes    int64   // DCGM_FI_DEV_FB_USED (MiB in DCGM) in bytes; -1 unknown
	FBFreeBytes    int64   // DCGM_FI_DEV_FB_FREE in bytes; -1 unknown
	PowerWatts     float64 // DCGM_FI_DEV_POWER_USAGE
	// EnergyMillijoules is the GPU's total energy counter
	// (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION); -1 unknown.
	EnergyMillijoules int64

	// The Kubernetes workload the source attributes the GPU to
	// (dcgm-exporter's pod labels); empty when none or unknown.
	Namespace, Pod, Container string
	// Labels are the source's other labels (dcgm-exporter), for attribution
	// rules.
	Labels map[string]string
}

// Source reads every GPU of the node.
type Source interface {
	Kind() events.GPUSource
	// Read returns the current reading of every GPU (and MIG instance).
	Read(ctx context.Context) ([]Reading, error)
	Close() error
}

// unknown marks a field a source does not report.
const unknown = -1
