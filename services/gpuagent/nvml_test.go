package gpuagent

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/burnrate/burnrate/schemas/events"
)

// fakeNVML replays recorded NVML answers.
type fakeNVML struct {
	gpus      []*fakeNVMLDevice
	countRet  nvml.Return
	handleRet map[int]nvml.Return
	shutdowns int
}

func (f *fakeNVML) count() (int, nvml.Return) { return len(f.gpus), f.countRet }
func (f *fakeNVML) shutdown() nvml.Return     { f.shutdowns++; return nvml.SUCCESS }

func (f *fakeNVML) device(i int) (nvmlDevice, nvml.Return) {
	if ret := f.handleRet[i]; ret != nvml.SUCCESS {
		return nil, ret
	}
	return f.gpus[i], nvml.SUCCESS
}

// fakeNVMLDevice is one device's recorded answers: memory in bytes, power
// in mW, energy in mJ; rets holds the calls that did not succeed.
type fakeNVMLDevice struct {
	uuidV, nameV string
	util         nvml.Utilization
	mem          nvml.Memory
	powerMW      uint32
	energyMJ     uint64
	mig          int               // MIG mode
	maxMIG       int               // MIG device slots
	migs         []*fakeNVMLDevice // nil: an unused slot
	gi           int               // GPU instance id, on a MIG device
	attrs        nvml.DeviceAttributes
	rets         map[string]nvml.Return
}

func (d *fakeNVMLDevice) uuid() (string, nvml.Return) { return d.uuidV, d.rets["uuid"] }
func (d *fakeNVMLDevice) name() (string, nvml.Return) { return d.nameV, d.rets["name"] }
func (d *fakeNVMLDevice) utilization() (nvml.Utilization, nvml.Return) {
	return d.util, d.rets["utilization"]
}
func (d *fakeNVMLDevice) memory() (nvml.Memory, nvml.Return)     { return d.mem, d.rets["memory"] }
func (d *fakeNVMLDevice) powerMilliwatts() (uint32, nvml.Return) { return d.powerMW, d.rets["power"] }
func (d *fakeNVMLDevice) energyMillijoules() (uint64, nvml.Return) {
	return d.energyMJ, d.rets["energy"]
}
func (d *fakeNVMLDevice) migMode() (int, nvml.Return)       { return d.mig, d.rets["migMode"] }
func (d *fakeNVMLDevice) maxMIGDevices() (int, nvml.Return) { return d.maxMIG, d.rets["maxMIG"] }
func (d *fakeNVMLDevice) gpuInstanceID() (int, nvml.Return) { return d.gi, d.rets["gi"] }
func (d *fakeNVMLDevice) attributes() (nvml.DeviceAttributes, nvml.Return) {
	return d.attrs, d.rets["attributes"]
}

func (d *fakeNVMLDevice) migDevice(i int) (nvmlDevice, nvml.Return) {
	if i >= len(d.migs) || d.migs[i] == nil {
		return nil, nvml.ERROR_NOT_FOUND
	}
	return d.migs[i], nvml.SUCCESS
}

const (
	miB          = 1 << 20
	h100Bytes    = 81559 * miB // NVML's total for an H100 80GB HBM3
	a100Bytes    = 81920 * miB // and for an A100-SXM4-80GB
	migUUID3g    = "MIG-6e3c1f5a-2b7d-5c9e-a4f1-8d0b2c6e7a19"
	migUUID2g    = "MIG-b9a1e4d2-7c3f-5a8b-9e6d-1f2a3b4c5d6e"
	migUUID1g    = "MIG-0f8e7d6c-5b4a-5392-8170-6f5e4d3c2b1a"
	notSupported = nvml.ERROR_NOT_SUPPORTED
)

// nvmlH100Node is the 2-GPU H100 node as NVML reported it; NVML's used
// memory includes what the driver reserves, so it differs from DCGM's.
func nvmlH100Node() *fakeNVML {
	return &fakeNVML{gpus: []*fakeNVMLDevice{
		{uuidV: h100UUID0, nameV: h100Model, util: nvml.Utilization{Gpu: 98, Memory: 61},
			mem:     nvml.Memory{Total: h100Bytes, Free: 8690 * miB, Used: 72869 * miB},
			powerMW: 612407, energyMJ: 3871234567890, mig: nvml.DEVICE_MIG_DISABLE},
		{uuidV: h100UUID1, nameV: h100Model, util: nvml.Utilization{Gpu: 0, Memory: 0},
			mem:     nvml.Memory{Total: h100Bytes, Free: 81018 * miB, Used: 541 * miB},
			powerMW: 69873, energyMJ: 1203456789012, mig: nvml.DEVICE_MIG_DISABLE},
	}}
}

func nvmlH100Readings() []Reading {
	return []Reading{
		{UUID: h100UUID0, Index: 0, Model: h100Model, Util: 0.98, GrEngineActive: unknown, SMActive: unknown,
			TensorActive: unknown, DRAMActive: unknown, FBUsedBytes: 72869 * miB, FBFreeBytes: 8690 * miB,
			PowerWatts: 612.407, EnergyMillijoules: 3871234567890},
		{UUID: h100UUID1, Index: 1, Model: h100Model, Util: 0, GrEngineActive: unknown, SMActive: unknown,
			TensorActive: unknown, DRAMActive: unknown, FBUsedBytes: 541 * miB, FBFreeBytes: 81018 * miB,
			PowerWatts: 69.873, EnergyMillijoules: 1203456789012},
	}
}

// nvmlA100MIGNode is the A100 80GB split 3g.40gb + 2g.20gb + 1g.10gb, its
// MIG devices in slots 0–2 of 7, in the order NVML listed them.
func nvmlA100MIGNode() *fakeNVML {
	migDev := func(uuid string, gi int, slices uint32, sizeMiB, usedMiB uint64) *fakeNVMLDevice {
		return &fakeNVMLDevice{uuidV: uuid, nameV: a100Model + " MIG", gi: gi,
			attrs: nvml.DeviceAttributes{GpuInstanceSliceCount: slices, ComputeInstanceSliceCount: slices,
				MultiprocessorCount: 14 * slices, MemorySizeMB: sizeMiB},
			mem: nvml.Memory{Total: sizeMiB * miB, Used: usedMiB * miB, Free: (sizeMiB - usedMiB) * miB}}
	}
	return &fakeNVML{gpus: []*fakeNVMLDevice{{
		uuidV: a100UUID, nameV: a100Model, mig: nvml.DEVICE_MIG_ENABLE, maxMIG: 7,
		mem: nvml.Memory{Total: a100Bytes, Used: 47535 * miB, Free: 34385 * miB},
		migs: []*fakeNVMLDevice{
			migDev(migUUID1g, 13, 1, 9728, 13),
			migDev(migUUID3g, 1, 3, 40192, 35870),
			migDev(migUUID2g, 5, 2, 20096, 11141),
		},
		rets: map[string]nvml.Return{"utilization": notSupported}, // as in MIG mode
	}}}
}

func nvmlA100MIGReadings() []Reading {
	r := func(uuid, inst, profile string, usedMiB, freeMiB int64) Reading {
		return Reading{UUID: uuid, Index: 0, Model: a100Model, MIGProfile: profile, MIGInstance: inst,
			Util: unknown, GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
			FBUsedBytes: usedMiB * miB, FBFreeBytes: freeMiB * miB, PowerWatts: unknown, EnergyMillijoules: unknown}
	}
	return []Reading{
		r(migUUID3g, "1", "3g.40gb", 35870, 4322),
		r(migUUID2g, "5", "2g.20gb", 11141, 8955),
		r(migUUID1g, "13", "1g.10gb", 13, 9715),
	}
}

func TestNVMLRead(t *testing.T) {
	f := func(name string, api *fakeNVML, want []Reading) {
		t.Helper()
		s := &nvmlSource{api: api}
		for range 2 { // Read is repeatable
			got, err := s.Read(context.Background())
			if err != nil {
				t.Fatalf("%s: Read: %v", name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: Read:\n got %+v\nwant %+v", name, got, want)
			}
		}
	}
	f("2×H100", nvmlH100Node(), nvmlH100Readings())
	f("A100 MIG", nvmlA100MIGNode(), nvmlA100MIGReadings())

	// A pre-Volta GPU without an energy counter or MIG, and a vGPU guest
	// without utilisation or power: those fields are unknown, not errors.
	old := &fakeNVML{gpus: []*fakeNVMLDevice{
		{uuidV: "GPU-0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f", nameV: "Tesla P100-PCIE-16GB",
			util: nvml.Utilization{Gpu: 37}, mem: nvml.Memory{Total: 16384 * miB, Used: 2048 * miB, Free: 14336 * miB},
			powerMW: 41250, rets: map[string]nvml.Return{"energy": notSupported, "migMode": notSupported}},
		{uuidV: "GPU-7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", nameV: "NVIDIA A10-24Q",
			mem:  nvml.Memory{Total: 24576 * miB, Used: 1200 * miB, Free: 23376 * miB},
			rets: map[string]nvml.Return{"utilization": notSupported, "power": notSupported, "energy": notSupported, "migMode": nvml.ERROR_FUNCTION_NOT_FOUND}},
	}}
	f("unsupported", old, []Reading{
		{UUID: "GPU-0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f", Index: 0, Model: "Tesla P100-PCIE-16GB", Util: 0.37,
			GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
			FBUsedBytes: 2048 * miB, FBFreeBytes: 14336 * miB, PowerWatts: 41.25, EnergyMillijoules: unknown},
		{UUID: "GPU-7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", Index: 1, Model: "NVIDIA A10-24Q", Util: unknown,
			GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
			FBUsedBytes: 1200 * miB, FBFreeBytes: 23376 * miB, PowerWatts: unknown, EnergyMillijoules: unknown},
	})

	// A MIG device without attributes is still read, its profile unnamed.
	noAttrs := nvmlA100MIGNode()
	noAttrs.gpus[0].migs[2].rets = map[string]nvml.Return{"attributes": notSupported}
	want := nvmlA100MIGReadings()
	want[1].MIGProfile = "mig"
	f("MIG device without attributes", noAttrs, want)
}

func TestNVMLReadErrors(t *testing.T) {
	api := nvmlH100Node()
	api.gpus[1].rets = map[string]nvml.Return{"utilization": nvml.ERROR_GPU_IS_LOST}
	got, err := (&nvmlSource{api: api}).Read(context.Background())
	if err == nil || errors.Is(err, ErrUnavailable) || !errors.Is(err, nvml.ERROR_GPU_IS_LOST) ||
		!strings.Contains(err.Error(), "GPU 1: "+h100UUID1) {
		t.Fatalf("one GPU lost: err = %v, want GPU 1 named, wrapping ERROR_GPU_IS_LOST, not ErrUnavailable", err)
	}
	if want := nvmlH100Readings()[:1]; !reflect.DeepEqual(got, want) {
		t.Fatalf("one GPU lost: readings\n got %+v\nwant %+v (the other GPU)", got, want)
	}

	api = nvmlH100Node()
	api.handleRet = map[int]nvml.Return{0: nvml.ERROR_UNKNOWN}
	got, err = (&nvmlSource{api: api}).Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "GPU 0: get handle: ERROR_UNKNOWN") || len(got) != 1 || got[0].Index != 1 {
		t.Fatalf("no handle for GPU 0: %+v, %v", got, err)
	}

	api = nvmlA100MIGNode()
	api.gpus[0].migs[1].rets = map[string]nvml.Return{"memory": nvml.ERROR_UNKNOWN}
	if got, err := (&nvmlSource{api: api}).Read(context.Background()); !errors.Is(err, ErrUnavailable) || got != nil {
		t.Fatalf("only GPU unreadable: %v, %v; want no readings and ErrUnavailable", got, err)
	}

	api = nvmlH100Node()
	api.countRet = nvml.ERROR_UNINITIALIZED
	if _, err := (&nvmlSource{api: api}).Read(context.Background()); !errors.Is(err, ErrUnavailable) ||
		!strings.Contains(err.Error(), "NVML source unavailable") {
		t.Fatalf("NVML gone: err = %v, want ErrUnavailable", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&nvmlSource{api: nvmlH100Node()}).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

func TestNVMLClose(t *testing.T) {
	api := nvmlH100Node()
	s := &nvmlSource{api: api}
	if s.Kind() != events.GPUSourceNVML {
		t.Fatalf("Kind = %q", s.Kind())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil || api.shutdowns != 1 {
		t.Fatalf("second Close: %v; NVML shut down %d times, want 1", err, api.shutdowns)
	}
	if _, err := s.Read(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read after Close: err = %v, want ErrUnavailable", err)
	}
}

func TestNVMLMIGProfileName(t *testing.T) {
	f := func(slices uint32, sizeMiB, gpuBytes uint64, want string) {
		t.Helper()
		a := nvml.DeviceAttributes{GpuInstanceSliceCount: slices, MemorySizeMB: sizeMiB}
		if got := migProfileName(a, gpuBytes); got != want {
			t.Errorf("migProfileName(%dg, %d MiB of %d MiB) = %q, want %q", slices, sizeMiB, gpuBytes/miB, got, want)
		}
	}
	const a100_40 = 40960 * miB
	f(1, 4864, a100_40, "1g.5gb")
	f(3, 20096, a100_40, "3g.20gb")
	f(4, 20096, a100_40, "4g.20gb")
	f(7, 40192, a100_40, "7g.40gb")
	f(1, 9728, a100Bytes, "1g.10gb")
	f(7, 80384, a100Bytes, "7g.80gb")
	f(1, 9984, h100Bytes, "1g.10gb")
	f(1, 19968, h100Bytes, "1g.20gb")
	f(3, 40448, h100Bytes, "3g.40gb")
	f(2, 20096, 0, "2g.20gb") // GPU total unknown: whole GiB, rounded up
	f(0, 9728, a100Bytes, "mig")
}

// TestOpenNVML calls the real library: where libnvidia-ml is missing it
// must be an error wrapping ErrUnavailable, never a crash; where a driver
// runs, the source must read.
func TestOpenNVML(t *testing.T) {
	s, err := OpenNVML()
	if err != nil {
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "NVML source unavailable") {
			t.Fatalf("OpenNVML() = %v; want an error wrapping ErrUnavailable naming the NVML source", err)
		}
		t.Logf("OpenNVML(): %v", err)
		return
	}
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("OpenNVML works here, but Read: %v", err)
	}
	if len(rs) == 0 {
		t.Fatal("OpenNVML works here, but Read returned no GPU")
	}
	t.Logf("OpenNVML(): NVML is here, %d readings: %+v", len(rs), rs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
