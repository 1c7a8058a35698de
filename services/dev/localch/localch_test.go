package localch

import (
	"context"
	"testing"
)

func TestStartStop(t *testing.T) {
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), Install: true, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up at %s", s.Addr())
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
