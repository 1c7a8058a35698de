package killswitch

import "time"

// burnSeconds is how far back a burnRate remembers.
const burnSeconds = 64

// burnRate is a budget's recent spend per wall-clock second, for lease
// margins (the last seconds) and forecasts (the last minute).
type burnRate struct {
	nano  [burnSeconds]int64
	sec   [burnSeconds]int64 // the unix second each slot holds
	first time.Time
}

func (b *burnRate) add(now time.Time, nano int64) {
	if b.first.IsZero() {
		b.first = now
	}
	s := now.Unix()
	i := s % burnSeconds
	if b.sec[i] != s {
		b.sec[i], b.nano[i] = s, 0
	}
	b.nano[i] += nano
}

// perSecond is the mean spend per second over the last window (at most
// burnSeconds), counting only the time since the first spend.
func (b *burnRate) perSecond(now time.Time, window time.Duration) float64 {
	if b.first.IsZero() {
		return 0
	}
	n := int64(min(window/time.Second, burnSeconds-1))
	s := now.Unix()
	var sum int64
	for k := int64(0); k < n; k++ {
		i := (s - k) % burnSeconds
		if b.sec[i] == s-k {
			sum += b.nano[i]
		}
	}
	span := min(float64(n), max(now.Sub(b.first).Seconds(), 1))
	return float64(sum) / span
}

// seen is how long this burn rate has been measured.
func (b *burnRate) seen(now time.Time) time.Duration {
	if b.first.IsZero() {
		return 0
	}
	return now.Sub(b.first)
}
