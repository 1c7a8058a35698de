package gpuagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/NVIDIA/go-dcgm/pkg/dcgm"

	"github.com/burnrate/burnrate/schemas/events"
)

// DCGMConfig says which DCGM host engine to read.
type DCGMConfig struct {
	// Address of a remote nv-hostengine ("host:5555"); empty runs the host
	// engine embedded in the agent.
	Address string
}

// OpenDCGM connects to DCGM and watches the fields a Reading needs, every
// second. Without libdcgm, without a host engine answering at cfg.Address,
// or without a GPU DCGM supports, the error wraps ErrUnavailable.
//
// go-dcgm keeps one connection per process: a second OpenDCGM before the
// first is closed shares the first one's connection, whatever its Address.
func OpenDCGM(cfg DCGMConfig) (Source, error) {
	api, err := openDCGMLib(cfg)
	if err != nil {
		return nil, fmt.Errorf("DCGM source unavailable: %w: %v", ErrUnavailable, err)
	}
	return &dcgmSource{api: api}, nil
}

// dcgmAPI is what dcgmSource needs from DCGM; dcgmLib is the real one,
// tests replay recorded values.
type dcgmAPI interface {
	// devices are the GPUs DCGM supports.
	devices() ([]dcgmDevice, error)
	// migInstances are the GPU instances of every MIG-enabled GPU.
	migInstances() ([]dcgmMIG, error)
	// latest is the last value of each watched field of one entity (a GPU
	// or a GPU instance), in DCGM's own encoding, blanks included.
	latest(entity dcgm.GroupEntityPair) ([]dcgm.FieldValue_v1, error)
	close()
}

type dcgmDevice struct {
	gpu   uint // DCGM GPU id, the NVML index on every driver we know
	uuid  string
	model string
}

type dcgmMIG struct {
	gpu      uint   // parent GPU id
	entity   uint   // DCGM entity id of the GPU instance (FE_GPU_I)
	instance uint   // GPU instance id within the GPU, as nvidia-smi shows it
	profile  string // "1g.10gb"
}

// dcgmBasicFields are read on every GPU.
func dcgmBasicFields() []dcgm.Short {
	return []dcgm.Short{
		dcgm.DCGM_FI_DEV_GPU_UTIL,
		dcgm.DCGM_FI_DEV_FB_USED,
		dcgm.DCGM_FI_DEV_FB_FREE,
		dcgm.DCGM_FI_DEV_POWER_USAGE,
		dcgm.DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
	}
}

// dcgmProfFields need DCGM's profiling module, which some GPUs lack and
// which Nsight can hold.
func dcgmProfFields() []dcgm.Short {
	return []dcgm.Short{
		dcgm.DCGM_FI_PROF_GR_ENGINE_ACTIVE,
		dcgm.DCGM_FI_PROF_SM_ACTIVE,
		dcgm.DCGM_FI_PROF_PIPE_TENSOR_ACTIVE,
		dcgm.DCGM_FI_PROF_DRAM_ACTIVE,
	}
}

// dcgmSource reads every GPU, or on a MIG GPU every GPU instance, from
// DCGM's watched fields.
type dcgmSource struct {
	api dcgmAPI // nil once closed
}

var _ Source = (*dcgmSource)(nil)

func (s *dcgmSource) Kind() events.GPUSource { return events.GPUSourceDCGM }

// Read returns one Reading per GPU, a MIG GPU's instances in its place (so
// that the GPU is not counted beside them), sorted by GPU and instance id.
// A GPU or instance that cannot be read is left out and named in the
// error, which then comes with the readings of the others; when nothing
// could be read, or DCGM cannot list the GPUs, the error wraps
// ErrUnavailable.
func (s *dcgmSource) Read(ctx context.Context) ([]Reading, error) {
	if s.api == nil {
		return nil, fmt.Errorf("DCGM source: %w: closed", ErrUnavailable)
	}
	devs, err := s.api.devices()
	if err != nil {
		return nil, fmt.Errorf("DCGM source unavailable: %w: list GPUs: %v", ErrUnavailable, err)
	}
	migs, err := s.api.migInstances()
	if err != nil {
		return nil, fmt.Errorf("DCGM source unavailable: %w: read MIG hierarchy: %v", ErrUnavailable, err)
	}
	slices.SortFunc(devs, func(a, b dcgmDevice) int { return cmp.Compare(a.gpu, b.gpu) })
	slices.SortFunc(migs, func(a, b dcgmMIG) int { return cmp.Or(cmp.Compare(a.gpu, b.gpu), cmp.Compare(a.instance, b.instance)) })

	var out []Reading
	var errs []error
	for _, d := range devs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("DCGM source: %w", err)
		}
		instances := slices.DeleteFunc(slices.Clone(migs), func(m dcgmMIG) bool { return m.gpu != d.gpu })
		if len(instances) == 0 {
			r := libReading(d.uuid, int(d.gpu), d.model)
			if err := s.fill(&r, dcgm.GroupEntityPair{EntityGroupId: dcgm.FE_GPU, EntityId: d.gpu}); err != nil {
				errs = append(errs, fmt.Errorf("GPU %d (%s): %w", d.gpu, d.uuid, err))
				continue
			}
			out = append(out, r)
			continue
		}
		for _, m := range instances {
			id := strconv.FormatUint(uint64(m.instance), 10)
			// DCGM does not give the MIG device UUID; the parent's plus the
			// instance id is unique on the node and matches the exporter
			// source, so a node switching sources keeps its keys.
			r := libReading(d.uuid+"/mig-"+id, int(d.gpu), d.model)
			r.MIGInstance, r.MIGProfile = id, m.profile
			if err := s.fill(&r, dcgm.GroupEntityPair{EntityGroupId: dcgm.FE_GPU_I, EntityId: m.entity}); err != nil {
				errs = append(errs, fmt.Errorf("GPU %d (%s) MIG instance %s: %w", d.gpu, d.uuid, id, err))
				continue
			}
			out = append(out, r)
		}
	}
	return libReadResult("DCGM", out, errs)
}

// fill sets r's metrics from the entity's latest values; blank values
// (not watched yet, not supported, profiling unavailable) stay unknown.
func (s *dcgmSource) fill(r *Reading, e dcgm.GroupEntityPair) error {
	vals, err := s.api.latest(e)
	if err != nil {
		return err
	}
	for _, v := range vals {
		switch v.FieldId {
		case dcgm.DCGM_FI_DEV_GPU_UTIL: // percent
			if f, ok := dcgmFloat(v); ok {
				r.Util = f / 100
			}
		case dcgm.DCGM_FI_PROF_GR_ENGINE_ACTIVE:
			r.GrEngineActive = dcgmFraction(v)
		case dcgm.DCGM_FI_PROF_SM_ACTIVE:
			r.SMActive = dcgmFraction(v)
		case dcgm.DCGM_FI_PROF_PIPE_TENSOR_ACTIVE:
			r.TensorActive = dcgmFraction(v)
		case dcgm.DCGM_FI_PROF_DRAM_ACTIVE:
			r.DRAMActive = dcgmFraction(v)
		case dcgm.DCGM_FI_DEV_FB_USED: // MiB
			if i, ok := dcgmInt(v); ok {
				r.FBUsedBytes = i << 20
			}
		case dcgm.DCGM_FI_DEV_FB_FREE: // MiB
			if i, ok := dcgmInt(v); ok {
				r.FBFreeBytes = i << 20
			}
		case dcgm.DCGM_FI_DEV_POWER_USAGE: // W
			if f, ok := dcgmFloat(v); ok {
				r.PowerWatts = f
			}
		case dcgm.DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION: // mJ since the driver loaded
			if i, ok := dcgmInt(v); ok {
				r.EnergyMillijoules = i
			}
		}
	}
	return nil
}

func (s *dcgmSource) Close() error {
	if s.api != nil {
		s.api.close()
		s.api = nil
	}
	return nil
}

// dcgmInt is v as an integer; false for a failed, blank or negative value.
func dcgmInt(v dcgm.FieldValue_v1) (int64, bool) {
	if v.Status != 0 {
		return 0, false
	}
	switch v.FieldType {
	case dcgm.DCGM_FT_INT64:
		i := v.Int64()
		return i, i >= 0 && !dcgm.IsInt64Blank(i)
	case dcgm.DCGM_FT_DOUBLE:
		f, ok := dcgmFloat(v)
		return int64(math.Round(f)), ok
	}
	return 0, false
}

// dcgmFloat is v as a float; false for a failed, blank or negative value.
func dcgmFloat(v dcgm.FieldValue_v1) (float64, bool) {
	if v.Status != 0 {
		return 0, false
	}
	switch v.FieldType {
	case dcgm.DCGM_FT_DOUBLE:
		f := v.Float64()
		return f, f >= 0 && f < dcgm.DCGM_FT_FP64_BLANK
	case dcgm.DCGM_FT_INT64:
		i, ok := dcgmInt(v)
		return float64(i), ok
	}
	return 0, false
}

func dcgmFraction(v dcgm.FieldValue_v1) float64 {
	if f, ok := dcgmFloat(v); ok {
		return f
	}
	return unknown
}

// libReading is a reading of one GPU with every metric unknown.
func libReading(uuid string, index int, model string) Reading {
	return Reading{
		UUID: uuid, Index: index, Model: model,
		Util: unknown, GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
		FBUsedBytes: unknown, FBFreeBytes: unknown, PowerWatts: unknown, EnergyMillijoules: unknown,
	}
}

// libReadResult is what a library source's Read returns: the readings it
// took, and the per-GPU failures joined; nothing read at all means the
// source is no longer usable, so that the agent opens it (or the next
// source) again.
func libReadResult(source string, out []Reading, errs []error) ([]Reading, error) {
	if len(errs) == 0 {
		return out, nil
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s source unavailable: %w: no GPU could be read: %w", source, ErrUnavailable, errors.Join(errs...))
	}
	return out, fmt.Errorf("%s source: %d GPUs or MIG instances could not be read (the others were): %w", source, len(errs), errors.Join(errs...))
}

// dcgmUpdateMicros is how often DCGM samples the watched fields.
const dcgmUpdateMicros = 1_000_000

// dcgmLib is dcgmAPI over go-dcgm. It watches the fields on a group of its
// own holding every GPU and GPU instance, which it destroys on close.
type dcgmLib struct {
	cleanup func()
	group   *dcgm.GroupHandle
	basic   *dcgm.FieldHandle
	prof    *dcgm.FieldHandle
	fields  []dcgm.Short
	devs    []dcgmDevice
	inGroup map[uint]bool // GPU instance entities added to group
	name    string        // of the group and field groups
}

func openDCGMLib(cfg DCGMConfig) (_ *dcgmLib, err error) {
	cleanup, err := dcgmInit(cfg)
	if err != nil {
		return nil, err
	}
	l := &dcgmLib{
		cleanup: cleanup,
		fields:  slices.Concat(dcgmBasicFields(), dcgmProfFields()),
		inGroup: map[uint]bool{},
		name:    fmt.Sprintf("burnrate-gpuagent-%d", rand.Uint64()), // unique on a shared host engine
	}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	ids, err := dcgm.GetSupportedDevices()
	if err != nil {
		return nil, fmt.Errorf("list GPUs: %v", err)
	}
	if len(ids) == 0 {
		// DCGM supports data-center GPUs only; NVML may still read these.
		return nil, errors.New("no GPU that DCGM supports on this node")
	}
	for _, id := range ids {
		info, err := dcgm.GetDeviceInfo(id)
		if err != nil {
			return nil, fmt.Errorf("GPU %d: device info: %v", id, err)
		}
		l.devs = append(l.devs, dcgmDevice{gpu: id, uuid: info.UUID, model: info.Identifiers.Model})
	}
	g, err := dcgm.CreateGroup(l.name)
	if err != nil {
		return nil, err
	}
	l.group = &g
	for _, d := range l.devs {
		if err := dcgm.AddEntityToGroup(g, dcgm.FE_GPU, d.gpu); err != nil {
			return nil, err
		}
	}
	basic, err := dcgm.FieldGroupCreate(l.name+"-basic", dcgmBasicFields())
	if err != nil {
		return nil, err
	}
	l.basic = &basic
	prof, err := dcgm.FieldGroupCreate(l.name+"-prof", dcgmProfFields())
	if err != nil {
		return nil, err
	}
	l.prof = &prof
	if err := l.watch(); err != nil {
		return nil, err
	}
	if _, err := l.migInstances(); err != nil {
		return nil, fmt.Errorf("read MIG hierarchy: %v", err)
	}
	return l, nil
}

// dcgmInit starts DCGM embedded, or connects to cfg.Address; a panic in
// the library is an error too.
func dcgmInit(cfg DCGMConfig) (cleanup func(), err error) {
	defer func() {
		if p := recover(); p != nil {
			cleanup, err = nil, fmt.Errorf("dcgm.Init panicked: %v", p)
		}
	}()
	if cfg.Address == "" {
		cleanup, err = dcgm.Init(dcgm.Embedded)
		if err != nil {
			return nil, fmt.Errorf("embedded host engine: %v", err)
		}
		return cleanup, nil
	}
	cleanup, err = dcgm.Init(dcgm.Standalone, cfg.Address, "0") // "0": a TCP address, not a socket path
	if err != nil {
		return nil, fmt.Errorf("nv-hostengine at %s: %v", cfg.Address, err)
	}
	return cleanup, nil
}

// watch (re)watches the fields on the group. Profiling fields are watched
// where DCGM allows; where it does not they read blank, so unknown.
func (l *dcgmLib) watch() error {
	if err := dcgm.WatchFieldsWithGroupEx(*l.basic, *l.group, dcgmUpdateMicros, 0, 1); err != nil {
		return err
	}
	_ = dcgm.WatchFieldsWithGroupEx(*l.prof, *l.group, dcgmUpdateMicros, 0, 1)
	return nil
}

func (l *dcgmLib) devices() ([]dcgmDevice, error) { return slices.Clone(l.devs), nil }

// migInstances reads the MIG hierarchy, which changes when an operator
// repartitions a GPU, and watches instances it has not seen before.
func (l *dcgmLib) migInstances() ([]dcgmMIG, error) {
	h, err := dcgm.GetGpuInstanceHierarchy()
	if err != nil {
		return nil, err
	}
	var out []dcgmMIG
	var entities []dcgm.GroupEntityPair
	added := false
	for _, e := range h.EntityList[:min(h.Count, uint(len(h.EntityList)))] {
		if e.Entity.EntityGroupId != dcgm.FE_GPU_I || e.Parent.EntityGroupId != dcgm.FE_GPU {
			continue
		}
		out = append(out, dcgmMIG{gpu: e.Parent.EntityId, entity: e.Entity.EntityId, instance: e.Info.NvmlInstanceId, profile: "mig"})
		entities = append(entities, e.Entity)
		if !l.inGroup[e.Entity.EntityId] {
			if err := dcgm.AddEntityToGroup(*l.group, dcgm.FE_GPU_I, e.Entity.EntityId); err != nil {
				return nil, err
			}
			l.inGroup[e.Entity.EntityId] = true
			added = true
		}
	}
	if added {
		if err := l.watch(); err != nil {
			return nil, err
		}
	}
	if len(entities) == 0 {
		return out, nil
	}
	// A GPU instance's DCGM_FI_DEV_NAME is its profile name, as
	// dcgm-exporter reads it.
	names, err := dcgm.EntitiesGetLatestValues(entities, []dcgm.Short{dcgm.DCGM_FI_DEV_NAME}, dcgm.DCGM_FV_FLAG_LIVE_DATA)
	if err != nil {
		return out, nil // profiles stay "mig"
	}
	for _, v := range names {
		if v.FieldType != dcgm.DCGM_FT_STRING || v.Status != 0 || v.StringValue == nil {
			continue
		}
		name := *v.StringValue
		if name == "" || name == dcgm.DCGM_FT_STR_BLANK || name == dcgm.DCGM_FT_STR_NOT_FOUND ||
			name == dcgm.DCGM_FT_STR_NOT_SUPPORTED || name == dcgm.DCGM_FT_STR_NOT_PERMISSIONED {
			continue
		}
		for i := range out {
			if out[i].entity == v.EntityId {
				out[i].profile = name
			}
		}
	}
	return out, nil
}

func (l *dcgmLib) latest(e dcgm.GroupEntityPair) ([]dcgm.FieldValue_v1, error) {
	return dcgm.EntityGetLatestValues(e.EntityGroupId, e.EntityId, l.fields)
}

// close destroys what openDCGMLib created and releases DCGM (stopping the
// embedded host engine, or disconnecting).
func (l *dcgmLib) close() {
	if l.prof != nil {
		_ = dcgm.FieldGroupDestroy(*l.prof)
	}
	if l.basic != nil {
		_ = dcgm.FieldGroupDestroy(*l.basic)
	}
	if l.group != nil {
		_ = dcgm.DestroyGroup(*l.group)
	}
	l.cleanup()
}
