package policy

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// Watch polls the policy file at path every interval until ctx is done.
// The first poll happens at once and reports the file as it is; after
// that only changes are reported. A change that parses goes to onLoad
// (a caller that loaded the file itself can skip a Version it has); one
// that does not, a missing or unreadable file included, goes to onErr
// and the previous policies stay in force: onLoad never sees a broken
// file, and deleting the file lifts no budget (write an empty file for
// that). A changed file is acted on once two polls in a row read the same
// bytes, so a half-written file is not loaded. A non-positive interval
// polls once, then waits for ctx.
func Watch(ctx context.Context, path string, interval time.Duration, checkKeys func([]string) error, onLoad func(Policies), onErr func(error)) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	var loaded, last fileState
	for first := true; ; first = false {
		if ctx.Err() != nil {
			return
		}
		b, readErr := os.ReadFile(path)
		now := fileState{sum: sha256.Sum256(b)}
		if readErr != nil {
			readErr = readError(path, readErr)
			now = fileState{err: readErr.Error()}
		}
		switch {
		case !first && now == loaded:
		case !first && now != last: // still changing, or about to
		default:
			loaded = now
			pol, err := Policies{}, readErr
			if err == nil {
				pol, err = parseFile(path, b, checkKeys)
			}
			if err != nil {
				if onErr != nil {
					onErr(err)
				}
			} else if onLoad != nil {
				onLoad(pol)
			}
		}
		last = now
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// fileState tells two reads of the policy file apart.
type fileState struct {
	sum [32]byte
	err string
}
