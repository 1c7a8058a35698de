package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// The sections below belong to services that are not built yet. Each moves
// next to its service (as ingress.Config did) when that service is written:
// the type, its Validate and its line in Default.

// GPUAgent configures the per-node GPU telemetry agent.
type GPUAgent struct {
	// Source is dcgm, dcgm-exporter, nvml or auto (the first that answers,
	// in that order).
	Source string `yaml:"source"`
	// ExporterURL is dcgm-exporter's /metrics, used by source
	// dcgm-exporter (and by auto when it gets there).
	ExporterURL string `yaml:"exporter_url"`
	// Interval is the sampling period.
	Interval time.Duration `yaml:"interval"`
	// Node names this machine in gpu.v1; empty uses the hostname.
	Node string `yaml:"node"`
}

// Validate names the bad field relative to the gpu_agent section.
func (g GPUAgent) Validate() error {
	var errs []error
	switch g.Source {
	case "dcgm", "dcgm-exporter", "nvml", "auto":
	default:
		errs = append(errs, fmt.Errorf("source: %q is not one of dcgm, dcgm-exporter, nvml, auto", g.Source))
	}
	if g.ExporterURL == "" {
		if g.Source == "dcgm-exporter" {
			errs = append(errs, errors.New("exporter_url: required with source dcgm-exporter"))
		}
	} else if u, err := url.Parse(g.ExporterURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("exporter_url: %q is not an http(s) URL", g.ExporterURL))
	}
	if g.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval: %s must be > 0", g.Interval))
	}
	return errors.Join(errs...)
}
