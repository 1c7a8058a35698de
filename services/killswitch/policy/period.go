package policy

import (
	"math"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

// PeriodAt returns the period containing t, [start, end), in UTC. Day,
// week and month periods follow the budget's time zone: a day runs from
// local midnight to the next (23 or 25 hours across a DST change), a week
// from WeekStart 00:00 local, a month from the 1st 00:00 local. A custom
// period is Start + k×Length for whole k, before Start too. A budget with
// no valid period (Parse never makes one) gets the empty period [t, t).
func (b *Budget) PeriodAt(t time.Time) (start, end time.Time) {
	loc := b.Location
	if loc == nil {
		loc = time.UTC
	}
	local := t.In(loc)
	y, m, d := local.Date()
	var bound func(i int) time.Time // the start of the i-th period from t's
	switch b.Period {
	case events.PeriodDay:
		bound = func(i int) time.Time { return midnight(y, m, d+i, loc) }
	case events.PeriodWeek:
		d -= (int(local.Weekday()) - int(b.WeekStart) + 7) % 7
		bound = func(i int) time.Time { return midnight(y, m, d+7*i, loc) }
	case events.PeriodMonth:
		bound = func(i int) time.Time { return midnight(y, m+time.Month(i), 1, loc) }
	case events.PeriodCustom:
		if b.Length <= 0 {
			return t.UTC(), t.UTC()
		}
		start = b.Start
		for {
			since := t.Sub(start) // saturates ~292 years out: then take another step
			start = start.Add(since / b.Length * b.Length)
			if t.Before(start) {
				start = start.Add(-b.Length)
			}
			if since != math.MaxInt64 && since != math.MinInt64 {
				return start.UTC(), start.Add(b.Length).UTC()
			}
		}
	default:
		return t.UTC(), t.UTC()
	}
	start, end = bound(0), bound(1)
	// Where clocks go back over midnight, local midnight happens twice and
	// t can sit in the hour before the one time.Date picked.
	if t.Before(start) {
		start, end = bound(-1), start
	} else if !t.Before(end) {
		start, end = end, bound(2)
	}
	return start.UTC(), end.UTC()
}

// midnight returns the first instant of local day y-m-d (normalized, so
// d may be out of range). Where DST skips midnight (America/Santiago,
// America/Havana), time.Date answers 23:00 the day before; the day then
// starts when the skipped hour ends.
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if t.Hour() > 12 {
		if _, end := t.ZoneBounds(); !end.IsZero() {
			t = end
		}
	}
	return t
}
