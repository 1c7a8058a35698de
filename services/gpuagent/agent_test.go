package gpuagent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	podresources "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
)

type fixedSource struct{ rs []Reading }

func (f *fixedSource) Kind() events.GPUSource { return events.GPUSourceDCGM }
func (f *fixedSource) Read(context.Context) ([]Reading, error) {
	return append([]Reading(nil), f.rs...), nil
}
func (f *fixedSource) Close() error { return nil }

func testAgent(t testing.TB, cfg Config, rs ...Reading) *agent {
	t.Helper()
	cat, err := prices.Load("")
	if err != nil {
		t.Fatal(err)
	}
	return &agent{cfg: cfg, d: Deps{Pricer: prices.NewPricer(cat, nil), Log: zap.NewNop()}, m: newMetrics(nil),
		last: map[string]int64{}, unpriced: map[string]bool{}, src: &fixedSource{rs}}
}

func reading(uuid, model string, gr, util float64, ns, pod string) Reading {
	return Reading{UUID: uuid, Model: model, Util: util, GrEngineActive: gr, SMActive: -1, TensorActive: -1, DRAMActive: -1,
		FBUsedBytes: -1, FBFreeBytes: -1, PowerWatts: 300, EnergyMillijoules: -1, Namespace: ns, Pod: pod}
}

// TestPriceAndAttribute checks cost, idle cost and attribution of one
// interval by hand: an H100 80GB HBM3 is $2.99/h, so 10 s are
// 8,305,555.56 → 8,305,556 nano-USD.
func TestPriceAndAttribute(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Node = "n1"
	cfg.Attribution = []Rule{{Namespace: "ml-*", Pod: "train-*", Team: "research", App: "training"}, {Namespace: "ml-*", Team: "ml"}}
	const h100 = "NVIDIA H100 80GB HBM3"
	a := testAgent(t, cfg,
		reading("GPU-0", h100, 0.75, 0.9, "ml-a", "train-1"),  // busy, rule 1
		reading("GPU-1", h100, -1, 0.2, "ml-b", "notebook"),   // no GR engine: util; rule 2
		reading("GPU-2", h100, 0.5, 0.5, "payments", "api-7"), // no rule: the namespace
		reading("GPU-3", h100, 0, 0, "", ""),                  // unallocated: all idle
		Reading{UUID: "GPU-4/mig-1", Model: "NVIDIA A100-SXM4-80GB", MIGProfile: "3g.40gb", MIGInstance: "1", Util: -1, GrEngineActive: 0.5, Namespace: "x", Pod: "y", EnergyMillijoules: -1, FBUsedBytes: -1, FBFreeBytes: -1},
		reading("GPU-5", "Imaginary GPU", 0.5, 0.5, "x", "y"), // unpriced
	)
	at := time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)
	got, err := a.sample(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		team, app  string
		cost, idle int64
	}
	a100MIG := prices.GPUCost(1_790_000_000*3/7, 10_000) // 3 of 7 slices of $1.79/h
	wants := []want{
		{"research", "training", 8_305_556, 2_076_389}, // × 0.25 = 2,076,389.0
		{"ml", "", 8_305_556, 6_644_445},               // × 0.8 = 6,644,444.8
		{"payments", "", 8_305_556, 4_152_778},         // × 0.5 = 4,152,778
		{IdleTeam, "", 8_305_556, 8_305_556},
		{"x", "", a100MIG, (a100MIG + 1) / 2},
		{"x", "", 0, 0},
	}
	for i, w := range wants {
		s := got[i]
		if s.Attribution.Team != w.team || s.Attribution.App != w.app || s.CostNanoUSD != w.cost || s.IdleCostNanoUSD != w.idle {
			t.Errorf("%s: team %q app %q cost %d idle %d; want %+v", s.GPUUUID, s.Attribution.Team, s.Attribution.App, s.CostNanoUSD, s.IdleCostNanoUSD, w)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.GPUUUID, err)
		}
		if s.Node != "n1" || s.IntervalMS != 10_000 || !s.OccurredAt.Equal(at) {
			t.Errorf("%s: node %q interval %d at %s", s.GPUUUID, s.Node, s.IntervalMS, s.OccurredAt)
		}
	}
	if got[0].EnergyJoules != 3000 { // 300 W × 10 s without an energy counter
		t.Errorf("energy %v J, want 3000", got[0].EnergyJoules)
	}
}

func TestEnergyFromTheCounter(t *testing.T) {
	r := reading("GPU-0", "NVIDIA H100 80GB HBM3", 0.5, 0.5, "a", "b")
	r.EnergyMillijoules = 1_000_000
	a := testAgent(t, DefaultConfig(), r)
	at := time.Now()
	a.sample(context.Background(), at)
	a.src.(*fixedSource).rs[0].EnergyMillijoules = 3_500_000
	got, _ := a.sample(context.Background(), at.Add(10*time.Second))
	if got[0].EnergyJoules != 2500 {
		t.Errorf("energy %v J, want 2500 (counter delta)", got[0].EnergyJoules)
	}
}

type lister struct {
	podresources.UnimplementedPodResourcesListerServer
	resp *podresources.ListPodResourcesResponse
}

func (l *lister) List(context.Context, *podresources.ListPodResourcesRequest) (*podresources.ListPodResourcesResponse, error) {
	return l.resp, nil
}

// TestKubeletPodResources serves the kubelet's pod-resources API on a unix
// socket (real gRPC) and checks GPUs without a workload get theirs.
func TestKubeletPodResources(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "kubelet.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresources.RegisterPodResourcesListerServer(srv, &lister{resp: &podresources.ListPodResourcesResponse{PodResources: []*podresources.PodResources{
		{Name: "trainer-0", Namespace: "ml", Containers: []*podresources.ContainerResources{
			{Name: "main", Devices: []*podresources.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-a", "GPU-b"}}}},
			{Name: "sidecar", Devices: []*podresources.ContainerDevices{{ResourceName: "example.com/fpga", DeviceIds: []string{"GPU-c"}}}},
		}},
	}}})
	go srv.Serve(ln)
	defer srv.Stop()
	k, err := dialKubelet(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	owners, err := k.owners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs := []Reading{{UUID: "GPU-a"}, {UUID: "GPU-b", Namespace: "from-exporter", Pod: "p"}, {UUID: "GPU-c"}}
	attach(rs, owners)
	if rs[0].Namespace != "ml" || rs[0].Pod != "trainer-0" || rs[0].Container != "main" {
		t.Errorf("GPU-a: %+v", rs[0])
	}
	if rs[1].Namespace != "from-exporter" {
		t.Errorf("the source's own workload was replaced: %+v", rs[1])
	}
	if rs[2].Pod != "" {
		t.Errorf("a non-NVIDIA device was attributed: %+v", rs[2])
	}
}

func TestIdleCost(t *testing.T) {
	f := func(cost int64, gr, util float64, unallocated bool, want int64) {
		t.Helper()
		if got := IdleCost(cost, gr, util, unallocated); got != want {
			t.Errorf("IdleCost(%d, %v, %v, %v) = %d, want %d", cost, gr, util, unallocated, got, want)
		}
	}
	f(1000, 0.25, 0.9, false, 750) // GR engine wins over util
	f(1000, 0, 0.9, false, 100)    // no GR engine: util
	f(1000, 0.9, 0.9, true, 1000)  // unallocated: all idle
	f(1000, 1.2, 0, false, 0)      // clamped
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Source, c.Fallback, c.TimeScale = "rocm", []string{"nvml", "x"}, 0.5
	c.Attribution = []Rule{{Namespace: "[", Team: ""}}
	err := c.Validate()
	for _, want := range []string{`source: "rocm"`, `fallback[1]: "x"`, "time_scale:", "attribution[0].namespace:", "attribution[0].team: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not name %s", err, want)
		}
	}
	if got := (Config{Source: "dcgm", Fallback: []string{"nvml", "dcgm"}}).order(); len(got) != 2 || got[1] != "nvml" {
		t.Errorf("order %v", got)
	}
}
