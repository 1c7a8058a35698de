package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// yaml.v3's KnownFields errors carry a line but no key path, so the file's
// node tree is walked against File's yaml tags first. The walk accepts only
// what yaml.v3 then decodes, so every problem is reported with its path.

// maxNodes bounds the walk: aliases can make a small file a huge tree.
const maxNodes = 100_000

type checker struct {
	errs    []error
	origins map[string]string
	nodes   int
	skipped bool // stopped at maxProblems with more of the file to see
}

// checkNode reports every unknown key and every value that does not fit its
// field in doc, and records the line of each key path in origins.
func checkNode(doc *yaml.Node, origins map[string]string) []error {
	c := &checker{origins: origins}
	c.check(doc, reflect.TypeFor[File](), "")
	if c.skipped {
		c.errs = append(c.errs, fmt.Errorf("stopped after %d problems; there may be more", len(c.errs)))
	}
	return c.errs
}

// stop says whether to give up: enough problems to fix first, or a tree
// too big to walk.
func (c *checker) stop() bool {
	if len(c.errs) >= maxProblems {
		c.skipped = true
		return true
	}
	return c.nodes > maxNodes
}

// visit counts n against maxNodes and says whether to walk it.
func (c *checker) visit(path string, n *yaml.Node) bool {
	if c.stop() {
		return false
	}
	c.nodes++
	if c.nodes > maxNodes {
		c.fail(path, n, "the file expands to more than %d values (aliases?)", maxNodes)
		return false
	}
	return true
}

func (c *checker) fail(path string, n *yaml.Node, format string, a ...any) {
	if path == "" {
		path = "(top level)"
	}
	c.errs = append(c.errs, fmt.Errorf("%s: %s (line %d)", path, fmt.Sprintf(format, a...), n.Line))
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	if !c.visit(path, n) {
		return
	}
	if path != "" {
		c.origins[path] = fmt.Sprintf("line %d", n.Line)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			c.fail(path, n, "alias to nothing")
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // leaves a struct as it is, zeroes a list or map
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()):
		// Its own rules; ask it.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			c.fail(path, n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
	case t == reflect.TypeFor[time.Duration]():
		var d time.Duration
		if n.Kind != yaml.ScalarNode {
			c.fail(path, n, "want a duration such as 250ms or 10s")
		} else if err := n.Decode(&d); err != nil {
			c.fail(path, n, "%q is not a duration (e.g. 250ms, 10s, 1h)", n.Value)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.fail(path, n, "want a list")
			return
		}
		for i, item := range n.Content {
			c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		c.mapping(n, t, path)
	case t.Kind() == reflect.Interface:
		// Anything decodes into an interface.
	default:
		if n.Kind != yaml.ScalarNode {
			c.fail(path, n, "want a single %s value", t.Kind())
		} else if err := n.Decode(reflect.New(t).Interface()); err != nil {
			c.fail(path, n, "%q is not a valid %s", n.Value, t.Kind())
		}
	}
}

// mapping checks a mapping against struct or map type t, following merge
// keys (<<) as yaml.v3 does.
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.fail(path, n, "want a mapping of keys")
		return
	}
	var fields map[string]reflect.Type
	if t.Kind() == reflect.Struct {
		fields = yamlFields(t)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !c.stop(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			c.merge(v, t, path)
			continue
		}
		child := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			c.fail(child, k, "want a plain key")
			continue
		}
		var ft reflect.Type
		if fields != nil {
			var ok bool
			if ft, ok = fields[k.Value]; !ok {
				// The hint goes after the line so the message starts as
				// yaml.v3's own would: "unknown key (line N)".
				c.errs = append(c.errs, fmt.Errorf("%s: unknown key (line %d)%s", child, k.Line, suggest(k.Value, fields)))
				continue
			}
		} else {
			if err := k.Decode(reflect.New(t.Key()).Interface()); err != nil {
				c.fail(child, k, "%q is not a valid %s key", k.Value, t.Key().Kind())
				continue
			}
			ft = t.Elem()
		}
		if line, dup := seen[k.Value]; dup {
			c.fail(child, k, "set twice, first at line %d", line)
			continue
		}
		seen[k.Value] = k.Line
		c.check(v, ft, child)
	}
}

// merge checks the value of a << key: a mapping or a list of them.
func (c *checker) merge(v *yaml.Node, t reflect.Type, path string) {
	if !c.visit(path, v) {
		return
	}
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		c.mapping(v, t, path)
	case yaml.SequenceNode:
		for _, item := range v.Content {
			if c.stop() {
				return
			}
			if item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.MappingNode {
				c.fail(join(path, "<<"), item, "want a mapping to merge")
				continue
			}
			c.merge(item, t, path)
		}
	default:
		c.fail(join(path, "<<"), v, "want a mapping to merge")
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the yaml keys of struct t to field types, following
// ",inline" as yaml.v3 does.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && sf.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(sf.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = sf.Type
	}
	return out
}

// suggest names the known key closest to a misspelt one.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3 // more than two edits away is not a typo
	for name := range fields {
		if d := editDistance(key, name); d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
