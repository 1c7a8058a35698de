package ktopics_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/burnrate/burnrate/e2e/harness"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, harness.Need{Kafka: true}, &env) }

func TestEnsureCreatesThenReportsNoChange(t *testing.T) {
	cfg := env.KafkaConfig(t)
	cl, err := kclient.New(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first, err := ktopics.Ensure(ctx, adm, cfg.TopicPrefix, ktopics.Catalog())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range first.Topics {
		if tr.Status != ktopics.Created {
			t.Errorf("first run: %s is %s, want created", tr.Topic, tr.Status)
		}
	}

	// The live topics carry the catalog's partitions and configs.
	names := ktopics.WithPrefix(cfg.TopicPrefix)
	details, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range ktopics.Catalog() {
		td, ok := details[names.Full(topic.Name)]
		if !ok {
			t.Fatalf("%s missing after ensure", names.Full(topic.Name))
		}
		if got := int32(len(td.Partitions)); got != topic.Partitions {
			t.Errorf("%s: %d partitions, want %d", topic.Name, got, topic.Partitions)
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, names.Full(topic.Name))
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range topic.Configs {
			found := false
			for _, c := range rcs[0].Configs {
				if c.Key == k {
					found = true
					if c.MaybeValue() != want {
						t.Errorf("%s: %s = %q, want %q", topic.Name, k, c.MaybeValue(), want)
					}
				}
			}
			if !found {
				t.Errorf("%s: config %s not reported", topic.Name, k)
			}
		}
	}

	second, err := ktopics.Ensure(ctx, adm, cfg.TopicPrefix, ktopics.Catalog())
	if err != nil {
		t.Fatal(err)
	}
	if second.Changed() || len(second.Mismatches()) > 0 {
		t.Fatalf("second run changed or found mismatches:\n%s", second)
	}
	for _, tr := range second.Topics {
		if tr.Status != ktopics.OK {
			t.Errorf("second run: %s is %s, want ok", tr.Topic, tr.Status)
		}
	}
}

func TestEnsureReportsConfigDrift(t *testing.T) {
	cfg := env.KafkaConfig(t)
	cl, err := kclient.New(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	usage, _ := ktopics.Lookup(ktopics.Usage)
	// Someone created usage.v1 by hand with 2 partitions and 1 day retention.
	full := cfg.TopicPrefix + ktopics.Usage
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("86400000")}, full); err != nil {
		t.Fatal(err)
	}
	rep, err := ktopics.Ensure(ctx, adm, cfg.TopicPrefix, []ktopics.Topic{usage})
	if err != nil {
		t.Fatal(err)
	}
	mm := rep.Mismatches()
	if len(mm) != 1 || mm[0].Topic != full {
		t.Fatalf("want one mismatch for %s, got:\n%s", full, rep)
	}
	if len(mm[0].Diffs) != 2 {
		t.Errorf("want partition and retention.ms diffs, got %q", mm[0].Diffs)
	}
}
