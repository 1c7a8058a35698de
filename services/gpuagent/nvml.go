package gpuagent

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/burnrate/burnrate/schemas/events"
)

// OpenNVML loads libnvidia-ml.so.1 and initialises NVML. Without the
// library, without a driver, or without a GPU, the error wraps
// ErrUnavailable. NVML has no profiling counters: GR engine, SM, tensor
// and DRAM activity are always unknown.
func OpenNVML() (Source, error) {
	api, err := openNVMLLib()
	if err != nil {
		return nil, fmt.Errorf("NVML source unavailable: %w: %v", ErrUnavailable, err)
	}
	return &nvmlSource{api: api}, nil
}

// nvmlAPI is what nvmlSource needs from NVML; nvmlLib is the real one,
// tests replay recorded values. Calls answer as NVML does, with a Return.
type nvmlAPI interface {
	count() (int, nvml.Return)
	device(index int) (nvmlDevice, nvml.Return)
	shutdown() nvml.Return
}

// nvmlDevice is a GPU, or a MIG device of one.
type nvmlDevice interface {
	uuid() (string, nvml.Return)
	name() (string, nvml.Return)
	utilization() (nvml.Utilization, nvml.Return)
	memory() (nvml.Memory, nvml.Return)
	powerMilliwatts() (uint32, nvml.Return)
	energyMillijoules() (uint64, nvml.Return)
	// migMode is the current MIG mode (nvml.DEVICE_MIG_ENABLE or _DISABLE).
	migMode() (int, nvml.Return)
	maxMIGDevices() (int, nvml.Return)
	// migDevice is nvml.ERROR_NOT_FOUND for an unused slot.
	migDevice(index int) (nvmlDevice, nvml.Return)
	gpuInstanceID() (int, nvml.Return)
	attributes() (nvml.DeviceAttributes, nvml.Return)
}

// nvmlSource reads every GPU, or on a MIG GPU every MIG device, from NVML.
type nvmlSource struct {
	api nvmlAPI // nil once closed
}

var _ Source = (*nvmlSource)(nil)

func (s *nvmlSource) Kind() events.GPUSource { return events.GPUSourceNVML }

// Read returns one Reading per GPU, a MIG GPU's MIG devices in its place
// (so that the GPU is not counted beside them), sorted by GPU index and
// instance id. A field NVML does not support on a device is unknown. A GPU
// that cannot be read is left out and named in the error, which then comes
// with the readings of the others; when nothing could be read, or NVML
// cannot count the GPUs, the error wraps ErrUnavailable.
func (s *nvmlSource) Read(ctx context.Context) ([]Reading, error) {
	if s.api == nil {
		return nil, fmt.Errorf("NVML source: %w: closed", ErrUnavailable)
	}
	n, ret := s.api.count()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("NVML source unavailable: %w: count GPUs: %v", ErrUnavailable, ret)
	}
	var out []Reading
	var errs []error
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("NVML source: %w", err)
		}
		rs, err := s.readGPU(i)
		if err != nil {
			errs = append(errs, fmt.Errorf("GPU %d: %w", i, err))
			continue
		}
		out = append(out, rs...)
	}
	return libReadResult("NVML", out, errs)
}

func (s *nvmlSource) readGPU(index int) ([]Reading, error) {
	dev, ret := s.api.device(index)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("get handle: %w", ret)
	}
	uuid, ret := dev.uuid()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("UUID: %w", ret)
	}
	model, ret := dev.name()
	if err := nvmlErr(ret); err != nil {
		return nil, fmt.Errorf("%s: name: %w", uuid, err)
	}
	mode, ret := dev.migMode()
	if err := nvmlErr(ret); err != nil {
		return nil, fmt.Errorf("%s: MIG mode: %w", uuid, err)
	}
	if ret == nvml.SUCCESS && mode == nvml.DEVICE_MIG_ENABLE {
		rs, err := s.readMIG(index, model, dev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", uuid, err)
		}
		return rs, nil
	}

	r := libReading(uuid, index, model)
	util, ret := dev.utilization()
	if err := nvmlErr(ret); err != nil {
		return nil, fmt.Errorf("%s: utilization: %w", uuid, err)
	} else if ret == nvml.SUCCESS {
		r.Util = float64(util.Gpu) / 100
	}
	if err := nvmlMemory(&r, dev); err != nil {
		return nil, fmt.Errorf("%s: %w", uuid, err)
	}
	mw, ret := dev.powerMilliwatts()
	if err := nvmlErr(ret); err != nil {
		return nil, fmt.Errorf("%s: power: %w", uuid, err)
	} else if ret == nvml.SUCCESS {
		r.PowerWatts = float64(mw) / 1000
	}
	mj, ret := dev.energyMillijoules()
	if err := nvmlErr(ret); err != nil {
		return nil, fmt.Errorf("%s: energy: %w", uuid, err)
	} else if ret == nvml.SUCCESS && mj <= math.MaxInt64 {
		r.EnergyMillijoules = int64(mj)
	}
	return []Reading{r}, nil
}

// readMIG reads the MIG devices of a MIG-enabled GPU. NVML reports their
// memory only: utilisation, power and energy are the whole GPU's.
func (s *nvmlSource) readMIG(index int, model string, gpu nvmlDevice) ([]Reading, error) {
	var total uint64
	if mem, ret := gpu.memory(); ret == nvml.SUCCESS {
		total = mem.Total
	}
	slots, ret := gpu.maxMIGDevices()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("MIG device count: %w", ret)
	}
	var out []Reading
	for slot := range slots {
		mig, ret := gpu.migDevice(slot)
		if ret == nvml.ERROR_NOT_FOUND {
			continue
		}
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("MIG device %d: %w", slot, ret)
		}
		uuid, ret := mig.uuid()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("MIG device %d: UUID: %w", slot, ret)
		}
		gi, ret := mig.gpuInstanceID()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("%s: GPU instance id: %w", uuid, ret)
		}
		r := libReading(uuid, index, model)
		r.MIGInstance = strconv.Itoa(gi)
		r.MIGProfile = "mig"
		attrs, ret := mig.attributes()
		if err := nvmlErr(ret); err != nil {
			return nil, fmt.Errorf("%s: attributes: %w", uuid, err)
		} else if ret == nvml.SUCCESS {
			r.MIGProfile = migProfileName(attrs, total)
		}
		if err := nvmlMemory(&r, mig); err != nil {
			return nil, fmt.Errorf("%s: %w", uuid, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Reading) int {
		x, _ := strconv.Atoi(a.MIGInstance)
		y, _ := strconv.Atoi(b.MIGInstance)
		return cmp.Or(cmp.Compare(x, y), cmp.Compare(a.UUID, b.UUID))
	})
	return out, nil
}

func nvmlMemory(r *Reading, dev nvmlDevice) error {
	mem, ret := dev.memory()
	if err := nvmlErr(ret); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	if ret == nvml.SUCCESS && mem.Used <= math.MaxInt64 && mem.Free <= math.MaxInt64 {
		r.FBUsedBytes, r.FBFreeBytes = int64(mem.Used), int64(mem.Free)
	}
	return nil
}

// nvmlErr is ret as an error, nil for success and for a call the device
// or driver does not support (the field is then unknown).
func nvmlErr(ret nvml.Return) error {
	switch ret {
	case nvml.SUCCESS, nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		return nil
	}
	return ret
}

// migProfileName names a MIG device's GPU instance profile ("3g.40gb")
// from its slices and memory the way NVIDIA's device plugin does: the
// memory as a fraction of the GPU's, rounded up to eighths, times the
// GPU's memory in whole GiB (a 3g.40gb has 39.25 GiB of an 80 GiB A100).
// "mig" when NVML gives too little to tell.
func migProfileName(a nvml.DeviceAttributes, gpuTotalBytes uint64) string {
	if a.GpuInstanceSliceCount == 0 || a.MemorySizeMB == 0 {
		return "mig"
	}
	gb := (a.MemorySizeMB + 1023) / 1024
	if gpuTotalBytes > 0 {
		const gib = 1 << 30
		frac := math.Ceil(float64(a.MemorySizeMB<<20)/float64(gpuTotalBytes)*8) / 8
		gb = uint64(math.Round(frac * float64((gpuTotalBytes+gib-1)/gib)))
	}
	return fmt.Sprintf("%dg.%dgb", a.GpuInstanceSliceCount, gb)
}

func (s *nvmlSource) Close() error {
	if s.api == nil {
		return nil
	}
	ret := s.api.shutdown()
	s.api = nil
	if ret != nvml.SUCCESS {
		return fmt.Errorf("NVML source: shutdown: %w", ret)
	}
	return nil
}

// nvmlLib is nvmlAPI over go-nvml, with a library instance of its own
// (nvml.New), so that closing it releases only its own reference.
type nvmlLib struct{ lib nvml.Interface }

func openNVMLLib() (*nvmlLib, error) {
	lib := nvml.New()
	ret, err := nvmlInit(lib)
	if err != nil {
		return nil, err
	}
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, fmt.Errorf("libnvidia-ml.so.1 not found (%v): no NVIDIA driver on this node", ret)
	default:
		return nil, fmt.Errorf("init: %v", ret)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS || n == 0 {
		lib.Shutdown()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("count GPUs: %v", ret)
		}
		return nil, fmt.Errorf("no GPU on this node")
	}
	return &nvmlLib{lib: lib}, nil
}

// nvmlInit calls lib.Init; a panic in the library is an error.
func nvmlInit(lib nvml.Interface) (ret nvml.Return, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("nvml.Init panicked: %v", p)
		}
	}()
	return lib.Init(), nil
}

func (l *nvmlLib) count() (int, nvml.Return) { return l.lib.DeviceGetCount() }

func (l *nvmlLib) device(index int) (nvmlDevice, nvml.Return) {
	d, ret := l.lib.DeviceGetHandleByIndex(index)
	return nvmlHandle{d}, ret
}

func (l *nvmlLib) shutdown() nvml.Return { return l.lib.Shutdown() }

// nvmlHandle is nvmlDevice over an NVML device handle.
type nvmlHandle struct{ d nvml.Device }

func (h nvmlHandle) uuid() (string, nvml.Return)                  { return h.d.GetUUID() }
func (h nvmlHandle) name() (string, nvml.Return)                  { return h.d.GetName() }
func (h nvmlHandle) utilization() (nvml.Utilization, nvml.Return) { return h.d.GetUtilizationRates() }
func (h nvmlHandle) memory() (nvml.Memory, nvml.Return)           { return h.d.GetMemoryInfo() }
func (h nvmlHandle) powerMilliwatts() (uint32, nvml.Return)       { return h.d.GetPowerUsage() }
func (h nvmlHandle) energyMillijoules() (uint64, nvml.Return)     { return h.d.GetTotalEnergyConsumption() }
func (h nvmlHandle) maxMIGDevices() (int, nvml.Return)            { return h.d.GetMaxMigDeviceCount() }
func (h nvmlHandle) gpuInstanceID() (int, nvml.Return)            { return h.d.GetGpuInstanceId() }
func (h nvmlHandle) attributes() (nvml.DeviceAttributes, nvml.Return) {
	return h.d.GetAttributes()
}

func (h nvmlHandle) migMode() (int, nvml.Return) {
	current, _, ret := h.d.GetMigMode()
	return current, ret
}

func (h nvmlHandle) migDevice(index int) (nvmlDevice, nvml.Return) {
	d, ret := h.d.GetMigDeviceHandleByIndex(index)
	return nvmlHandle{d}, ret
}
