package gpuagent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/burnrate/burnrate/schemas/events"
)

// maxExporterBody bounds one scrape: 8 GPUs with every field enabled are
// well under 1 MiB, so anything near this is not a dcgm-exporter.
const maxExporterBody = 32 << 20

// ExporterSource scrapes a dcgm-exporter /metrics URL.
type ExporterSource struct {
	url    string
	client *http.Client
}

var _ Source = (*ExporterSource)(nil)

// NewExporterSource scrapes url with client; nil client means one with a
// 5 s timeout.
func NewExporterSource(url string, client *http.Client) *ExporterSource {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return &ExporterSource{url: url, client: client}
}

// Kind is dcgm-exporter.
func (s *ExporterSource) Kind() events.GPUSource { return events.GPUSourceDCGMExporter }

// Read scrapes the exporter once. An exporter that cannot be reached
// (refused, DNS, timeout) is ErrUnavailable, so the agent falls back; one
// that answers badly is a plain error.
func (s *ExporterSource) Read(ctx context.Context) ([]Reading, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("dcgm-exporter %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("dcgm-exporter %s: %w", s.url, err)
		}
		return nil, fmt.Errorf("dcgm-exporter %s: %w: %v", s.url, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil, fmt.Errorf("dcgm-exporter %s: %s", s.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExporterBody+1))
	if err != nil {
		return nil, fmt.Errorf("dcgm-exporter %s: read body: %w", s.url, err)
	}
	if len(body) > maxExporterBody {
		return nil, fmt.Errorf("dcgm-exporter %s: body larger than %d bytes", s.url, maxExporterBody)
	}
	rs, err := ParseExporter(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("dcgm-exporter %s: %w", s.url, err)
	}
	return rs, nil
}

// Close holds nothing to release: the client is the caller's or a plain one.
func (s *ExporterSource) Close() error { return nil }

// exporterField is a DCGM field the agent reads, and where it goes.
type exporterField struct {
	name string
	set  func(r *Reading, v float64)
}

const mib = 1 << 20

// exporterFields is in a fixed order so that "the first pod seen" and the
// first error reported do not depend on map iteration.
var exporterFields = []exporterField{
	{"DCGM_FI_DEV_GPU_UTIL", func(r *Reading, v float64) { r.Util = fraction(v / 100) }},
	{"DCGM_FI_PROF_GR_ENGINE_ACTIVE", func(r *Reading, v float64) { r.GrEngineActive = fraction(v) }},
	{"DCGM_FI_PROF_SM_ACTIVE", func(r *Reading, v float64) { r.SMActive = fraction(v) }},
	{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", func(r *Reading, v float64) { r.TensorActive = fraction(v) }},
	{"DCGM_FI_PROF_DRAM_ACTIVE", func(r *Reading, v float64) { r.DRAMActive = fraction(v) }},
	{"DCGM_FI_DEV_FB_USED", func(r *Reading, v float64) { r.FBUsedBytes = count(v, mib) }},
	{"DCGM_FI_DEV_FB_FREE", func(r *Reading, v float64) { r.FBFreeBytes = count(v, mib) }},
	{"DCGM_FI_DEV_POWER_USAGE", func(r *Reading, v float64) { r.PowerWatts = v }},
	{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", func(r *Reading, v float64) { r.EnergyMillijoules = count(v, 1) }},
}

// fraction clamps v into [0, 1]: DCGM sometimes reports 1.0000001.
func fraction(v float64) float64 { return min(max(v, 0), 1) }

// count is v×scale as an int64, or unknown where that is negative or does
// not fit (DCGM's blank values are near the int64 maximum).
func count(v, scale float64) int64 {
	x := v * scale
	if !(x >= 0 && x < math.MaxInt64) {
		return unknown
	}
	return int64(x)
}

// Labels ParseExporter maps to Reading fields; every other label goes to
// Reading.Labels.
var mappedLabels = map[string]bool{
	"__name__": true, "gpu": true, "UUID": true, "modelName": true, "Hostname": true, "hostname": true,
	"GPU_I_PROFILE": true, "GPU_I_ID": true,
	"pod": true, "namespace": true, "container": true, "pod_name": true, "pod_namespace": true, "container_name": true,
}

// otherPodsLabel lists, as "namespace/pod,…", the pods beyond the first that
// share a GPU (time-slicing).
const otherPodsLabel = "burnrate_other_pods"

type exporterKey struct{ uuid, gpu, instance string }

type exporterGroup struct {
	r         Reading
	otherPods []string // "namespace/pod", in the order seen
}

// ParseExporter reads dcgm-exporter's Prometheus text exposition into one
// Reading per GPU, or per MIG instance, sorted by index and instance.
// Fields the exposition lacks are unknown (-1).
func ParseExporter(r io.Reader) ([]Reading, error) {
	families, err := textToFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse dcgm-exporter metrics: %w", err)
	}
	groups := map[exporterKey]*exporterGroup{}
	for _, f := range exporterFields {
		mf := families[f.name]
		for _, m := range mf.GetMetric() {
			v, ok := sampleValue(m)
			if !ok {
				continue
			}
			ls := labelsOf(m)
			g, err := groupOf(groups, f.name, ls)
			if err != nil {
				return nil, err
			}
			g.add(ls)
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				f.set(&g.r, v)
			}
		}
	}
	return readings(groups), nil
}

// textToFamilies is expfmt's parser behind a recover: it has panicked on
// malformed input ("#TYPE A \n{}0" in v0.70.0), and a bad scrape
// must not take the agent down.
func textToFamilies(r io.Reader) (families map[string]*dto.MetricFamily, err error) {
	defer func() {
		if v := recover(); v != nil {
			families, err = nil, fmt.Errorf("malformed exposition (parser panicked: %v)", v)
		}
	}()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// sampleValue is m's value, whatever type line (or none) the family had.
func sampleValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

func labelsOf(m *dto.Metric) map[string]string {
	ls := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		ls[lp.GetName()] = lp.GetValue()
	}
	return ls
}

// groupOf finds or starts the reading series m belongs to.
func groupOf(groups map[exporterKey]*exporterGroup, name string, ls map[string]string) (*exporterGroup, error) {
	k := exporterKey{uuid: ls["UUID"], gpu: ls["gpu"], instance: ls["GPU_I_ID"]}
	if g, ok := groups[k]; ok {
		return g, nil
	}
	idx, err := strconv.Atoi(k.gpu)
	if err != nil || idx < 0 {
		return nil, fmt.Errorf("parse dcgm-exporter metrics: series %s{gpu=%q,UUID=%q}: gpu label is not a GPU index", name, k.gpu, k.uuid)
	}
	r := Reading{
		UUID: k.uuid, Index: idx, Model: ls["modelName"], Hostname: cmp.Or(ls["hostname"], ls["Hostname"]),
		Util: unknown, GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
		FBUsedBytes: unknown, FBFreeBytes: unknown, PowerWatts: unknown, EnergyMillijoules: unknown,
	}
	if k.instance != "" {
		// dcgm-exporter does not export the MIG device UUID; the parent's
		// plus the instance id is unique on the node and stable.
		r.UUID = k.uuid + "/mig-" + k.instance
		r.MIGInstance = k.instance
		r.MIGProfile = ls["GPU_I_PROFILE"]
	}
	g := &exporterGroup{r: r}
	groups[k] = g
	return g, nil
}

// add attributes the group to the series' pod if it has none yet, and takes
// the series' other labels; a second pod on the same GPU is only listed, and
// its labels (which may be that pod's own) are left out.
func (g *exporterGroup) add(ls map[string]string) {
	ns, pod, ctr := podOf(ls)
	switch {
	case pod == "":
	case g.r.Pod == "":
		g.r.Namespace, g.r.Pod, g.r.Container = ns, pod, ctr
	case g.r.Namespace != ns || g.r.Pod != pod:
		if other := ns + "/" + pod; !slices.Contains(g.otherPods, other) {
			g.otherPods = append(g.otherPods, other)
		}
		return
	}
	for name, v := range ls {
		if mappedLabels[name] {
			continue
		}
		if _, seen := g.r.Labels[name]; seen {
			continue
		}
		if g.r.Labels == nil {
			g.r.Labels = map[string]string{}
		}
		g.r.Labels[name] = v
	}
}

// podOf reads the Kubernetes labels of either dcgm-exporter generation; the
// new ones win. Empty values (an unallocated GPU) are no pod.
func podOf(ls map[string]string) (namespace, pod, container string) {
	if ls["pod"] != "" {
		return ls["namespace"], ls["pod"], ls["container"]
	}
	return ls["pod_namespace"], ls["pod_name"], ls["container_name"]
}

// readings flattens groups, dropping a MIG GPU's parent-level series (no
// GPU_I_ID) so that the GPU is not counted beside its own instances.
func readings(groups map[exporterKey]*exporterGroup) []Reading {
	mig := map[string]bool{}
	for k := range groups {
		if k.instance != "" {
			mig[k.uuid+"\x00"+k.gpu] = true
		}
	}
	out := make([]Reading, 0, len(groups))
	for k, g := range groups {
		if k.instance == "" && mig[k.uuid+"\x00"+k.gpu] {
			continue
		}
		if len(g.otherPods) > 0 {
			if g.r.Labels == nil {
				g.r.Labels = map[string]string{}
			}
			g.r.Labels[otherPodsLabel] = strings.Join(g.otherPods, ",")
		}
		out = append(out, g.r)
	}
	slices.SortFunc(out, func(a, b Reading) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), compareInstance(a.MIGInstance, b.MIGInstance), strings.Compare(a.UUID, b.UUID))
	})
	return out
}

// compareInstance orders GPU instance ids as numbers ("3" before "13").
func compareInstance(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
}
