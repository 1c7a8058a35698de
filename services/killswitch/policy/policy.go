package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zone names in the file must resolve in a bare container too

	"gopkg.in/yaml.v3"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
)

// Action is what a budget does when its spend reaches 100 % of the limit.
type Action string

const (
	ActionBlock     Action = "block"     // refuse calls until the period ends
	ActionDowngrade Action = "downgrade" // route calls to DowngradeTo
	ActionThrottle  Action = "throttle"  // at most ThrottlePerMin calls a minute
	ActionAlert     Action = "alert"     // only raise an alert
)

// Policies is one parsed policy file.
type Policies struct {
	Budgets []Budget
	Loops   LoopRules
	Version string // first 12 hex chars of the sha256 of the file

	exact    map[string][]int // subject → indexes of its exact budgets (built by Parse)
	wildcard []int            // indexes of wildcard budgets
	indexed  bool
}

// Budget is one budget with its defaults applied.
type Budget struct {
	Name           string
	Subject        string   // as written: "team=payments", "team=payments,model=gpt-4o", "team=*"
	Keys           []string // subject keys in order: ["team", "model"]
	Wildcard       bool     // "key=*": one budget per value of key
	Period         events.Period
	Location       *time.Location
	WeekStart      time.Weekday
	Start          time.Time     // custom periods: the anchor, in UTC
	Length         time.Duration // custom periods
	LimitNanoUSD   int64         // 0 = no money limit
	LimitTokens    int64         // 0 = no token limit
	Thresholds     []int         // soft alerts, percent of the limit, ascending
	Action         Action
	DowngradeTo    string // action downgrade
	ThrottlePerMin int    // action throttle
	// Leased when remaining < burn rate × LeaseHorizon, or remaining <
	// LeaseBelowPct % of the limit (100 = always, 0 = by horizon only).
	LeaseHorizon  time.Duration
	LeaseBelowPct int
}

// LoopRules break runaway agent runs; a zero rule is off.
type LoopRules struct {
	MaxCallsPerMinute int64
	MaxRepeats        int64 // calls with the same prompt fingerprint
	MaxSteps          int
	MaxRunCostNanoUSD int64
	MaxRunDuration    time.Duration
	BlockFor          time.Duration // how long a broken run stays blocked
}

// Enabled reports whether any loop rule is on.
func (l LoopRules) Enabled() bool {
	return l.MaxCallsPerMinute > 0 || l.MaxRepeats > 0 || l.MaxSteps > 0 ||
		l.MaxRunCostNanoUSD > 0 || l.MaxRunDuration > 0
}

// Built-in defaults, for keys set neither on a budget nor under defaults.
const (
	defaultLeaseHorizon  = 10 * time.Second
	defaultLeaseBelowPct = 10
	defaultBlockFor      = 15 * time.Minute
)

func defaultThresholds() []int { return []int{50, 80, 95} }

// Parse reads a policy file. checkKeys, when not nil, is asked about every
// budget's key list (e.g. ["team","model"]) and returns an error when the
// meter does not publish spend for it; that error is reported under the
// budget's path. Every problem is reported, joined, each with its path.
func Parse(b []byte, checkKeys func(keys []string) error) (Policies, error) {
	pol, errs := parse(b, checkKeys)
	if len(errs) > 0 {
		return Policies{}, errors.Join(errs...)
	}
	return pol, nil
}

// Load reads and parses the policy file at path; every error starts with
// the path.
func Load(path string, checkKeys func(keys []string) error) (Policies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Policies{}, readError(path, err)
	}
	return parseFile(path, b, checkKeys)
}

func parseFile(path string, b []byte, checkKeys func([]string) error) (Policies, error) {
	pol, errs := parse(b, checkKeys)
	if len(errs) > 0 {
		for i, err := range errs {
			errs[i] = fmt.Errorf("%s: %w", path, err)
		}
		return Policies{}, errors.Join(errs...)
	}
	return pol, nil
}

// readError names the path once ("p.yaml: no such file or directory"),
// not twice as *fs.PathError would after our prefix.
func readError(path string, err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}

func parse(b []byte, checkKeys func([]string) error) (Policies, []error) {
	sum := sha256.Sum256(b)
	pol := Policies{Version: hex.EncodeToString(sum[:])[:12], Loops: LoopRules{BlockFor: defaultBlockFor}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return pol, nil // empty file: no policies
	} else if err != nil {
		return pol, []error{err}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("line %d: only one YAML document is allowed", more.Line)
		}
		return pol, []error{err}
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return pol, nil
	}
	p := &parser{checkKeys: checkKeys}
	if root.Kind != yaml.MappingNode {
		p.fail("", root, "want a mapping with defaults, budgets and loops")
		return pol, p.errs
	}
	var defaultsNode, budgetsNode *yaml.Node
	for _, f := range p.fields("", root, "defaults", "budgets", "loops") {
		switch f.key {
		case "defaults":
			defaultsNode = f.v
		case "budgets":
			budgetsNode = f.v
		case "loops":
			pol.Loops = p.loops(f.path, f.v)
		}
	}
	pol.Budgets = p.budgets(budgetsNode, p.defaults(defaultsNode))
	pol.index()
	return pol, p.errs
}

// index lets Find look a subject up instead of scanning every budget (the
// killswitch calls it for every spend record).
func (p *Policies) index() {
	p.exact, p.wildcard, p.indexed = map[string][]int{}, nil, true
	for i := range p.Budgets {
		if b := &p.Budgets[i]; b.Wildcard {
			p.wildcard = append(p.wildcard, i)
		} else {
			p.exact[b.Subject] = append(p.exact[b.Subject], i)
		}
	}
}

// parser collects every problem of one file.
type parser struct {
	checkKeys func([]string) error
	errs      []error
}

// fail reports a problem at path ("budgets[2].limit_usd") and n's line.
func (p *parser) fail(path string, n *yaml.Node, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if path != "" {
		msg = path + ": " + msg
	}
	if n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	p.errs = append(p.errs, errors.New(msg))
}

// field is one key of a mapping, its value with aliases followed.
type field struct {
	key, path string
	k, v      *yaml.Node
}

// fields returns the keys of mapping n that are set (not null), reporting
// unknown and repeated keys. yaml.v3's own KnownFields errors carry no
// path, hence the walk.
func (p *parser) fields(path string, n *yaml.Node, known ...string) []field {
	var out []field
	line := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		f := field{key: k.Value, path: join(path, k.Value), k: k, v: v}
		switch {
		case k.Kind != yaml.ScalarNode:
			p.fail(path, k, "keys must be plain names")
		case k.ShortTag() == "!!merge":
			p.fail(f.path, k, "merge keys are not supported (use defaults)")
		case !slices.Contains(known, f.key):
			p.fail(f.path, k, "unknown key")
		case line[f.key] > 0:
			p.fail(f.path, k, "repeated key, first at line %d", line[f.key])
		default:
			line[f.key] = k.Line
			if !isNull(v) {
				out = append(out, f)
			}
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// mapping reports n when it is not a mapping.
func (p *parser) mapping(path string, n *yaml.Node) bool {
	if n.Kind != yaml.MappingNode {
		p.fail(path, n, "want a mapping of keys to values")
		return false
	}
	return true
}

// defaults holds what budgets inherit.
type defaults struct {
	loc           *time.Location
	thresholds    []int
	leaseHorizon  time.Duration
	leaseBelowPct int
}

func (p *parser) defaults(n *yaml.Node) defaults {
	d := defaults{loc: time.UTC, thresholds: defaultThresholds(), leaseHorizon: defaultLeaseHorizon, leaseBelowPct: defaultLeaseBelowPct}
	if n == nil || !p.mapping("defaults", n) {
		return d
	}
	// A bad default is reported here once, not again on every budget.
	for _, f := range p.fields("defaults", n, "timezone", "thresholds", "lease_horizon", "lease_below_pct") {
		switch f.key {
		case "timezone":
			if loc, ok := p.location(f.path, f.v); ok {
				d.loc = loc
			}
		case "thresholds":
			if th, ok := p.thresholds(f.path, f.v); ok {
				d.thresholds = th
			}
		case "lease_horizon":
			if h, ok := p.duration(f.path, f.v, false); ok {
				d.leaseHorizon = h
			}
		case "lease_below_pct":
			if pct, ok := p.integer(f.path, f.v, 0, 100); ok {
				d.leaseBelowPct = int(pct)
			}
		}
	}
	return d
}

func (p *parser) budgets(n *yaml.Node, d defaults) []Budget {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail("budgets", n, "want a list of budgets")
		return nil
	}
	var out []Budget
	names := map[string]int{}
	for i, item := range n.Content {
		path := fmt.Sprintf("budgets[%d]", i)
		item = deref(item)
		b := p.budget(path, item, d)
		if j, used := names[b.Name]; used {
			p.fail(path+".name", item, "%q already used by budgets[%d]", b.Name, j)
		} else if b.Name != "" {
			names[b.Name] = i
		}
		out = append(out, b)
	}
	return out
}

func (p *parser) budget(path string, n *yaml.Node, d defaults) Budget {
	b := Budget{
		Location: d.loc, WeekStart: time.Monday, Thresholds: slices.Clone(d.thresholds), Action: ActionBlock,
		LeaseHorizon: d.leaseHorizon, LeaseBelowPct: d.leaseBelowPct,
	}
	if !p.mapping(path, n) {
		return b
	}
	set := map[string]*yaml.Node{} // keys given, valid or not
	bad := map[string]bool{}       // keys given and reported
	for _, f := range p.fields(path, n, "name", "subject", "period", "timezone", "week_start", "start", "length",
		"limit_usd", "limit_tokens", "thresholds", "action", "downgrade_to", "throttle_per_min",
		"lease_horizon", "lease_below_pct") {
		var ok bool
		switch f.key {
		case "name":
			b.Name, ok = p.text(f.path, f.v)
		case "subject":
			ok = p.subject(f.path, f.v, &b)
		case "period":
			var s string
			if s, ok = p.text(f.path, f.v); ok {
				if b.Period = events.Period(s); !b.Period.Valid() {
					p.fail(f.path, f.v, "%q: want day, week, month or custom", s)
					ok = false
				}
			}
		case "timezone":
			var loc *time.Location
			if loc, ok = p.location(f.path, f.v); ok {
				b.Location = loc
			}
		case "week_start":
			b.WeekStart, ok = p.weekday(f.path, f.v)
		case "start":
			b.Start, ok = p.time(f.path, f.v)
		case "length":
			b.Length, ok = p.duration(f.path, f.v, true)
		case "limit_usd":
			b.LimitNanoUSD, ok = p.usd(f.path, f.v)
		case "limit_tokens":
			b.LimitTokens, ok = p.integer(f.path, f.v, 0, math.MaxInt64)
		case "thresholds":
			var th []int
			if th, ok = p.thresholds(f.path, f.v); ok {
				b.Thresholds = th
			}
		case "action":
			var s string
			if s, ok = p.text(f.path, f.v); ok {
				b.Action = Action(s)
				if !slices.Contains([]Action{ActionBlock, ActionDowngrade, ActionThrottle, ActionAlert}, b.Action) {
					p.fail(f.path, f.v, "%q: want block, downgrade, throttle or alert", s)
					ok = false
				}
			}
		case "downgrade_to":
			b.DowngradeTo, ok = p.text(f.path, f.v)
		case "throttle_per_min":
			var v int64
			v, ok = p.integer(f.path, f.v, 1, math.MaxInt32)
			b.ThrottlePerMin = int(v)
		case "lease_horizon":
			var h time.Duration
			if h, ok = p.duration(f.path, f.v, false); ok {
				b.LeaseHorizon = h
			}
		case "lease_below_pct":
			var v int64
			if v, ok = p.integer(f.path, f.v, 0, 100); ok {
				b.LeaseBelowPct = int(v)
			}
		}
		set[f.key], bad[f.key] = f.v, !ok
	}

	// Checks across keys, skipped where a key they rest on was reported.
	only := func(key, when string) {
		if v := set[key]; v != nil {
			p.fail(path+"."+key, v, "only for %s", when)
		}
	}
	need := func(key, when string, at *yaml.Node) {
		if set[key] == nil {
			p.fail(path+"."+key, at, "required%s", when)
		}
	}
	need("subject", "", n)
	need("period", "", n)
	if set["period"] != nil && !bad["period"] {
		if b.Period != events.PeriodWeek {
			only("week_start", "period week")
		}
		if b.Period == events.PeriodCustom {
			need("start", " for period custom", set["period"])
			need("length", " for period custom", set["period"])
		} else {
			only("start", "period custom")
			only("length", "period custom")
		}
	}
	if !bad["action"] {
		if b.Action == ActionDowngrade {
			need("downgrade_to", " for action downgrade", set["action"])
		} else {
			only("downgrade_to", "action downgrade")
		}
		if b.Action == ActionThrottle {
			need("throttle_per_min", " for action throttle", set["action"])
		} else {
			only("throttle_per_min", "action throttle")
		}
	}
	if !bad["limit_usd"] && !bad["limit_tokens"] && b.LimitNanoUSD == 0 && b.LimitTokens == 0 {
		p.fail(path, n, "one of limit_usd, limit_tokens must be > 0")
	}
	if set["name"] == nil && b.Subject != "" && b.Period != "" {
		b.Name = b.Subject + "/" + string(b.Period)
	}
	return b
}

func (p *parser) loops(path string, n *yaml.Node) LoopRules {
	l := LoopRules{BlockFor: defaultBlockFor}
	if !p.mapping(path, n) {
		return l
	}
	for _, f := range p.fields(path, n, "max_calls_per_minute", "max_repeats", "max_steps",
		"max_run_cost_usd", "max_run_duration", "block_for") {
		switch f.key {
		case "max_calls_per_minute":
			l.MaxCallsPerMinute, _ = p.integer(f.path, f.v, 0, math.MaxInt64)
		case "max_repeats":
			l.MaxRepeats, _ = p.integer(f.path, f.v, 0, math.MaxInt64)
		case "max_steps":
			v, _ := p.integer(f.path, f.v, 0, math.MaxInt32)
			l.MaxSteps = int(v)
		case "max_run_cost_usd":
			l.MaxRunCostNanoUSD, _ = p.usd(f.path, f.v)
		case "max_run_duration":
			l.MaxRunDuration, _ = p.duration(f.path, f.v, false)
		case "block_for":
			l.BlockFor, _ = p.duration(f.path, f.v, true)
		}
	}
	return l
}

// subject checks a budget subject ("team=payments", "team=payments,model=gpt-4o"
// or "team=*") and sets b's Subject, Keys and Wildcard.
func (p *parser) subject(path string, n *yaml.Node, b *Budget) bool {
	s, ok := p.text(path, n)
	if !ok {
		return false
	}
	parts := strings.Split(s, ",")
	var keys []string
	for _, part := range parts {
		k, v, found := strings.Cut(part, "=")
		var problem string
		switch {
		case !found:
			problem = fmt.Sprintf("missing '=' in %q", part)
		case k == "" || strings.TrimSpace(k) != k:
			problem = fmt.Sprintf("bad key %q", k)
		case v == "":
			problem = fmt.Sprintf("empty value for %s", k)
		case strings.Contains(v, "="):
			problem = fmt.Sprintf("'=' in the value of %s", k)
		case slices.Contains(keys, k):
			problem = fmt.Sprintf("key %s given twice", k)
		case v == "*" && len(parts) > 1:
			problem = "\"*\" only for a single key, not in a combination"
		}
		if problem != "" {
			p.fail(path, n, "%q: %s", s, problem)
			return false
		}
		keys = append(keys, k)
	}
	b.Subject, b.Keys, b.Wildcard = s, keys, len(parts) == 1 && strings.HasSuffix(s, "=*")
	if p.checkKeys != nil {
		if err := p.checkKeys(keys); err != nil {
			p.fail(path, n, "%v", err)
			return false
		}
	}
	return true
}

// scalar reports n when it is a list or mapping.
func (p *parser) scalar(path string, n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		p.fail(path, n, "want a single value")
		return false
	}
	return true
}

func (p *parser) text(path string, n *yaml.Node) (string, bool) {
	if !p.scalar(path, n) {
		return "", false
	}
	if n.Value == "" {
		p.fail(path, n, "must not be empty")
		return "", false
	}
	return n.Value, true
}

// usd reads a decimal amount from the node's text, exactly: a YAML number
// (limit_usd: 0.1) is never decoded as a float.
func (p *parser) usd(path string, n *yaml.Node) (int64, bool) {
	s := n.Value
	switch n.ShortTag() {
	case "!!str":
	case "!!int", "!!float":
		s = strings.ReplaceAll(s, "_", "") // YAML allows 1_000
	default:
		p.fail(path, n, "want a decimal number of USD")
		return 0, false
	}
	v, err := prices.ParseUSD(s)
	if err != nil {
		p.fail(path, n, "%v", err)
		return 0, false
	}
	return v, true
}

func (p *parser) integer(path string, n *yaml.Node, lo, hi int64) (int64, bool) {
	if !p.scalar(path, n) {
		return 0, false
	}
	var v int64
	var err error
	switch n.ShortTag() {
	case "!!int":
		err = n.Decode(&v)
	case "!!str":
		v, err = strconv.ParseInt(n.Value, 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil {
		p.fail(path, n, "%q: want a whole number", n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		msg := fmt.Sprintf("must be %d..%d", lo, hi)
		switch {
		case hi < math.MaxInt32:
		case v > hi:
			msg = fmt.Sprintf("must be at most %d", hi)
		case lo == 1:
			msg = "must be > 0"
		default:
			msg = fmt.Sprintf("must be >= %d", lo)
		}
		p.fail(path, n, "%s", msg)
		return 0, false
	}
	return v, true
}

func (p *parser) duration(path string, n *yaml.Node, positive bool) (time.Duration, bool) {
	if !p.scalar(path, n) {
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		p.fail(path, n, "%q: want a duration like 10s or 15m", n.Value)
	case positive && d <= 0:
		p.fail(path, n, "must be > 0")
	case d < 0:
		p.fail(path, n, "must be >= 0")
	default:
		return d, true
	}
	return 0, false
}

func (p *parser) thresholds(path string, n *yaml.Node) ([]int, bool) {
	if n.Kind != yaml.SequenceNode {
		p.fail(path, n, "want a list of percentages, e.g. [50, 80, 95]")
		return nil, false
	}
	th, ok := []int{}, true // an empty list turns the defaults off
	for i, item := range n.Content {
		item = deref(item)
		ipath := fmt.Sprintf("%s[%d]", path, i)
		v, good := p.integer(ipath, item, 1, 99)
		switch {
		case !good:
			ok = false
		case len(th) > 0 && int(v) <= th[len(th)-1]:
			p.fail(ipath, item, "must be above %d (ascending)", th[len(th)-1])
			ok = false
		default:
			th = append(th, int(v))
		}
	}
	return th, ok
}

func (p *parser) location(path string, n *yaml.Node) (*time.Location, bool) {
	name, ok := p.text(path, n)
	if !ok {
		return nil, false
	}
	if name == "Local" { // the server's zone: not something a policy can mean
		p.fail(path, n, "%q: want an IANA zone name like Europe/Berlin", name)
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		p.fail(path, n, "unknown time zone %q", name)
		return nil, false
	}
	return loc, true
}

func (p *parser) weekday(path string, n *yaml.Node) (time.Weekday, bool) {
	if s, ok := p.text(path, n); ok {
		for d := time.Sunday; d <= time.Saturday; d++ {
			if strings.EqualFold(s, d.String()) {
				return d, true
			}
		}
		p.fail(path, n, "%q: want a day of the week, e.g. monday", s)
	}
	return time.Monday, false
}

func (p *parser) time(path string, n *yaml.Node) (time.Time, bool) {
	if !p.scalar(path, n) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		p.fail(path, n, "%q: want an RFC 3339 time like 2026-11-01T00:00:00Z", n.Value)
		return time.Time{}, false
	}
	return t.UTC(), true
}

// Matches reports whether a spend subject (e.g. "team=payments") belongs
// to b: the same subject, or for a wildcard "team=*" any "team=<value>"
// with a non-empty value and no other key.
func (b *Budget) Matches(subject string) bool {
	if !b.Wildcard {
		return subject == b.Subject
	}
	v, ok := strings.CutPrefix(subject, strings.TrimSuffix(b.Subject, "*"))
	return ok && v != "" && !strings.Contains(v, ",")
}

// Find returns the budgets that subject counts toward: exact subjects
// first, then wildcards, each in file order.
func (p *Policies) Find(subject string) []*Budget {
	var out []*Budget
	if p.indexed {
		for _, i := range p.exact[subject] {
			out = append(out, &p.Budgets[i])
		}
		for _, i := range p.wildcard {
			if b := &p.Budgets[i]; b.Matches(subject) {
				out = append(out, b)
			}
		}
		return out
	}
	for i := range p.Budgets {
		if b := &p.Budgets[i]; !b.Wildcard && b.Subject == subject {
			out = append(out, b)
		}
	}
	for i := range p.Budgets {
		if b := &p.Budgets[i]; b.Wildcard && b.Matches(subject) {
			out = append(out, b)
		}
	}
	return out
}
