// Package gpuagent is `burnrate gpu-agent`, one per GPU node: it reads every
// GPU (and MIG instance) from DCGM (embedded, or a remote nv-hostengine),
// from a dcgm-exporter /metrics endpoint, or from NVML, attributes it to the
// Kubernetes workload holding it (team and app by rules; no workload:
// "__idle__"), prices the interval from the catalog and produces one gpu.v1
// event per GPU per interval, keyed by GPU UUID.
//
// Idle cost is the cost times (1 − GR engine active), falling back to GPU
// utilisation where profiling is not reported; a GPU no workload holds is
// idle for all of its cost. The meter turns long idle stretches into
// anomalies and, with meter.gpu_spend, counts GPU cost toward team budgets.
//
// A source that cannot run here (no libdcgm, no libnvidia-ml, no exporter
// answering) is logged and the next configured one is tried; with none the
// agent keeps running and tries again. It must never crash-loop on a node
// without GPUs, and it never blocks on Kafka (the producer buffers).
package gpuagent
