package ktopics

import "testing"

func TestCatalogMatchesDesign(t *testing.T) {
	f := func(name, cleanup, retentionMS string) {
		t.Helper()
		topic, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := topic.Configs["cleanup.policy"]; got != cleanup {
			t.Errorf("%s: cleanup.policy %q, want %q", name, got, cleanup)
		}
		if got := topic.Configs["retention.ms"]; got != retentionMS {
			t.Errorf("%s: retention.ms %q, want %q", name, got, retentionMS)
		}
		if topic.Partitions < 1 || topic.ReplicationFactor < 1 || topic.Key == "" {
			t.Errorf("%s: incomplete entry %+v", name, topic)
		}
	}
	f(Usage, "delete", "604800000")
	f(GPU, "delete", "604800000")
	f(Spend, "delete", "86400000")
	f(Anomalies, "delete", "2592000000")
	f(BudgetState, "compact", "")
	f(Verdicts, "compact", "")
	f(DeadLetter, "delete", "2592000000")
	f(MeterState, "compact", "")
	f(BudgetEvents, "delete", "2592000000")
	f(Instances, "compact", "")
	if n := len(Catalog()); n != 10 {
		t.Errorf("catalog has %d topics, want 10", n)
	}
	if _, err := Lookup("nope.v1"); err == nil {
		t.Error("Lookup of an unknown topic succeeded")
	}
	if got := WithPrefix("acme.").Verdicts(); got != "acme.verdicts.v1" {
		t.Errorf("prefixed name %q", got)
	}
}
