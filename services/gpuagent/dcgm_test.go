package gpuagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-dcgm/pkg/dcgm"

	"github.com/burnrate/burnrate/schemas/events"
)

// dcgmRecord is one entity's watched fields as DCGM returned them, blank
// sentinels included: GPU_UTIL in %, FB in MiB, power in W, energy in mJ.
type dcgmRecord struct {
	util                 int64
	gr, sm, tensor, dram float64
	fbUsed, fbFree       int64
	power                float64
	energy               int64
	fbFreeStatus         int  // a DCGM_ST_* other than OK on FB_FREE
	utilAsDouble         bool // GPU_UTIL sent as a double
}

func (r dcgmRecord) values() []dcgm.FieldValue_v1 {
	util := dcgmI64(dcgm.DCGM_FI_DEV_GPU_UTIL, r.util)
	if r.utilAsDouble {
		util = dcgmF64(dcgm.DCGM_FI_DEV_GPU_UTIL, float64(r.util))
	}
	fbFree := dcgmI64(dcgm.DCGM_FI_DEV_FB_FREE, r.fbFree)
	fbFree.Status = r.fbFreeStatus
	return []dcgm.FieldValue_v1{
		util,
		dcgmI64(dcgm.DCGM_FI_DEV_FB_USED, r.fbUsed),
		fbFree,
		dcgmF64(dcgm.DCGM_FI_DEV_POWER_USAGE, r.power),
		dcgmI64(dcgm.DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, r.energy),
		dcgmF64(dcgm.DCGM_FI_PROF_GR_ENGINE_ACTIVE, r.gr),
		dcgmF64(dcgm.DCGM_FI_PROF_SM_ACTIVE, r.sm),
		dcgmF64(dcgm.DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, r.tensor),
		dcgmF64(dcgm.DCGM_FI_PROF_DRAM_ACTIVE, r.dram),
	}
}

func dcgmI64(field dcgm.Short, v int64) dcgm.FieldValue_v1 {
	fv := dcgm.FieldValue_v1{Version: 1, FieldId: uint(field), FieldType: dcgm.DCGM_FT_INT64, Ts: 1732573201000000}
	binary.NativeEndian.PutUint64(fv.Value[:], uint64(v))
	return fv
}

func dcgmF64(field dcgm.Short, v float64) dcgm.FieldValue_v1 {
	fv := dcgm.FieldValue_v1{Version: 1, FieldId: uint(field), FieldType: dcgm.DCGM_FT_DOUBLE, Ts: 1732573201000000}
	binary.NativeEndian.PutUint64(fv.Value[:], math.Float64bits(v))
	return fv
}

// fakeDCGM replays recorded DCGM answers.
type fakeDCGM struct {
	devs    []dcgmDevice
	migs    []dcgmMIG
	records map[dcgm.GroupEntityPair]dcgmRecord
	fails   map[dcgm.GroupEntityPair]error
	devErr  error
	closed  int
}

func (f *fakeDCGM) devices() ([]dcgmDevice, error)   { return f.devs, f.devErr }
func (f *fakeDCGM) migInstances() ([]dcgmMIG, error) { return f.migs, nil }
func (f *fakeDCGM) close()                           { f.closed++ }

func (f *fakeDCGM) latest(e dcgm.GroupEntityPair) ([]dcgm.FieldValue_v1, error) {
	if err := f.fails[e]; err != nil {
		return nil, err
	}
	r, ok := f.records[e]
	if !ok {
		return nil, fmt.Errorf("no record for %v", e)
	}
	return r.values(), nil
}

func gpuEntity(id uint) dcgm.GroupEntityPair {
	return dcgm.GroupEntityPair{EntityGroupId: dcgm.FE_GPU, EntityId: id}
}

func gpuInstanceEntity(id uint) dcgm.GroupEntityPair {
	return dcgm.GroupEntityPair{EntityGroupId: dcgm.FE_GPU_I, EntityId: id}
}

const (
	h100Model  = "NVIDIA H100 80GB HBM3"
	h100UUID0  = "GPU-5fd4b8c2-8e1a-3c4f-b0a2-6f1d2e3a4b5c"
	h100UUID1  = "GPU-a81c7e34-19d2-4b6f-8e05-c3b7d1f2e960"
	a100Model  = "NVIDIA A100-SXM4-80GB"
	a100UUID   = "GPU-1d2a3b4c-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	fp64Blank  = dcgm.DCGM_FT_FP64_BLANK
	int64Blank = dcgm.DCGM_FT_INT64_BLANK
)

// h100Node is a 2-GPU H100 SXM node: GPU 0 training, GPU 1 idle.
func h100Node() *fakeDCGM {
	return &fakeDCGM{
		devs: []dcgmDevice{{gpu: 1, uuid: h100UUID1, model: h100Model}, {gpu: 0, uuid: h100UUID0, model: h100Model}},
		records: map[dcgm.GroupEntityPair]dcgmRecord{
			gpuEntity(0): {util: 98, gr: 0.937, sm: 0.812, tensor: 0.436, dram: 0.524,
				fbUsed: 72329, fbFree: 8690, power: 612.407, energy: 3871234567890},
			gpuEntity(1): {util: 0, gr: 0, sm: 0, tensor: 0, dram: 0,
				fbUsed: 0, fbFree: 81019, power: 69.873, energy: 1203456789012},
		},
	}
}

func h100Readings() []Reading {
	return []Reading{
		{UUID: h100UUID0, Index: 0, Model: h100Model, Util: 0.98, GrEngineActive: 0.937, SMActive: 0.812,
			TensorActive: 0.436, DRAMActive: 0.524, FBUsedBytes: 72329 << 20, FBFreeBytes: 8690 << 20,
			PowerWatts: 612.407, EnergyMillijoules: 3871234567890},
		{UUID: h100UUID1, Index: 1, Model: h100Model, Util: 0, GrEngineActive: 0, SMActive: 0,
			TensorActive: 0, DRAMActive: 0, FBUsedBytes: 0, FBFreeBytes: 81019 << 20,
			PowerWatts: 69.873, EnergyMillijoules: 1203456789012},
	}
}

// a100MIGNode is an A100 80GB split 3g.40gb + 2g.20gb + 1g.10gb; DCGM
// reports GPU utilisation, power and energy for the whole GPU only.
func a100MIGNode() *fakeDCGM {
	notSupported := dcgmRecord{util: dcgm.DCGM_FT_INT64_NOT_SUPPORTED, power: dcgm.DCGM_FT_FP64_NOT_SUPPORTED,
		energy: dcgm.DCGM_FT_INT64_NOT_SUPPORTED}
	inst := func(gr, sm, tensor, dram float64, used, free int64) dcgmRecord {
		r := notSupported
		r.gr, r.sm, r.tensor, r.dram, r.fbUsed, r.fbFree = gr, sm, tensor, dram, used, free
		return r
	}
	return &fakeDCGM{
		devs: []dcgmDevice{{gpu: 0, uuid: a100UUID, model: a100Model}},
		migs: []dcgmMIG{
			{gpu: 0, entity: 2, instance: 13, profile: "1g.10gb"},
			{gpu: 0, entity: 0, instance: 1, profile: "3g.40gb"},
			{gpu: 0, entity: 1, instance: 5, profile: "2g.20gb"},
		},
		records: map[dcgm.GroupEntityPair]dcgmRecord{
			gpuEntity(0): {util: 71, gr: 0.55, sm: 0.41, tensor: 0.18, dram: 0.33,
				fbUsed: 47011, fbFree: 32100, power: 287.113, energy: 917364528311},
			gpuInstanceEntity(0): inst(0.912, 0.774, 0.402, 0.611, 35870, 4059),
			gpuInstanceEntity(1): inst(0.118, 0.087, 0, 0.052, 11141, 8668),
			gpuInstanceEntity(2): inst(0, 0, 0, 0, 13, 9472),
		},
	}
}

func a100MIGReadings() []Reading {
	unread := Reading{Index: 0, Model: a100Model, Util: unknown, PowerWatts: unknown, EnergyMillijoules: unknown}
	r := func(inst, profile string, gr, sm, tensor, dram float64, used, free int64) Reading {
		x := unread
		x.UUID, x.MIGInstance, x.MIGProfile = a100UUID+"/mig-"+inst, inst, profile
		x.GrEngineActive, x.SMActive, x.TensorActive, x.DRAMActive = gr, sm, tensor, dram
		x.FBUsedBytes, x.FBFreeBytes = used<<20, free<<20
		return x
	}
	return []Reading{
		r("1", "3g.40gb", 0.912, 0.774, 0.402, 0.611, 35870, 4059),
		r("5", "2g.20gb", 0.118, 0.087, 0, 0.052, 11141, 8668),
		r("13", "1g.10gb", 0, 0, 0, 0, 13, 9472),
	}
}

func TestDCGMRead(t *testing.T) {
	f := func(name string, api *fakeDCGM, want []Reading) {
		t.Helper()
		s := &dcgmSource{api: api}
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
	f("2×H100", h100Node(), h100Readings())
	f("A100 MIG", a100MIGNode(), a100MIGReadings())

	// Profiling not watched (blank), FB_FREE not yet sampled, energy not
	// supported (pre-Volta), power not permitted, GPU_UTIL blank.
	blank := &fakeDCGM{
		devs: []dcgmDevice{{gpu: 0, uuid: h100UUID0, model: h100Model}},
		records: map[dcgm.GroupEntityPair]dcgmRecord{gpuEntity(0): {
			util: int64Blank, gr: fp64Blank, sm: dcgm.DCGM_FT_FP64_NOT_FOUND, tensor: fp64Blank, dram: fp64Blank,
			fbUsed: 1024, fbFree: 80000, fbFreeStatus: -24, power: dcgm.DCGM_FT_FP64_NOT_PERMISSIONED,
			energy: dcgm.DCGM_FT_INT64_NOT_SUPPORTED}},
	}
	f("blank", blank, []Reading{{UUID: h100UUID0, Index: 0, Model: h100Model,
		Util: unknown, GrEngineActive: unknown, SMActive: unknown, TensorActive: unknown, DRAMActive: unknown,
		FBUsedBytes: 1024 << 20, FBFreeBytes: unknown, PowerWatts: unknown, EnergyMillijoules: unknown}})

	asDouble := h100Node()
	r := asDouble.records[gpuEntity(0)]
	r.utilAsDouble = true
	asDouble.records[gpuEntity(0)] = r
	f("GPU_UTIL as a double", asDouble, h100Readings())
}

func TestDCGMReadErrors(t *testing.T) {
	lost := errors.New("GPU is lost")

	api := h100Node()
	api.fails = map[dcgm.GroupEntityPair]error{gpuEntity(1): lost}
	got, err := (&dcgmSource{api: api}).Read(context.Background())
	if err == nil || errors.Is(err, ErrUnavailable) || !errors.Is(err, lost) ||
		!strings.Contains(err.Error(), "GPU 1 ("+h100UUID1+")") {
		t.Fatalf("one GPU lost: err = %v, want GPU 1 named, wrapping its error, not ErrUnavailable", err)
	}
	if want := h100Readings()[:1]; !reflect.DeepEqual(got, want) {
		t.Fatalf("one GPU lost: readings\n got %+v\nwant %+v (the other GPU)", got, want)
	}

	api = a100MIGNode()
	api.fails = map[dcgm.GroupEntityPair]error{gpuInstanceEntity(1): lost}
	got, err = (&dcgmSource{api: api}).Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "MIG instance 5") || len(got) != 2 {
		t.Fatalf("one MIG instance failing: %d readings, err = %v", len(got), err)
	}

	api = h100Node()
	api.fails = map[dcgm.GroupEntityPair]error{gpuEntity(0): lost, gpuEntity(1): lost}
	if got, err := (&dcgmSource{api: api}).Read(context.Background()); !errors.Is(err, ErrUnavailable) || got != nil {
		t.Fatalf("every GPU lost: %v, %v; want no readings and ErrUnavailable", got, err)
	}

	api = h100Node()
	api.devErr = errors.New("Host engine connection invalid/disconnected")
	if _, err := (&dcgmSource{api: api}).Read(context.Background()); !errors.Is(err, ErrUnavailable) ||
		!strings.Contains(err.Error(), "DCGM source unavailable") {
		t.Fatalf("host engine gone: err = %v, want ErrUnavailable", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&dcgmSource{api: h100Node()}).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

func TestDCGMClose(t *testing.T) {
	api := h100Node()
	s := &dcgmSource{api: api}
	if s.Kind() != events.GPUSourceDCGM {
		t.Fatalf("Kind = %q", s.Kind())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil || api.closed != 1 {
		t.Fatalf("second Close: %v; library closed %d times, want 1", err, api.closed)
	}
	if _, err := s.Read(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read after Close: err = %v, want ErrUnavailable", err)
	}
}

// TestOpenDCGM calls the real library: where libdcgm is missing (or no
// host engine answers) it must be an error wrapping ErrUnavailable, never a
// crash; where DCGM runs, the source must read.
func TestOpenDCGM(t *testing.T) {
	for _, cfg := range []DCGMConfig{{}, {Address: "127.0.0.1:1"}} {
		s, err := OpenDCGM(cfg)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "DCGM source unavailable") {
				t.Fatalf("OpenDCGM(%+v) = %v; want an error wrapping ErrUnavailable naming the DCGM source", cfg, err)
			}
			t.Logf("OpenDCGM(%+v): %v", cfg, err)
			continue
		}
		rs, err := s.Read(context.Background())
		if err != nil {
			t.Fatalf("OpenDCGM(%+v) works here, but Read: %v", cfg, err)
		}
		t.Logf("OpenDCGM(%+v): DCGM is here, %d readings: %+v", cfg, len(rs), rs)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
