package policy

import (
	"reflect"
	"regexp"
	"testing"
)

// TestParseRouting: routing rules and the cookie and query conditions parse
// into the typed policy, with defaults filled in.
func TestParseRouting(t *testing.T) {
	tests := []struct {
		name string
		body string
		want func(p *Policy) bool
	}{
		{"marker route, weight defaults to 100", entranceHead + "match: {headers: [{name: X-Gray, exact: \"1\"}]}\nrouteTo: [{service: entrance-edge}]\n",
			func(p *Policy) bool {
				return reflect.DeepEqual(p.RouteTo, []RouteBackend{{Name: "entrance-edge", Service: "entrance-edge", PartsPerMillion: 1_000_000}}) &&
					len(p.Mirrors) == 0 && p.Match.Headers[0].Name == "x-gray"
			}},
		{"canary split with names and decimals", entranceHead + "port: http\nrouteTo:\n- {service: entrance-v2, port: http, name: canary, weight: 5.25}\n- {service: entrance-v3, weight: 0}\n",
			func(p *Policy) bool {
				return reflect.DeepEqual(p.RouteTo, []RouteBackend{
					{Name: "canary", Service: "entrance-v2", Port: PortRef{Name: "http"}, PartsPerMillion: 52_500},
					{Name: "entrance-v3", Service: "entrance-v3"},
				})
			}},
		{"copy and route in one policy", entranceHead + shadowMirrorYAML + "routeTo: [{service: entrance-v2, weight: 100}]\n",
			func(p *Policy) bool { return len(p.Mirrors) == 1 && len(p.RouteTo) == 1 }},
		{"cookies and query keep their case", entranceHead + shadowMirrorYAML + "match:\n  cookies: [{name: Gray, exact: on}]\n  query: [{name: Ticket, present: true}, {name: v, regex: \"2|3\"}]\n",
			func(p *Policy) bool {
				return reflect.DeepEqual(p.Match.Cookies, []HeaderMatch{{Name: "Gray", Exact: "on"}}) &&
					reflect.DeepEqual(p.Match.Query, []HeaderMatch{{Name: "Ticket", Present: true}, {Name: "v", Regex: "2|3"}})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(errs) != 0 || len(policies) != 1 {
				t.Fatalf("want one valid policy, got %d and errors:\n%s", len(policies), renderErrors(errs))
			}
			if !tt.want(policies[0]) {
				t.Errorf("unexpected policy: %+v", *policies[0])
			}
		})
	}
}

// TestParseRoutingInvalid: every routing rule is checked as strictly as
// mirrors, with the field and line in the message.
func TestParseRoutingInvalid(t *testing.T) {
	tests := []struct{ name, body, field, msg string }{
		{"neither mirrors nor routeTo", entranceHead, "mirrors", "is required unless the policy routes"},
		{"empty routeTo", entranceHead + "routeTo: []\n", "routeTo", "must list at least one backend"},
		{"routeTo not a list", entranceHead + "routeTo: entrance-v2\n", "routeTo", "must be a list"},
		{"backend without service", entranceHead + "routeTo: [{weight: 5}]\n", "routeTo[0].service", "is required"},
		{"backend unknown field", entranceHead + "routeTo: [{service: v2, percent: 5}]\n", "routeTo[0].percent", `unknown field "percent"; valid fields are: service, port, name, weight`},
		{"weight missing among several", entranceHead + "routeTo: [{service: v2, weight: 5}, {service: v3}]\n", "routeTo[1].weight", "is required when routeTo lists several backends"},
		{"weight above 100", entranceHead + "routeTo: [{service: v2, weight: 101}]\n", "routeTo[0].weight", "must be a number from 0 to 100"},
		{"weight with 5 decimals", entranceHead + "routeTo: [{service: v2, weight: 0.00001}]\n", "routeTo[0].weight", "0.0001 is the smallest step"},
		{"weight quoted", entranceHead + "routeTo: [{service: v2, weight: \"5\"}]\n", "routeTo[0].weight", "write 5 without quotes"},
		{"weights above 100 in sum", entranceHead + "routeTo: [{service: v2, weight: 60}, {service: v3, weight: 40.5}]\n", "routeTo", "the weights add up to 100.5 %"},
		{"same name twice", entranceHead + "routeTo: [{service: v2, name: c, weight: 1}, {service: v3, name: c, weight: 1}]\n", "routeTo[1].name", `backend name "c" is already used by routeTo[0]`},
		{"same service twice", entranceHead + "routeTo: [{service: v2, name: a, weight: 1}, {service: v2, name: b, weight: 1}]\n", "routeTo[1]", "routes to the same Service and port as routeTo[0]"},
		{"own service", entranceHead + "routeTo: [{service: entrance}]\n", "routeTo[0]", "routes to the policy's own Service"},
		{"backend name with dot", entranceHead + "routeTo: [{service: v2, name: a.b}]\n", "routeTo[0].name", "must be 1 to 63 characters"},
		{"cookie name with space", entranceHead + shadowMirrorYAML + "match: {cookies: [{name: a b, exact: x}]}\n", "match.cookies[0].name", "must be a cookie name"},
		{"cookie value with semicolon", entranceHead + shadowMirrorYAML + "match: {cookies: [{name: a, exact: \"x;y\"}]}\n", "match.cookies[0].exact", "a cookie value cannot contain"},
		{"cookie without condition", entranceHead + shadowMirrorYAML + "match: {cookies: [{name: a}]}\n", "match.cookies[0]", "needs a condition"},
		{"cookie regex too large", entranceHead + shadowMirrorYAML + "match: {cookies: [{name: a, regex: \"[a-z]{85}\"}]}\n", "match.cookies[0].regex", "the regex that finds this cookie in the Cookie header is too complex for Envoy"},
		{"query name with equals", entranceHead + shadowMirrorYAML + "match: {query: [{name: a=b, present: true}]}\n", "match.query[0].name", "must be a query parameter name"},
		{"query present false", entranceHead + shadowMirrorYAML + "match: {query: [{name: a, present: false}]}\n", "match.query[0].present", "regardless of this query parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(policies) != 0 {
				t.Errorf("policy parsed as valid: %+v", policies[0])
			}
			if !hasError(errs, "p", 0, tt.field, tt.msg) {
				t.Errorf("want an error at field %q containing %q, got:\n%s", tt.field, tt.msg, renderErrors(errs))
			}
		})
	}
}

// TestCookieRegex: the Cookie header regex finds the cookie among others
// and nothing else, with Envoy's whole-value semantics.
func TestCookieRegex(t *testing.T) {
	tests := []struct {
		cond   HeaderMatch
		header string
		want   bool
	}{
		{HeaderMatch{Name: "gray", Exact: "1"}, "gray=1", true},
		{HeaderMatch{Name: "gray", Exact: "1"}, "a=b; gray=1; c=d", true},
		{HeaderMatch{Name: "gray", Exact: "1"}, "a=b,gray=1", true},
		{HeaderMatch{Name: "gray", Exact: "1"}, "gray=10", false},
		{HeaderMatch{Name: "gray", Exact: "1"}, "xgray=1", false},
		{HeaderMatch{Name: "gray", Exact: "1"}, "a=gray=1", false},
		{HeaderMatch{Name: "gray", Prefix: "v"}, "x=1; gray=v2", true},
		{HeaderMatch{Name: "gray", Prefix: "v"}, "gray=w; x=v", false},
		{HeaderMatch{Name: "gray", Present: true}, "x=1;gray=", true},
		{HeaderMatch{Name: "gray", Present: true}, "x=1", false},
		{HeaderMatch{Name: "gray", Regex: "v[0-9]"}, "gray=v7", true},
		{HeaderMatch{Name: "gray", Regex: "v[0-9]"}, "gray=v77", false},
		{HeaderMatch{Name: "a.b", Exact: "1"}, "axb=1", false},
	}
	for _, tt := range tests {
		re := regexp.MustCompile("^(?:" + CookieRegex(tt.cond) + ")$")
		if got := re.MatchString(tt.header); got != tt.want {
			t.Errorf("%+v against %q: got %v, want %v (regex %s)", tt.cond, tt.header, got, tt.want, CookieRegex(tt.cond))
		}
	}
}
