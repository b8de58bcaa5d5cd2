package translator_test

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/translator"
)

// requestTableFile, beside a golden case's in.yaml, lists requests and the
// policies that must copy and route each of them.
const requestTableFile = "requests.yaml"

type tableRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"` // with the query, if any
	Headers map[string]string `json:"headers"`
}

type tableRow struct {
	Request  tableRequest `json:"request"`
	CopiedBy []string     `json:"copiedBy"`
	RoutedBy string       `json:"routedBy"`
}

// TestGoldenRequestTable runs each case's request table through the
// translated route table with Envoy's first-match rules: every request is
// copied by exactly the policies listed and routed by the rule listed.
// The same tables run against the real Envoy in integration/routing_test.go.
func TestGoldenRequestTable(t *testing.T) {
	for _, dir := range goldenCaseDirs(t) {
		data, err := os.ReadFile(filepath.Join(dir, requestTableFile))
		if os.IsNotExist(err) {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if err != nil {
				t.Fatal(err)
			}
			var rows []tableRow
			if err := yaml.UnmarshalStrict(data, &rows); err != nil {
				t.Fatal(err)
			}
			c := loadGoldenCase(t, dir)
			out := translator.Translate(c.world, c.group)
			routes := out.Routes[0].GetVirtualHosts()[0].GetRoutes()
			for _, row := range rows {
				r := firstMatchingRoute(t, routes, row.Request)
				if r == nil {
					t.Errorf("%+v: no route matches", row.Request)
					continue
				}
				copied, routed := routeEffect(r)
				want := slices.Clone(row.CopiedBy)
				slices.Sort(want)
				if !slices.Equal(copied, want) || routed != row.RoutedBy {
					t.Errorf("%s %s %v: route %s copies by %v and routes by %q, want copies by %v and routing by %q",
						row.Request.Method, row.Request.Path, row.Request.Headers, r.GetName(), copied, routed, want, row.RoutedBy)
				}
			}
		})
	}
}

// routeEffect reads, from a route, the policies whose mirrors copy (by
// their runtime keys, "shadowplane.<ns>.<policy>.<mirror>") and the rule
// that routes (by its weights' runtime key prefix).
func routeEffect(r *routev3.Route) (copied []string, routedBy string) {
	for _, m := range r.GetRoute().GetRequestMirrorPolicies() {
		parts := strings.Split(m.GetRuntimeFraction().GetRuntimeKey(), ".")
		if !slices.Contains(copied, parts[2]) {
			copied = append(copied, parts[2])
		}
	}
	slices.Sort(copied)
	if prefix := r.GetRoute().GetWeightedClusters().GetRuntimeKeyPrefix(); prefix != "" {
		routedBy = strings.Split(prefix, ".")[2]
	}
	return copied, routedBy
}

// firstMatchingRoute applies Envoy's route matching, for the features the
// translator uses: path prefix, header matchers (exact, prefix, full-match
// regex, present) and query parameter matchers.
func firstMatchingRoute(t *testing.T, routes []*routev3.Route, req tableRequest) *routev3.Route {
	t.Helper()
	u, err := url.Parse(req.Path)
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{":method": req.Method}
	for k, v := range req.Headers {
		headers[strings.ToLower(k)] = v
	}
	for _, r := range routes {
		m := r.GetMatch()
		if !strings.HasPrefix(u.Path, m.GetPrefix()) {
			continue
		}
		ok := true
		for _, h := range m.GetHeaders() {
			v, present := headers[h.GetName()]
			if h.GetPresentMatch() {
				ok = ok && present
				continue
			}
			ok = ok && present && stringMatches(t, h.GetStringMatch(), v)
		}
		for _, q := range m.GetQueryParameters() {
			values, present := u.Query()[q.GetName()]
			if q.GetPresentMatch() {
				ok = ok && present
				continue
			}
			ok = ok && present && stringMatches(t, q.GetStringMatch(), values[0])
		}
		if ok {
			return r
		}
	}
	return nil
}

func stringMatches(t *testing.T, sm *matcherv3.StringMatcher, v string) bool {
	switch {
	case sm.GetSafeRegex() != nil:
		return regexp.MustCompile("^(?:" + sm.GetSafeRegex().GetRegex() + ")$").MatchString(v)
	case sm.GetPrefix() != "":
		return strings.HasPrefix(v, sm.GetPrefix())
	case sm.GetExact() != "" || sm.MatchPattern != nil:
		return v == sm.GetExact()
	}
	t.Fatalf("unsupported string matcher %v", sm)
	return false
}
