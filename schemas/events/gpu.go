package events

import "time"

// GPUSample (gpu.v1) records one GPU, or one MIG instance, over one sampling
// interval, with what that interval cost. Kafka key: gpu_uuid.
//
// Utilisation fields are fractions in [0, 1] averaged over the interval,
// named after the DCGM fields they come from.
type GPUSample struct {
	Schema          string    `json:"schema"`
	ID              string    `json:"id"`          // UUIDv7
	OccurredAt      time.Time `json:"occurred_at"` // end of the interval
	Node            string    `json:"node"`
	GPUUUID         string    `json:"gpu_uuid"` // e.g. "GPU-5fd4...", or "MIG-..." for a MIG instance
	GPUIndex        int       `json:"gpu_index"`
	GPUModel        string    `json:"gpu_model"`              // e.g. "NVIDIA H100 80GB HBM3"
	MIGProfile      string    `json:"mig_profile,omitempty"`  // e.g. "1g.10gb"
	MIGInstance     string    `json:"mig_instance,omitempty"` // GPU instance id within the GPU
	Attribution     Workload  `json:"attribution"`
	IntervalMS      int64     `json:"interval_ms"`
	GPUUtil         float64   `json:"gpu_util"`         // DCGM_FI_DEV_GPU_UTIL / 100
	GrEngineActive  float64   `json:"gr_engine_active"` // DCGM_FI_PROF_GR_ENGINE_ACTIVE
	SMActive        float64   `json:"sm_active"`        // DCGM_FI_PROF_SM_ACTIVE
	TensorActive    float64   `json:"tensor_active"`    // DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
	DRAMActive      float64   `json:"dram_active"`      // DCGM_FI_PROF_DRAM_ACTIVE
	FBUsedBytes     int64     `json:"fb_used_bytes"`
	FBFreeBytes     int64     `json:"fb_free_bytes"`
	PowerWatts      float64   `json:"power_watts"`        // average over the interval
	EnergyJoules    float64   `json:"energy_joules"`      // consumed during the interval
	CostNanoUSD     int64     `json:"cost_nano_usd"`      // cost of the interval
	IdleCostNanoUSD int64     `json:"idle_cost_nano_usd"` // the part of CostNanoUSD spent idle
	PriceVersion    string    `json:"price_version"`
	Source          GPUSource `json:"source"`
}

// Workload is the Kubernetes workload a GPU was assigned to during the
// interval. Every field is empty for an unassigned (idle) GPU.
type Workload struct {
	Team      string `json:"team,omitempty"`
	App       string `json:"app,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`
}

// SchemaName returns "gpu.v1".
func (GPUSample) SchemaName() string { return SchemaGPU }

func (g *GPUSample) normalize() { utc(&g.OccurredAt) }

// Validate reports every problem with g.
func (g GPUSample) Validate() error {
	c := checker{schema: SchemaGPU}
	c.schemaField(g.Schema)
	c.id("id", g.ID)
	c.time("occurred_at", g.OccurredAt)
	c.required("node", g.Node)
	c.required("gpu_uuid", g.GPUUUID)
	c.nonNegative("gpu_index", int64(g.GPUIndex))
	c.required("gpu_model", g.GPUModel)
	c.optional("mig_profile", g.MIGProfile)
	c.optional("mig_instance", g.MIGInstance)
	if g.MIGInstance != "" && g.MIGProfile == "" {
		c.addf("mig_profile", "must be set when mig_instance is set")
	}
	c.optional("attribution.team", g.Attribution.Team)
	c.optional("attribution.app", g.Attribution.App)
	c.optional("attribution.namespace", g.Attribution.Namespace)
	c.optional("attribution.pod", g.Attribution.Pod)
	c.optional("attribution.container", g.Attribution.Container)
	c.positive("interval_ms", g.IntervalMS)
	c.fraction("gpu_util", g.GPUUtil)
	c.fraction("gr_engine_active", g.GrEngineActive)
	c.fraction("sm_active", g.SMActive)
	c.fraction("tensor_active", g.TensorActive)
	c.fraction("dram_active", g.DRAMActive)
	c.nonNegative("fb_used_bytes", g.FBUsedBytes)
	c.nonNegative("fb_free_bytes", g.FBFreeBytes)
	c.nonNegativeFloat("power_watts", g.PowerWatts)
	c.nonNegativeFloat("energy_joules", g.EnergyJoules)
	c.nonNegative("cost_nano_usd", g.CostNanoUSD)
	c.nonNegative("idle_cost_nano_usd", g.IdleCostNanoUSD)
	if g.IdleCostNanoUSD > g.CostNanoUSD {
		c.addf("idle_cost_nano_usd", "must be <= cost_nano_usd (%d), got %d", g.CostNanoUSD, g.IdleCostNanoUSD)
	}
	c.required("price_version", g.PriceVersion)
	c.enum("source", "source", string(g.Source), gpuSourceValues)
	return c.err()
}
