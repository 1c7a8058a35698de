package gpuagent

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"time"
)

// Config is the gpu_agent section of the config file.
type Config struct {
	// Source is dcgm, dcgm-exporter, nvml, or auto (the first that answers,
	// in that order).
	Source string `yaml:"source"`
	// Fallback lists the sources tried, in order, when Source is
	// unavailable on this node (auto has its own order).
	Fallback []string `yaml:"fallback"`
	// DCGMAddress is a remote nv-hostengine (host:5555); empty runs DCGM
	// embedded in the agent.
	DCGMAddress string `yaml:"dcgm_address"`
	// ExporterURL is dcgm-exporter's /metrics.
	ExporterURL string `yaml:"exporter_url"`
	// Interval is the sampling period: one gpu.v1 event per GPU (or MIG
	// instance) per interval.
	Interval time.Duration `yaml:"interval"`
	// Node names this machine in gpu.v1; empty uses the source's hostname
	// label, else the hostname.
	Node string `yaml:"node"`
	// InstanceType prices GPUs by the cloud instance they are in (hourly /
	// GPUs per instance); empty prices them by GPU model.
	InstanceType string `yaml:"instance_type"`
	// Attribution maps workloads to team and app; the first rule that
	// matches wins. A GPU with a workload and no matching rule is charged
	// to its namespace as the team; a GPU with no workload to "__idle__".
	Attribution []Rule `yaml:"attribution"`
	// KubeletSocket is the kubelet's pod-resources socket
	// (/var/lib/kubelet/pod-resources/kubelet.sock on a node): GPUs the
	// source reports without a workload get theirs from it. Empty: off.
	KubeletSocket string `yaml:"kubelet_socket"`
	// RetryInterval is how often sources are tried again while none is
	// available.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// TimeScale runs event time this many times faster than the clock, for
	// demos and tests that need hours of GPU time in minutes; 1 in
	// production.
	TimeScale float64 `yaml:"time_scale"`
}

// Rule attributes the GPUs of matching workloads. Empty fields match
// anything; namespace and pod are path.Match patterns ("ml-*").
type Rule struct {
	Namespace string            `yaml:"namespace"`
	Pod       string            `yaml:"pod"`
	Labels    map[string]string `yaml:"labels"` // source labels that must all be equal
	Team      string            `yaml:"team"`
	App       string            `yaml:"app"`
}

// IdleTeam is the team of a GPU no workload holds.
const IdleTeam = "__idle__"

// DefaultConfig is the gpu_agent section when the file sets nothing.
func DefaultConfig() Config {
	return Config{Source: "auto", ExporterURL: "http://127.0.0.1:9400/metrics", Interval: 10 * time.Second,
		RetryInterval: time.Minute, TimeScale: 1}
}

var sourceNames = map[string]bool{"dcgm": true, "dcgm-exporter": true, "nvml": true}

// Validate names the bad field relative to the gpu_agent section.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !sourceNames[c.Source] && c.Source != "auto" {
		add("source: %q is not one of dcgm, dcgm-exporter, nvml, auto", c.Source)
	}
	for i, f := range c.Fallback {
		if !sourceNames[f] {
			add("fallback[%d]: %q is not one of dcgm, dcgm-exporter, nvml", i, f)
		}
	}
	if c.ExporterURL == "" {
		if c.Source == "dcgm-exporter" {
			add("exporter_url: required with source dcgm-exporter")
		}
	} else if u, err := url.Parse(c.ExporterURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("exporter_url: %q is not an http(s) URL", c.ExporterURL)
	}
	if c.Interval <= 0 {
		add("interval: %s must be > 0", c.Interval)
	}
	if c.RetryInterval <= 0 {
		add("retry_interval: %s must be > 0", c.RetryInterval)
	}
	if c.TimeScale < 1 {
		add("time_scale: %v must be >= 1", c.TimeScale)
	}
	for i, r := range c.Attribution {
		for name, p := range map[string]string{"namespace": r.Namespace, "pod": r.Pod} {
			if _, err := path.Match(p, ""); err != nil {
				add("attribution[%d].%s: %q is not a pattern: %v", i, name, p, err)
			}
		}
		if r.Team == "" {
			add("attribution[%d].team: required", i)
		}
	}
	return errors.Join(errs...)
}

// order is the sources to try, in order.
func (c Config) order() []string {
	if c.Source == "auto" {
		return []string{"dcgm", "dcgm-exporter", "nvml"}
	}
	out := []string{c.Source}
	for _, f := range c.Fallback {
		if f != c.Source {
			out = append(out, f)
		}
	}
	return out
}
