package policy

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// writeFile replaces path atomically, as a careful editor or a config
// map update does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	path := t.TempDir() + "/policies.yaml"
	loads, errs := make(chan Policies, 10), make(chan error, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, 5*time.Millisecond, nil, func(p Policies) { loads <- p }, func(err error) { errs <- err })
	}()
	next := func() (Policies, error) {
		t.Helper()
		select {
		case p := <-loads:
			return p, nil
		case err := <-errs:
			return Policies{}, err
		case <-time.After(2 * time.Second):
			t.Fatal("no report from Watch")
			return Policies{}, nil
		}
	}
	budget := func(limit string) string {
		return "budgets:\n- {subject: team=a, period: day, limit_usd: " + limit + "}\n"
	}

	if _, err := next(); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Fatalf("missing file: got %v, want an error naming the path", err)
	}
	writeFile(t, path, budget("1"))
	if p, err := next(); err != nil || p.Budgets[0].LimitNanoUSD != 1e9 {
		t.Fatalf("file appeared: got %+v, %v", p, err)
	}
	writeFile(t, path, budget("2"))
	if p, err := next(); err != nil || p.Budgets[0].LimitNanoUSD != 2e9 {
		t.Fatalf("file changed: got %+v, %v", p, err)
	}
	writeFile(t, path, budget("two"))
	if _, err := next(); err == nil || !strings.Contains(err.Error(), "limit_usd") {
		t.Fatalf("file broken: got %v, want a limit_usd error", err)
	}
	writeFile(t, path, budget("3"))
	if p, err := next(); err != nil || p.Budgets[0].LimitNanoUSD != 3e9 {
		t.Fatalf("file fixed: got %+v, %v", p, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	if len(loads)+len(errs) > 0 {
		t.Errorf("unexpected reports: %d loads, %d errors", len(loads), len(errs))
	}
}
