package policy

import (
	"testing"
	"time"

	"github.com/burnrate/burnrate/schemas/events"
)

func TestPeriodAt(t *testing.T) {
	zone := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	utc, berlin, santiago := time.UTC, zone("Europe/Berlin"), zone("America/Santiago")
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	f := func(b Budget, at, wantStart, wantEnd string) {
		t.Helper()
		start, end := b.PeriodAt(ts(at))
		if !start.Equal(ts(wantStart)) || !end.Equal(ts(wantEnd)) || start.Location() != time.UTC {
			t.Errorf("%s %s PeriodAt(%s) = [%s, %s), want [%s, %s)", b.Location, b.Period, at,
				start.Format(time.RFC3339), end.Format(time.RFC3339), wantStart, wantEnd)
		}
	}
	day := Budget{Period: events.PeriodDay, Location: utc}
	f(day, "2026-05-10T00:00:00Z", "2026-05-10T00:00:00Z", "2026-05-11T00:00:00Z")
	f(day, "2026-05-10T23:59:59Z", "2026-05-10T00:00:00Z", "2026-05-11T00:00:00Z")
	day.Location = berlin // 23 h and 25 h days
	f(day, "2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")
	f(day, "2026-10-25T12:00:00Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")
	f(day, "2026-10-25T23:00:00Z", "2026-10-25T23:00:00Z", "2026-10-26T23:00:00Z")
	day.Location = santiago // DST skips midnight: the day starts at 01:00
	f(day, "2026-09-06T12:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z")
	f(day, "2026-09-06T03:30:00Z", "2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z")
	day.Location = nil // UTC
	f(day, "2026-05-10T12:00:00+02:00", "2026-05-10T00:00:00Z", "2026-05-11T00:00:00Z")

	week := Budget{Period: events.PeriodWeek, Location: utc, WeekStart: time.Monday}
	f(week, "2026-03-29T12:00:00Z", "2026-03-23T00:00:00Z", "2026-03-30T00:00:00Z") // a Sunday
	f(week, "2026-03-30T00:00:00Z", "2026-03-30T00:00:00Z", "2026-04-06T00:00:00Z")
	week.WeekStart = time.Sunday
	f(week, "2026-03-29T12:00:00Z", "2026-03-29T00:00:00Z", "2026-04-05T00:00:00Z")
	f(week, "2026-03-28T23:59:59Z", "2026-03-22T00:00:00Z", "2026-03-29T00:00:00Z")
	week.Location = berlin
	f(week, "2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z", "2026-04-04T22:00:00Z")
	week.WeekStart = time.Monday
	f(week, "2026-03-29T12:00:00Z", "2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z")

	month := Budget{Period: events.PeriodMonth, Location: utc}
	f(month, "2026-01-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
	f(month, "2026-02-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
	f(month, "2027-02-28T23:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z")
	f(month, "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z")
	f(month, "2026-12-31T12:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
	month.Location = berlin
	f(month, "2026-10-25T12:00:00Z", "2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z")
	f(month, "2026-10-31T23:30:00Z", "2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z")
	f(month, "2026-03-15T12:00:00Z", "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z")

	custom := Budget{Period: events.PeriodCustom, Start: ts("2026-11-01T00:00:00Z"), Length: 72 * time.Hour}
	f(custom, "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z")
	f(custom, "2026-11-05T00:00:00Z", "2026-11-04T00:00:00Z", "2026-11-07T00:00:00Z")
	f(custom, "2026-10-31T12:00:00Z", "2026-10-29T00:00:00Z", "2026-11-01T00:00:00Z")
	f(custom, "2026-10-29T00:00:00Z", "2026-10-29T00:00:00Z", "2026-11-01T00:00:00Z")
	f(custom, "2026-10-28T23:59:59Z", "2026-10-26T00:00:00Z", "2026-10-29T00:00:00Z")
	custom.Start, custom.Length = ts("0001-01-01T00:00:00Z"), 24*time.Hour // more than a time.Duration away
	f(custom, "2026-05-10T12:00:00Z", "2026-05-10T00:00:00Z", "2026-05-11T00:00:00Z")
	custom.Start = ts("9999-01-01T00:00:00Z")
	f(custom, "2026-05-10T12:00:00Z", "2026-05-10T00:00:00Z", "2026-05-11T00:00:00Z")
}
