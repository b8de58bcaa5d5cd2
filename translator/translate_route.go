package translator

import (
	"fmt"
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/statnames"
)

// forwardRouteName names the catch-all route that only forwards.
const forwardRouteName = "forward"

// copyPassthroughRouteName names the first route of every listener with
// policies: requests that are themselves copies are forwarded, never copied
// again, so policies pointing at each other (A→B and B→A, or a Service
// copied onto another of its ports) cannot multiply traffic.
const copyPassthroughRouteName = "copy-passthrough"

// buildRouteConfiguration builds the route table of one listener from the
// route model (see routemodel.go): routes most specific first, since Envoy
// takes the first route that matches, and a catch-all route that only
// forwards last, so a sidecar with no policy still forwards everything.
func buildRouteConfiguration(pp nodemeta.PortPair, entries []*routeEntry) *routev3.RouteConfiguration {
	routes := make([]*routev3.Route, 0, len(entries)+2)
	if len(entries) > 0 {
		passthrough := buildRoute(routeEntry{}, pp.App)
		passthrough.Name = copyPassthroughRouteName
		passthrough.Match.Headers = []*routev3.HeaderMatcher{{
			Name:                 policy.CopyMarkerHeader,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
		}}
		routes = append(routes, passthrough)
	}
	catchAll := false
	for _, e := range entries {
		routes = append(routes, buildRoute(*e, pp.App))
		catchAll = catchAll || e.match.IsZero()
	}
	if !catchAll {
		routes = append(routes, buildRoute(routeEntry{}, pp.App))
	}
	name := listenerName(pp.Listen)
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

// matchContains reports whether every request matched by inner is also
// matched by outer: outer's path prefix is empty or a prefix of inner's,
// outer allows any method or every method inner allows, and outer's header,
// cookie and query conditions are all among inner's. It is sound (true
// only when containment holds), which is all the route model needs.
func matchContains(outer, inner policy.Match) bool {
	if !strings.HasPrefix(inner.PathPrefix, outer.PathPrefix) {
		return false
	}
	if len(outer.Methods) > 0 {
		if len(inner.Methods) == 0 {
			return false
		}
		for _, m := range inner.Methods {
			if !containsString(outer.Methods, m) {
				return false
			}
		}
	}
	return conditionsContained(outer.Headers, inner.Headers) &&
		conditionsContained(outer.Cookies, inner.Cookies) &&
		conditionsContained(outer.Query, inner.Query)
}

// conditionsContained reports whether every condition of outer is among
// inner's.
func conditionsContained(outer, inner []policy.HeaderMatch) bool {
	for _, h := range outer {
		if !containsHeader(inner, h) {
			return false
		}
	}
	return true
}

// canonicalMatch returns a copy of m with methods and headers sorted and
// free of duplicates, so equal matches compare equal.
func canonicalMatch(m policy.Match) policy.Match {
	out := policy.Match{PathPrefix: m.PathPrefix}
	for _, method := range m.Methods {
		if !containsString(out.Methods, method) {
			out.Methods = append(out.Methods, method)
		}
	}
	sort.Strings(out.Methods)
	out.Headers = canonicalConditions(m.Headers)
	out.Cookies = canonicalConditions(m.Cookies)
	out.Query = canonicalConditions(m.Query)
	return out
}

func canonicalConditions(in []policy.HeaderMatch) []policy.HeaderMatch {
	var out []policy.HeaderMatch
	for _, h := range in {
		if !containsHeader(out, h) {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return headerKey(out[i]) < headerKey(out[j]) })
	return out
}

// matchKey renders a canonical match as a string unique to it.
func matchKey(m policy.Match) string {
	var b strings.Builder
	fmt.Fprintf(&b, "path=%q methods=%q", m.PathPrefix, m.Methods)
	for _, h := range m.Headers {
		b.WriteString(" header=")
		b.WriteString(headerKey(h))
	}
	for _, c := range m.Cookies {
		b.WriteString(" cookie=")
		b.WriteString(headerKey(c))
	}
	for _, q := range m.Query {
		b.WriteString(" query=")
		b.WriteString(headerKey(q))
	}
	return b.String()
}

func headerKey(h policy.HeaderMatch) string {
	return fmt.Sprintf("%q exact=%q prefix=%q regex=%q present=%t", h.Name, h.Exact, h.Prefix, h.Regex, h.Present)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsHeader(list []policy.HeaderMatch, h policy.HeaderMatch) bool {
	for _, v := range list {
		if v == h {
			return true
		}
	}
	return false
}

// buildRoute renders one route entry; the zero entry is the catch-all.
func buildRoute(e routeEntry, appPort uint32) *routev3.Route {
	var policies []*routev3.RouteAction_RequestMirrorPolicy
	var copiers []string
	for _, m := range e.mirrors {
		policies = append(policies, mirrorPolicy(m))
		copiers = append(copiers, m.policy.Name)
	}
	// A route that copies counts the requests it matches, for every
	// policy it copies for: the denominator of each mirror's observed
	// share. Routes that only forward get no stats (Envoy spends about
	// 1 KiB per route stat prefix).
	statPrefix := ""
	if len(e.mirrors) > 0 {
		statPrefix = statnames.RouteStatPrefix(e.mirrors[0].policy.Namespace, copiers)
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: appClusterName(appPort)},
		// 0s disables Envoy's default 15s route timeout: like Istio's
		// sidecars, this one must not add a timeout production did not
		// have. Copies share this timeout; their clusters bound them.
		Timeout:               durationpb.New(0),
		RequestMirrorPolicies: policies,
	}
	if e.rule != nil {
		action.ClusterSpecifier = weightedClusters(e.rule, e.backends, appPort)
	}
	return &routev3.Route{Name: e.name(), StatPrefix: statPrefix, Match: routeMatch(e.match), Action: &routev3.Route_Route{Route: action}}
}

func routeMatch(m policy.Match) *routev3.RouteMatch {
	prefix := m.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
	if len(m.Methods) > 0 {
		rm.Headers = append(rm.Headers, methodMatcher(m.Methods))
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(h))
	}
	for _, c := range m.Cookies {
		rm.Headers = append(rm.Headers, cookieMatcher(c))
	}
	for _, q := range m.Query {
		rm.QueryParameters = append(rm.QueryParameters, queryMatcher(q))
	}
	return rm
}

func methodMatcher(methods []string) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: methods[0]}}
	if len(methods) > 1 {
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: policy.MethodsRegex(methods),
		}}
	}
	return &routev3.HeaderMatcher{
		Name:                 ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
	}
}

// headerMatcher renders one header condition. Envoy keeps an HTTP/1 Host
// header as ":authority", where a matcher on "host" would never look, so
// "host" is matched there. A regex must match the whole value (Envoy's
// safe_regex semantics).
func headerMatcher(h policy.HeaderMatch) *routev3.HeaderMatcher {
	name := h.Name
	if strings.EqualFold(name, "host") {
		name = ":authority"
	}
	hm := &routev3.HeaderMatcher{Name: name}
	if h.Present {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(h)}
	return hm
}

// stringMatcher renders the value condition of a header or query
// parameter match that is not present: true.
func stringMatcher(h policy.HeaderMatch) *matcherv3.StringMatcher {
	switch {
	case h.Regex != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Regex}}}
	case h.Prefix != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix}}
	default:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact}}
	}
}

// cookieMatcher finds one cookie in the Cookie header with one regex
// (Envoy has no cookie matcher for routes); see policy.CookieRegex.
func cookieMatcher(c policy.HeaderMatch) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: "cookie",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: policy.CookieRegex(c)}},
		}},
	}
}

// queryMatcher renders one query parameter condition; Envoy compares the
// parameter's value as it appears in the URL (not decoded).
func queryMatcher(q policy.HeaderMatch) *routev3.QueryParameterMatcher {
	qm := &routev3.QueryParameterMatcher{Name: q.Name}
	if q.Present {
		qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		return qm
	}
	qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(q)}
	return qm
}
