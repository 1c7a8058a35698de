package ingress

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// upstream is a route with its credential resolved.
type upstream struct {
	Route
	priceProvider string
	credential    string
	base          *url.URL
}

type routeTable struct {
	byModel map[string]*upstream
	cheap   []CheapRule
}

// newRouteTable resolves every route's credential from env or file now, so
// a missing secret stops the service at start, not on the first call.
func newRouteTable(routes []Route, cheap []CheapRule, getenv func(string) string) (*routeTable, error) {
	rt := &routeTable{byModel: map[string]*upstream{}, cheap: cheap}
	for i, r := range routes {
		u := &upstream{Route: r, priceProvider: r.Provider}
		if r.PriceAs != "" {
			u.priceProvider = r.PriceAs
		}
		if u.UpstreamModel == "" {
			u.UpstreamModel = r.Model
		}
		switch {
		case r.APIKeyEnv != "":
			u.credential = getenv(r.APIKeyEnv)
			if u.credential == "" {
				return nil, fmt.Errorf("ingress: routes[%d] (%s): environment variable %s is empty", i, r.Model, r.APIKeyEnv)
			}
		case r.APIKeyFile != "":
			b, err := os.ReadFile(r.APIKeyFile)
			if err != nil {
				return nil, fmt.Errorf("ingress: routes[%d] (%s): api_key_file: %w", i, r.Model, err)
			}
			u.credential = strings.TrimSpace(string(b))
		}
		base, err := url.Parse(strings.TrimRight(r.BaseURL, "/"))
		if err != nil {
			return nil, fmt.Errorf("ingress: routes[%d].base_url: %w", i, err)
		}
		u.base = base
		rt.byModel[r.Model] = u
	}
	return rt, nil
}

// endpointURL builds the upstream URL for an endpoint suffix such as
// "/chat/completions".
func (u *upstream) endpointURL(suffix string) string {
	switch u.Provider {
	case "azure":
		return u.base.String() + "/openai/deployments/" + url.PathEscape(u.UpstreamModel) + suffix + "?api-version=" + url.QueryEscape(u.AzureAPIVersion)
	default:
		return u.base.String() + suffix
	}
}
