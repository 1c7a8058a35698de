package gpuagent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseExporter feeds ParseExporter arbitrary text: it must not panic,
// and whatever it accepts must keep fractions in [0, 1] or unknown.
func FuzzParseExporter(f *testing.F) {
	seeds, err := filepath.Glob("testdata/exporter/*.prom")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\",UUID=\"GPU-a\",GPU_I_ID=\"1\"} 1e300\n"))
	f.Add([]byte("#TYPE A \n{}0")) // panicked inside expfmt v0.70.0
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, err := ParseExporter(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rs {
			for name, v := range map[string]float64{"Util": r.Util, "GrEngineActive": r.GrEngineActive,
				"SMActive": r.SMActive, "TensorActive": r.TensorActive, "DRAMActive": r.DRAMActive} {
				if v != unknown && !(v >= 0 && v <= 1) {
					t.Fatalf("%s %s = %v, want [0, 1] or -1", r.UUID, name, v)
				}
			}
		}
	})
}
