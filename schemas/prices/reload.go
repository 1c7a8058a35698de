package prices

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"
)

// Load builds the catalog in use: the shipped one, with the org override
// file merged over it when overridePath is set.
func Load(overridePath string) (*Catalog, error) {
	base, err := ParseFile(Shipped())
	if err != nil {
		return nil, fmt.Errorf("prices: shipped catalog: %w", err)
	}
	var digest [32]byte
	if overridePath != "" {
		b, err := os.ReadFile(overridePath)
		if err != nil {
			return nil, fmt.Errorf("prices: %w", err)
		}
		digest = sha256.Sum256(b)
		over, err := ParseFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", overridePath, err)
		}
		if base, err = Merge(base, over); err != nil {
			return nil, fmt.Errorf("%s: %w", overridePath, err)
		}
	}
	c, err := Compile(base)
	if err != nil {
		return nil, err
	}
	c.overrideDigest = digest
	return c, nil
}

// Watch reloads the override file whenever its content changes, checking
// every interval, until ctx ends. (Content, not modification time: a quick
// edit can keep both mtime and size.) A file that fails to load keeps the
// catalog in use and is reported through onErr; a good one is swapped in
// without a restart.
func (p *Pricer) Watch(ctx context.Context, overridePath string, interval time.Duration, onReload func(version string), onErr func(error)) {
	if overridePath == "" || interval <= 0 {
		return
	}
	digest := func() [32]byte {
		b, err := os.ReadFile(overridePath)
		if err != nil {
			return [32]byte{}
		}
		return sha256.Sum256(b)
	}
	last := p.Catalog().overrideDigest
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d := digest()
		if d == last {
			continue
		}
		last = d
		c, err := Load(overridePath)
		if err != nil {
			p.reloads.WithLabelValues("error").Inc()
			if onErr != nil {
				onErr(err)
			}
			continue
		}
		p.Swap(c)
		p.reloads.WithLabelValues("ok").Inc()
		if onReload != nil {
			onReload(c.Version())
		}
	}
}
