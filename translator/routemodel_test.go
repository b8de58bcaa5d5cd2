package translator

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/policy"
)

func canaryService(name string, ready int) *Service {
	s := &Service{Namespace: "default", Name: name, Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: 15001, Protocol: "TCP"}}}
	for i := 1; i <= ready; i++ {
		s.Endpoints = append(s.Endpoints, Endpoint{Address: fmt.Sprintf("10.9.0.%d", i), Ports: map[string]int32{"http": 15001}})
	}
	return s
}

func routingRule(name string, m policy.Match, backends ...policy.RouteBackend) *policy.Policy {
	return &policy.Policy{
		Namespace: "default", Name: name, Source: policy.Source{ConfigMap: "release", Key: "policies.yaml"},
		Service: "entrance", Port: policy.PortRef{Name: "http"}, Match: m, RouteTo: backends,
	}
}

func runtimeNumber(out *Output, key string) (float64, bool) {
	v, ok := out.Runtimes[0].GetLayer().GetFields()[key]
	if !ok {
		return 0, false
	}
	_, isNumber := v.GetKind().(*structpb.Value_NumberValue)
	return v.GetNumberValue(), isNumber
}

// TestRoutingWeights: the weights in force are in RTDS, in parts per
// million: each ready backend its share, an unready one 0, the stable
// version the rest; the route holds only defaults (all on stable).
func TestRoutingWeights(t *testing.T) {
	rule := routingRule("canary", policy.Match{},
		policy.RouteBackend{Name: "canary", Service: "entrance-v2", PartsPerMillion: 50_000},
		policy.RouteBackend{Name: "next", Service: "entrance-v3", PartsPerMillion: 200_000},
		policy.RouteBackend{Name: "gone", Service: "entrance-v4", PartsPerMillion: 100_000})
	w := newWorld([]*Service{entranceService(), canaryService("entrance-v2", 2), canaryService("entrance-v3", 0)}, rule)
	out := translateValid(t, w, entranceGroup)

	want := map[string]float64{
		"shadowplane.default.canary.routeTo.app|8080":                     950_000,
		"shadowplane.default.canary.routeTo.route|default|entrance-v2|80": 50_000,
		"shadowplane.default.canary.routeTo.route|default|entrance-v3|80": 0,
		"shadowplane.default.canary.routeTo.route|default|entrance-v4|":   0,
	}
	for key, ppm := range want {
		if got, ok := runtimeNumber(out, key); !ok || got != ppm {
			t.Errorf("runtime %s = %v (number: %v), want %v", key, got, ok, ppm)
		}
	}
	wc := policyRoutes(out.Routes[0])[0].GetRoute().GetWeightedClusters()
	if wc.GetRuntimeKeyPrefix() != "shadowplane.default.canary.routeTo" {
		t.Errorf("runtime key prefix %q", wc.GetRuntimeKeyPrefix())
	}
	var defaults []string
	for _, c := range wc.GetClusters() {
		defaults = append(defaults, fmt.Sprintf("%s=%d", c.GetName(), c.GetWeight().GetValue()))
	}
	if wantDefaults := []string{"app|8080=1000000", "route|default|entrance-v2|80=0", "route|default|entrance-v3|80=0", "route|default|entrance-v4|=0"}; !reflect.DeepEqual(defaults, wantDefaults) {
		t.Errorf("route defaults %v, want %v", defaults, wantDefaults)
	}
	v2 := clusterByName(out, "route|default|entrance-v2|80")
	if v2 == nil || len(v2.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()) != 2 || v2.GetType().String() != "STATIC" {
		t.Errorf("cluster of entrance-v2: %v", v2)
	}
	for _, want := range []string{"routeTo next: Service default/entrance-v3 has no ready endpoints", "routeTo gone: Service default/entrance-v4 is not found"} {
		if !strings.Contains(strings.Join(out.Warnings, "\n"), want) {
			t.Errorf("warnings %q lack %q", out.Warnings, want)
		}
	}
}

// TestRoutingWeightChangeIsRTDSOnly: changing a weight, or a backend
// losing its last endpoint, changes the runtime version alone.
func TestRoutingWeightChangeIsRTDSOnly(t *testing.T) {
	at := func(ppm uint32, ready int) *Output {
		rule := routingRule("canary", policy.Match{}, policy.RouteBackend{Name: "canary", Service: "entrance-v2", PartsPerMillion: ppm})
		return translateValid(t, newWorld([]*Service{entranceService(), canaryService("entrance-v2", ready)}, rule), entranceGroup)
	}
	base := at(50_000, 1)
	for name, other := range map[string]*Output{"weight 25": at(250_000, 1), "blue-green flip": at(1_000_000, 1)} {
		for url, v := range base.Versions {
			changed := other.Versions[url] != v
			if changed != strings.HasSuffix(url, "Runtime") {
				t.Errorf("%s: version of %s changed: %v", name, url, changed)
			}
		}
	}
}

// TestMostSpecificRuleRoutes: a request satisfying several rules is
// routed by the one with more header, cookie and query conditions, then
// the longer path prefix, then methods, then name.
func TestMostSpecificRuleRoutes(t *testing.T) {
	backend := policy.RouteBackend{Name: "v2", Service: "entrance-v2", PartsPerMillion: 1_000_000}
	marker := policy.Match{Headers: []policy.HeaderMatch{{Name: "x-gray", Exact: "1"}}}
	tests := []struct {
		a, b *policy.Policy
		want string
	}{
		{routingRule("path", policy.Match{PathPrefix: "/api/"}, backend), routingRule("marker", marker, backend), "marker"},
		{routingRule("short", policy.Match{PathPrefix: "/a"}, backend), routingRule("long", policy.Match{PathPrefix: "/a/b"}, backend), "long"},
		{routingRule("any", policy.Match{}, backend), routingRule("get", policy.Match{Methods: []string{"GET"}}, backend), "get"},
		{routingRule("b", marker, backend), routingRule("a", marker, backend), "a"},
		{routingRule("cookie", policy.Match{Cookies: []policy.HeaderMatch{{Name: "g", Present: true}}}, backend), routingRule("z-path", policy.Match{PathPrefix: "/x"}, backend), "cookie"},
	}
	for _, tt := range tests {
		if got := ruleMoreSpecific(tt.a, tt.b); got != (tt.a.Name == tt.want) {
			t.Errorf("ruleMoreSpecific(%s, %s) = %v, want %s to win", tt.a.Name, tt.b.Name, got, tt.want)
		}
		if got := ruleMoreSpecific(tt.b, tt.a); got != (tt.b.Name == tt.want) {
			t.Errorf("ruleMoreSpecific(%s, %s) = %v, want %s to win", tt.b.Name, tt.a.Name, got, tt.want)
		}
	}
}

// TestRouteCap: n policies whose matches all overlap need 2^n - 1 routes;
// 7 fit under the cap of 128, the 8th (by name) is left out and reported,
// by the translator and by CheckRouteCap alike.
func TestRouteCap(t *testing.T) {
	var policies []*policy.Policy
	for i := 0; i < 8; i++ {
		p := toStaging()
		p.Name = fmt.Sprintf("p%d", i)
		p.Match = policy.Match{Headers: []policy.HeaderMatch{{Name: fmt.Sprintf("x-%d", i), Present: true}}}
		p.Mirrors[0].Name = "m"
		policies = append(policies, p)
	}
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, policies...), entranceGroup)
	if got := len(policyRoutes(out.Routes[0])); got != 127+1 {
		t.Errorf("%d routes, want 127 intersections and the catch-all", got)
	}
	want := "policy default/p7 is not in force on listen port 15001: with it, the policies of this port would need 255 routes"
	if !strings.Contains(strings.Join(out.Warnings, "\n"), want) {
		t.Errorf("warnings %q lack %q", out.Warnings, want)
	}
	if strings.Contains(fmt.Sprint(routeMirrors(out.Routes[0])), "p7") {
		t.Error("p7's mirrors are on a route although it is over the cap")
	}
	errs := CheckRouteCap(policies)
	if len(errs) != 1 || errs[0].Policy != "p7" || !strings.Contains(errs[0].Error(), "would need 255 routes") {
		t.Errorf("CheckRouteCap = %v, want one error for p7", errs)
	}
	if errs := CheckRouteCap(policies[:7]); len(errs) != 0 {
		t.Errorf("7 policies: %v", errs)
	}
}

// TestIntersectMatches: what two matches have in common, and when nothing.
func TestIntersectMatches(t *testing.T) {
	h := func(name, exact string) policy.HeaderMatch { return policy.HeaderMatch{Name: name, Exact: exact} }
	tests := []struct {
		name string
		a, b policy.Match
		want policy.Match
		ok   bool
	}{
		{"nested paths", policy.Match{PathPrefix: "/a"}, policy.Match{PathPrefix: "/a/b"}, policy.Match{PathPrefix: "/a/b"}, true},
		{"diverging paths", policy.Match{PathPrefix: "/a"}, policy.Match{PathPrefix: "/b"}, policy.Match{}, false},
		{"methods in common", policy.Match{Methods: []string{"GET", "POST"}}, policy.Match{Methods: []string{"POST", "PUT"}}, policy.Match{Methods: []string{"POST"}}, true},
		{"no method in common", policy.Match{Methods: []string{"GET"}}, policy.Match{Methods: []string{"POST"}}, policy.Match{}, false},
		{"any method", policy.Match{}, policy.Match{Methods: []string{"GET"}}, policy.Match{Methods: []string{"GET"}}, true},
		{"headers join", policy.Match{Headers: []policy.HeaderMatch{h("a", "1")}}, policy.Match{Headers: []policy.HeaderMatch{h("b", "2")}},
			policy.Match{Headers: []policy.HeaderMatch{h("a", "1"), h("b", "2")}}, true},
		{"two exact values of one header", policy.Match{Headers: []policy.HeaderMatch{h("a", "1")}}, policy.Match{Headers: []policy.HeaderMatch{h("a", "2")}}, policy.Match{}, false},
		{"two exact values of one query parameter", policy.Match{Query: []policy.HeaderMatch{h("q", "1")}}, policy.Match{Query: []policy.HeaderMatch{h("q", "2")}}, policy.Match{}, false},
		{"two exact values of one cookie may both be there", policy.Match{Cookies: []policy.HeaderMatch{h("c", "1")}}, policy.Match{Cookies: []policy.HeaderMatch{h("c", "2")}},
			policy.Match{Cookies: []policy.HeaderMatch{h("c", "1"), h("c", "2")}}, true},
	}
	for _, tt := range tests {
		got, ok := intersectMatches(canonicalMatch(tt.a), canonicalMatch(tt.b))
		if ok != tt.ok || (ok && matchKey(got) != matchKey(canonicalMatch(tt.want))) {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
