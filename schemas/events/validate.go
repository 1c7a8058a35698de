package events

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError is one problem Validate found. Validate joins them with
// errors.Join; unwrap with errors.As or the Unwrap() []error method.
type FieldError struct {
	Schema  string // payload name, e.g. "usage.v1"
	Field   string // dotted JSON path, e.g. "tokens.output"
	Message string // e.g. "must be >= 0"
}

func (e *FieldError) Error() string {
	return e.Schema + ": " + e.Field + ": " + e.Message
}

// Limits that keep events small and free of smuggled content.
const (
	maxStringLen      = 256 // ids, names, models, subjects
	maxTextLen        = 1024
	maxTags           = 32
	maxFingerprintLen = 128
)

// checker collects the problems of one event.
type checker struct {
	schema string
	errs   []error
}

func (c *checker) addf(field, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Schema: c.schema, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error { return errors.Join(c.errs...) }

func (c *checker) schemaField(got string) {
	if got != c.schema {
		c.addf("schema", "got %q, want %q", got, c.schema)
	}
}

func (c *checker) id(field, v string) {
	if !isUUIDv7(v) {
		c.addf(field, "must be a UUIDv7 in canonical lowercase form, got %q", truncate(v))
	}
}

// text checks an optional string: valid UTF-8 and at most max bytes.
func (c *checker) text(field, v string, max int) {
	if !utf8.ValidString(v) {
		c.addf(field, "must be valid UTF-8")
	}
	if len(v) > max {
		c.addf(field, "must be at most %d bytes, got %d", max, len(v))
	}
}

func (c *checker) optional(field, v string) { c.text(field, v, maxStringLen) }

func (c *checker) required(field, v string) {
	if v == "" {
		c.addf(field, "must not be empty")
		return
	}
	c.text(field, v, maxStringLen)
}

// subject checks a budget subject: comma-separated key=value pairs, e.g.
// "team=payments" or "team=payments,model=gpt-4o".
func (c *checker) subject(field, v string) {
	c.required(field, v)
	if v == "" {
		return
	}
	for part := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(part, "=")
		if !ok || k == "" || val == "" {
			c.addf(field, "must be key=value pairs separated by commas, got %q", truncate(v))
			return
		}
	}
}

func (c *checker) nonNegative(field string, v int64) {
	if v < 0 {
		c.addf(field, "must be >= 0, got %d", v)
	}
}

func (c *checker) positive(field string, v int64) {
	if v <= 0 {
		c.addf(field, "must be > 0, got %d", v)
	}
}

func (c *checker) nonNegativeFloat(field string, v float64) {
	if !(v >= 0) {
		c.addf(field, "must be >= 0, got %g", v)
	}
}

func (c *checker) fraction(field string, v float64) {
	if !(v >= 0 && v <= 1) {
		c.addf(field, "must be a fraction in [0, 1], got %g", v)
	}
}

func (c *checker) time(field string, t time.Time) {
	switch {
	case t.IsZero():
		c.addf(field, "must be set")
	case t.Location() != time.UTC:
		c.addf(field, "must be in UTC, got %s", t.Location())
	case t.Year() < 1970 || t.Year() > 9999: // RFC 3339 and UUIDv7 limits
		c.addf(field, "must be between 1970 and 9999, got %s", t.Format(time.RFC3339Nano))
	}
}

// window checks that end is after start; both are checked as times too.
func (c *checker) window(startField, endField string, start, end time.Time) {
	c.time(startField, start)
	c.time(endField, end)
	if !end.After(start) {
		c.addf(endField, "must be after %s", startField)
	}
}

// enum checks v against the '|'-separated allowed values.
func (c *checker) enum(field, noun, v, allowed string) {
	if !oneOf(v, allowed) {
		c.addf(field, "unknown %s %q (want %s)", noun, truncate(v), allowed)
	}
}

func oneOf(v, allowed string) bool {
	for a := range strings.SplitSeq(allowed, "|") {
		if v == a {
			return true
		}
	}
	return false
}

// truncate keeps error messages short when a field is oversized.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func fmtIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }
