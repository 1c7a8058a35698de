package ingress

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/burnrate/burnrate/schemas/events"
)

// Attribution headers a key may allow.
const (
	HeaderUser      = "X-Burnrate-User"
	HeaderCustomer  = "X-Burnrate-Customer"
	HeaderFeature   = "X-Burnrate-Feature"
	HeaderAgentRun  = "X-Burnrate-Agent-Run"
	HeaderAgentStep = "X-Burnrate-Agent-Step"
	HeaderTags      = "X-Burnrate-Tags"
)

const maxAttr = 256

// attribution starts from the key and adds what the headers say, when the
// key allows headers at all.
func attribution(k *Key, h http.Header) (events.Attribution, error) {
	a := events.Attribution{Org: k.Org, Team: k.Team, App: k.App, Env: k.Env, VirtualKeyID: k.ID,
		User: k.User, Customer: k.Customer, Feature: k.Feature}
	if !k.AttributionHeaders {
		return a, nil
	}
	for _, f := range []struct {
		header string
		dst    *string
	}{{HeaderUser, &a.User}, {HeaderCustomer, &a.Customer}, {HeaderFeature, &a.Feature}, {HeaderAgentRun, &a.AgentRunID}} {
		if v := h.Get(f.header); v != "" {
			if len(v) > maxAttr {
				return a, fmt.Errorf("%s: longer than %d bytes", f.header, maxAttr)
			}
			*f.dst = v
		}
	}
	if v := h.Get(HeaderAgentStep); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return a, fmt.Errorf("%s: %q is not a non-negative integer", HeaderAgentStep, v)
		}
		if a.AgentRunID == "" {
			return a, fmt.Errorf("%s needs %s", HeaderAgentStep, HeaderAgentRun)
		}
		a.AgentStep = n
	}
	if v := h.Get(HeaderTags); v != "" {
		tags, err := parseTags(v)
		if err != nil {
			return a, fmt.Errorf("%s: %w", HeaderTags, err)
		}
		a.Tags = tags
	}
	return a, nil
}

// parseTags reads "k=v,k2=v2".
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		if len(tags) == 32 {
			return nil, fmt.Errorf("more than 32 tags")
		}
		tags[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return tags, nil
}

// subjectsOf lists every budget subject of a call, as the kill-switch names
// them.
// tagKeys are the tags budgets can be set on (meter.tag_keys): only those
// become "tag.<key>=" subjects, so other tags cost the call nothing.
func subjectsOf(a *events.Attribution, model string, tagKeys []string) []string {
	s := make([]string, 0, 8)
	add := func(k, v string) {
		if v != "" {
			s = append(s, k+"="+v)
		}
	}
	add("key", a.VirtualKeyID)
	add("team", a.Team)
	add("app", a.App)
	add("user", a.User)
	add("customer", a.Customer)
	add("agent_run", a.AgentRunID)
	add("model", model)
	if a.Team != "" && model != "" {
		s = append(s, "team="+a.Team+",model="+model)
	}
	for _, k := range tagKeys {
		if v := a.Tags[k]; v != "" {
			s = append(s, "tag."+k+"="+v)
		}
	}
	return s
}
