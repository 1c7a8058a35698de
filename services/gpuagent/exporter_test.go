package gpuagent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/burnrate/burnrate/schemas/events"
)

const gib = 1 << 30

func parseFixture(t *testing.T, name string) []Reading {
	t.Helper()
	f, err := os.Open("testdata/exporter/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ParseExporter(f)
	if err != nil {
		t.Fatalf("ParseExporter(%s): %v", name, err)
	}
	return rs
}

func checkReadings(t *testing.T, got, want []Reading) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("got %d readings, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("reading %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestParseExporterV2K8s(t *testing.T) {
	bus := []string{"18", "2A", "3A", "5D", "9A", "AB", "BA", "DB"}
	// The values of the comment block at the top of v2-k8s.prom.
	rows := []struct {
		ns, pod, container         string
		util, gr, sm, tensor, dram float64
		fbUsedMiB, fbFreeMiB       int64
		powerW                     float64
		energyMJ                   int64
	}{
		{"ml-train", "llama-train-0", "trainer", 0.95, 0.95, 0.90, 0.60, 0.50, 70000, 11559, 600, 60000000000},
		{"ml-train", "llama-train-0", "trainer", 0.90, 0.90, 0.85, 0.55, 0.45, 70000, 11559, 580, 58000000000},
		{"ml-train", "llama-train-0", "trainer", 0.85, 0.85, 0.80, 0.50, 0.40, 70000, 11559, 560, 56000000000},
		{"ml-serve", "vllm-chat-0", "vllm", 0.70, 0.70, 0.60, 0.30, 0.30, 40000, 41559, 450, 45000000000},
		{"ml-serve", "vllm-embed-0", "vllm", 0.60, 0.60, 0.50, 0.20, 0.20, 20000, 61559, 400, 40000000000},
		{"ml-train", "notebook-alice", "jupyter", 0.03, 0.03, 0.02, 0, 0.01, 2000, 79559, 120, 12000000000},
		{"ml-serve", "vllm-canary-0", "vllm", 0, 0.01, 0, 0, 0, 1000, 80559, 90, 9000000000},
		{"", "", "", 0, 0, 0, 0, 0, 0, 81559, 70, 7000000000},
	}
	var want []Reading
	for i, r := range rows {
		want = append(want, Reading{
			UUID: "GPU-7d3e1c52-9b0a-4f6e-8c21-5a4b3c2d1e0" + strconv.Itoa(i), Index: i,
			Model: "NVIDIA H100 80GB HBM3", Hostname: "gpu-node-1",
			Util: r.util, GrEngineActive: r.gr, SMActive: r.sm, TensorActive: r.tensor, DRAMActive: r.dram,
			FBUsedBytes: r.fbUsedMiB << 20, FBFreeBytes: r.fbFreeMiB << 20, PowerWatts: r.powerW, EnergyMillijoules: r.energyMJ,
			Namespace: r.ns, Pod: r.pod, Container: r.container,
			Labels: map[string]string{
				"device":                 "nvidia" + strconv.Itoa(i),
				"pci_bus_id":             "00000000:" + bus[i] + ":00.0",
				"DCGM_FI_DRIVER_VERSION": "550.90.07",
			},
		})
	}
	checkReadings(t, parseFixture(t, "v2-k8s.prom"), want)
}

func TestParseExporterV1OldLabels(t *testing.T) {
	want := []Reading{{
		UUID: "GPU-3f9a2b71-6c4d-8e05-1a2b-9c8d7e6f5a40", Index: 0, Model: "NVIDIA A100-SXM4-80GB", Hostname: "dgx-a100-07",
		Util: 0.42, GrEngineActive: 0.40, SMActive: 0.35, TensorActive: 0.12, DRAMActive: 0.22,
		FBUsedBytes: 30000 << 20, FBFreeBytes: 51251 << 20, PowerWatts: 310.5, EnergyMillijoules: 123456789012,
		Namespace: "ml-train", Pod: "bert-finetune-6f7c9-xk2lp", Container: "bert",
		Labels: map[string]string{"device": "nvidia0"},
	}, {
		UUID: "GPU-8b1c5d2e-0f3a-4b6c-7d8e-2f1a0b9c8d71", Index: 1, Model: "NVIDIA A100-SXM4-80GB", Hostname: "dgx-a100-07",
		Util: 0.07, GrEngineActive: 0.05, SMActive: 0.04, TensorActive: 0.01, DRAMActive: 0.03,
		FBUsedBytes: 16000 << 20, FBFreeBytes: 65251 << 20, PowerWatts: 95.25, EnergyMillijoules: 98765432109,
		Namespace: "ml-serve", Pod: "triton-7b-0", Container: "triton",
		Labels: map[string]string{"device": "nvidia1"},
	}}
	checkReadings(t, parseFixture(t, "v1-old-labels.prom"), want)
}

func TestParseExporterMIG(t *testing.T) {
	const parent = "GPU-5e6f7a8b-1c2d-3e4f-a5b6-c7d8e9f0a1b2"
	labels := func() map[string]string {
		return map[string]string{"device": "nvidia0", "pci_bus_id": "00000000:07:00.0", "DCGM_FI_DRIVER_VERSION": "535.183.01"}
	}
	// Sorted by instance id as a number: 2, 3, 13 (the exposition has 2, 13, 3).
	want := []Reading{{
		UUID: parent + "/mig-2", Index: 0, Model: "NVIDIA A100-SXM4-80GB", MIGProfile: "3g.40gb", MIGInstance: "2", Hostname: "gpu-node-mig-1",
		Util: -1, GrEngineActive: 0.80, SMActive: 0.70, TensorActive: 0.40, DRAMActive: 0.35,
		FBUsedBytes: 35000 << 20, FBFreeBytes: 5475 << 20, PowerWatts: 250.5, EnergyMillijoules: 77000000000,
		Namespace: "ml-train", Pod: "trainer-small-0", Container: "trainer", Labels: labels(),
	}, {
		UUID: parent + "/mig-3", Index: 0, Model: "NVIDIA A100-SXM4-80GB", MIGProfile: "2g.20gb", MIGInstance: "3", Hostname: "gpu-node-mig-1",
		Util: -1, GrEngineActive: 0.50, SMActive: 0.45, TensorActive: 0.25, DRAMActive: 0.20,
		FBUsedBytes: 15000 << 20, FBFreeBytes: 4825 << 20, PowerWatts: 250.5, EnergyMillijoules: 77000000000,
		Namespace: "ml-serve", Pod: "vllm-mini-0", Container: "vllm", Labels: labels(),
	}, {
		UUID: parent + "/mig-13", Index: 0, Model: "NVIDIA A100-SXM4-80GB", MIGProfile: "1g.10gb", MIGInstance: "13", Hostname: "gpu-node-mig-1",
		Util: -1, GrEngineActive: 0.02, SMActive: 0.01, TensorActive: 0, DRAMActive: 0.01,
		FBUsedBytes: 1200 << 20, FBFreeBytes: 8544 << 20, PowerWatts: 250.5, EnergyMillijoules: 77000000000,
		Namespace: "ml-dev", Pod: "notebook-bob", Container: "jupyter", Labels: labels(),
	}}
	checkReadings(t, parseFixture(t, "mig.prom"), want)
}

func TestParseExporterNoProfiling(t *testing.T) {
	want := []Reading{{
		UUID: "GPU-c4d5e6f7-a8b9-0c1d-2e3f-405162738495", Index: 0, Model: "Tesla T4", Hostname: "t4-box",
		Util: 0.12, GrEngineActive: -1, SMActive: -1, TensorActive: -1, DRAMActive: -1,
		FBUsedBytes: 3000 << 20, FBFreeBytes: 12095 << 20, PowerWatts: 35.2, EnergyMillijoules: -1,
		Labels: map[string]string{"device": "nvidia0", "pci_bus_id": "00000000:3B:00.0"},
	}, {
		UUID: "GPU-d5e6f7a8-b9c0-1d2e-3f40-516273849506", Index: 1, Model: "Tesla T4", Hostname: "t4-box",
		Util: 1, GrEngineActive: -1, SMActive: -1, TensorActive: -1, DRAMActive: -1,
		FBUsedBytes: 15000 << 20, FBFreeBytes: 95 << 20, PowerWatts: 70, EnergyMillijoules: -1,
		Labels: map[string]string{"device": "nvidia1", "pci_bus_id": "00000000:AF:00.0"},
	}}
	checkReadings(t, parseFixture(t, "no-prof.prom"), want)
}

// bare is a reading with only identity and everything else unknown.
func bare(uuid string, index int) Reading {
	return Reading{UUID: uuid, Index: index, Util: -1, GrEngineActive: -1, SMActive: -1, TensorActive: -1, DRAMActive: -1,
		FBUsedBytes: -1, FBFreeBytes: -1, PowerWatts: -1, EnergyMillijoules: -1}
}

func TestParseExporterCases(t *testing.T) {
	f := func(in string, want ...Reading) {
		t.Helper()
		got, err := ParseExporter(strings.NewReader(in))
		if err != nil {
			t.Fatalf("ParseExporter(%q): %v", in, err)
		}
		checkReadings(t, got, want)
	}

	// Nothing, or nothing of dcgm-exporter's.
	f("")
	f("go_goroutines 12\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"GPU-a\"} 40\n")

	// The new label generation wins over the old; both Hostname spellings.
	r := bare("GPU-a", 0)
	r.Util, r.Namespace, r.Pod, r.Container, r.Hostname = 0.5, "new-ns", "new-pod", "new-ctr", "new-host"
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="old-host",hostname="new-host",pod="new-pod",namespace="new-ns",container="new-ctr",pod_name="old-pod",pod_namespace="old-ns",container_name="old-ctr"} 50`+"\n", r)
	// Empty new labels fall back to the old ones.
	r = bare("GPU-a", 0)
	r.Util, r.Namespace, r.Pod, r.Container, r.Hostname = 0.5, "old-ns", "old-pod", "old-ctr", "old-host"
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="old-host",pod="",namespace="",container="",pod_name="old-pod",pod_namespace="old-ns",container_name="old-ctr"} 50`+"\n", r)

	// Fractions are clamped; percent 100.5 is 1; FB in MiB.
	r = bare("GPU-a", 0)
	r.Util, r.GrEngineActive, r.SMActive, r.FBUsedBytes = 1, 1, 0, 2*gib
	f(`# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a"} 100.5
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-a"} 1.0000001
DCGM_FI_PROF_SM_ACTIVE{gpu="0",UUID="GPU-a"} -0.0000001
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a"} 2048
`, r)

	// NaN and DCGM's blank int64 are unknown.
	r = bare("GPU-a", 0)
	f(`DCGM_FI_PROF_DRAM_ACTIVE{gpu="0",UUID="GPU-a"} NaN
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-a"} 9223372036854775792
`, r)

	// Time-slicing: one GPU, three pods; the first is kept, the others
	// listed once, and GPUs come back sorted by index.
	r0 := bare("GPU-a", 0)
	r0.Util, r0.PowerWatts = 0.3, 100
	r0.Namespace, r0.Pod, r0.Container = "team-a", "pod-1", "c"
	r0.Labels = map[string]string{"device": "nvidia0", otherPodsLabel: "team-b/pod-2,team-a/pod-3"}
	r1 := bare("GPU-b", 1)
	r1.Util = 0
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b"} 0
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",namespace="team-a",pod="pod-1",container="c"} 30
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",namespace="team-b",pod="pod-2",container="c",pod_label="theirs"} 30
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",namespace="team-a",pod="pod-3",container="c"} 30
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",device="nvidia0",namespace="team-b",pod="pod-2",container="c"} 100
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",device="nvidia0",namespace="team-a",pod="pod-1",container="c"} 100
`, r0, r1)

	// A MIG GPU's parent-level series do not make a reading of their own.
	r = bare("GPU-m/mig-1", 0)
	r.MIGInstance, r.MIGProfile, r.FBUsedBytes = "1", "7g.80gb", gib
	f(`DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-m"} 1024
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-m",GPU_I_ID="1",GPU_I_PROFILE="7g.80gb"} 1024
`, r)
}

func TestParseExporterErrors(t *testing.T) {
	f := func(in, wantInErr string) {
		t.Helper()
		_, err := ParseExporter(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), wantInErr) {
			t.Fatalf("ParseExporter(%q) = %v, want an error containing %q", in, err, wantInErr)
		}
	}
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="zero",UUID="GPU-a"} 1`+"\n", `DCGM_FI_DEV_GPU_UTIL{gpu="zero"`)
	f(`DCGM_FI_DEV_POWER_USAGE{UUID="GPU-a"} 1`+"\n", `DCGM_FI_DEV_POWER_USAGE{gpu=""`)
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="-1",UUID="GPU-a"} 1`+"\n", `gpu label`)
	f("#TYPE A \n{}0", "parser panicked")
	f("<html><body>502 Bad Gateway</body></html>\n", "parse dcgm-exporter metrics")
	f(`DCGM_FI_DEV_GPU_UTIL{gpu="0" 1`+"\n", "parse dcgm-exporter metrics")
}

func TestExporterSource(t *testing.T) {
	body, err := os.ReadFile("testdata/exporter/no-prof.prom")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()

	s := NewExporterSource(srv.URL+"/metrics", nil)
	defer s.Close()
	if s.Kind() != events.GPUSourceDCGMExporter {
		t.Errorf("Kind() = %q", s.Kind())
	}
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(rs) != 2 || rs[1].UUID != "GPU-d5e6f7a8-b9c0-1d2e-3f40-516273849506" {
		t.Errorf("Read = %+v", rs)
	}

	_, err = NewExporterSource(srv.URL+"/broken", srv.Client()).Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") || errors.Is(err, ErrUnavailable) {
		t.Errorf("500: err = %v, want a plain error naming the status", err)
	}

	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = NewExporterSource("http://"+addr+"/metrics", nil).Read(context.Background())
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("refused: err = %v, want ErrUnavailable", err)
	}

	// A caller giving up is not the exporter being unavailable.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Read(ctx)
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("canceled: err = %v, want a plain error", err)
	}
}
