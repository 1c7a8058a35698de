package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/ktopics"
)

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "ensure" && args[0] != "list") {
		fmt.Fprintln(stderr, "usage: burnrate topics ensure|list [--config FILE] [--prefix P]\n  ensure  create missing topics, report differences (exit 1 on a mismatch)\n  list    print the catalog")
		return errUsage
	}
	var c common
	fs := newFlagSet("topics "+args[0], stderr, &c)
	prefix := fs.String("prefix", "", "override kafka.topic_prefix")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	f, err := c.load()
	if err != nil {
		return err
	}
	if *prefix != "" {
		f.Kafka.TopicPrefix = *prefix
	}
	if args[0] == "list" {
		return listTopics(stdout, f.Kafka.TopicPrefix)
	}
	cl, err := kclient.New(f.Kafka, "topics")
	if err != nil {
		return err
	}
	defer cl.Close()
	rep, err := ktopics.Ensure(ctx, kadm.NewClient(cl), f.Kafka.TopicPrefix, ktopics.Catalog())
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.String())
	if mm := rep.Mismatches(); len(mm) > 0 {
		return fmt.Errorf("%d topic(s) differ from the catalog; fix them with kafka-configs / kafka-topics or recreate them", len(mm))
	}
	if !rep.Changed() {
		fmt.Fprintln(stdout, "no change")
	}
	return nil
}

func listTopics(w io.Writer, prefix string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRF\tKEY\tCONFIGS")
	for _, t := range ktopics.Catalog() {
		var cfgs []string
		for k, v := range t.Configs {
			cfgs = append(cfgs, k+"="+v)
		}
		sort.Strings(cfgs)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", prefix+t.Name, t.Partitions, t.ReplicationFactor, t.Key, strings.Join(cfgs, ","))
	}
	return tw.Flush()
}
