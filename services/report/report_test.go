package report

import (
	"strings"
	"testing"
	"time"
)

func TestUSDIsExact(t *testing.T) {
	f := func(n int64, want string) {
		t.Helper()
		if got := USD(n); got != want {
			t.Errorf("USD(%d) = %s, want %s", n, got, want)
		}
	}
	f(0, "0.000000000")
	f(1, "0.000000001")
	f(14_820_126_756, "14.820126756")
	f(-5_000_000_000, "-5.000000000")
}

func TestValidateNamesTheOption(t *testing.T) {
	now := time.Now()
	o := Options{Source: "usage", By: []string{"team", "planet", "tag."}, From: now, To: now, Format: "xml"}
	err := o.Validate()
	for _, want := range []string{`--by: "planet"`, `--by: "tag."`, "--to", `--format: "xml"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not name %s", err, want)
		}
	}
	if err := (Options{Source: "gpu", By: []string{"node", "gpu_model"}, From: now, To: now.Add(time.Hour), Format: "csv"}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (Options{Source: "gpu", By: []string{"customer"}, From: now, To: now.Add(time.Hour), Format: "csv"}).Validate(); err == nil {
		t.Error("customer accepted for gpu")
	}
}

func TestQueryGroupsByEveryDimension(t *testing.T) {
	q, args := query(Options{Source: "usage", By: []string{"team", "tag.region"}, From: time.Unix(100, 0), To: time.Unix(200, 0)}, "db")
	for _, want := range []string{"team AS k0", "tag_values[indexOf(tag_keys, ?)] AS k1", "FROM db.usage_events", "GROUP BY k0, k1", "ORDER BY cost DESC, k0, k1"} {
		if !strings.Contains(q, want) {
			t.Errorf("query lacks %q:\n%s", want, q)
		}
	}
	if len(args) != 3 || args[0] != "region" {
		t.Errorf("args %v", args)
	}
}
