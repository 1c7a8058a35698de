package main

import (
	"context"
	"io"

	"github.com/burnrate/burnrate/services/loadgen"
	"github.com/burnrate/burnrate/services/mockupstream"
)

func runMockUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := mockupstream.ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	var c common
	log, err := c.logger(defaultsForTools(), "mock-upstream")
	if err != nil {
		return err
	}
	defer log.Sync()
	return mockupstream.Run(ctx, cfg, log)
}

func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadgen.ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	_, err = loadgen.Run(ctx, cfg, stdout)
	return err
}
