package translator

import (
	"fmt"
	"math"
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

// routeEntry is one route of a listener: one distinct match, the policies
// that wrote exactly that match, and the mirrors of every policy that copies
// the requests it matches.
type routeEntry struct {
	match   policy.Match
	key     string
	owners  []*policy.Policy
	mirrors []mirrorRef
}

// buildRouteConfiguration builds the route table of one listener. Routes
// are ordered most specific first, since Envoy takes the first route that
// matches; a catch-all route that only forwards comes last, so a sidecar
// with no policy still forwards everything.
func buildRouteConfiguration(pp nodemeta.PortPair, policies []*policy.Policy, mirrors map[*policy.Policy][]mirrorRef) *routev3.RouteConfiguration {
	entries := routeEntries(policies, mirrors)
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

// routeEntries groups the policies by match (policies with identical
// matches share one route) and sorts the routes most specific first.
//
// Every route also carries the mirrors of every other policy whose match
// contains the route's match, so a request is copied by every policy that
// matches it whenever one policy's match is wider than another's. Matches
// that only partially overlap (neither contains the other, e.g. "path
// /api/" and "method POST") are not combined: a request matching both goes
// to the more specific route and is copied only by the policies that route
// carries.
func routeEntries(policies []*policy.Policy, mirrors map[*policy.Policy][]mirrorRef) []*routeEntry {
	byKey := map[string]*routeEntry{}
	var entries []*routeEntry
	for _, p := range policies {
		m := canonicalMatch(p.Match)
		key := matchKey(m)
		e, ok := byKey[key]
		if !ok {
			e = &routeEntry{match: m, key: key}
			byKey[key] = e
			entries = append(entries, e)
		}
		e.owners = append(e.owners, p)
	}
	sort.SliceStable(entries, func(i, j int) bool { return moreSpecific(entries[i], entries[j]) })
	for _, e := range entries {
		for _, p := range policies {
			if matchContains(canonicalMatch(p.Match), e.match) {
				e.mirrors = append(e.mirrors, mirrors[p]...)
			}
		}
	}
	return entries
}

// moreSpecific orders routes: longer path prefix first, then more header
// conditions, then fewer methods (any restriction before none), then by the
// name of the first policy, then by match for a total order.
func moreSpecific(a, b *routeEntry) bool {
	if la, lb := len(a.match.PathPrefix), len(b.match.PathPrefix); la != lb {
		return la > lb
	}
	if ha, hb := len(a.match.Headers), len(b.match.Headers); ha != hb {
		return ha > hb
	}
	if ma, mb := methodRank(a.match), methodRank(b.match); ma != mb {
		return ma < mb
	}
	if na, nb := a.owners[0].Name, b.owners[0].Name; na != nb {
		return na < nb
	}
	return a.key < b.key
}

func methodRank(m policy.Match) int {
	if len(m.Methods) == 0 {
		return math.MaxInt
	}
	return len(m.Methods)
}

// matchContains reports whether every request matched by inner is also
// matched by outer: outer's path prefix is empty or a prefix of inner's,
// outer allows any method or every method inner allows, and outer's header
// conditions are all among inner's.
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
	for _, h := range outer.Headers {
		if !containsHeader(inner.Headers, h) {
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
	for _, h := range m.Headers {
		if !containsHeader(out.Headers, h) {
			out.Headers = append(out.Headers, h)
		}
	}
	sort.Slice(out.Headers, func(i, j int) bool { return headerKey(out.Headers[i]) < headerKey(out.Headers[j]) })
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
	name := forwardRouteName
	if len(e.owners) > 0 {
		names := make([]string, len(e.owners))
		for i, p := range e.owners {
			names[i] = p.Name
		}
		name = "mirror:" + strings.Join(names, ",")
	}
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
	return &routev3.Route{
		Name:       name,
		StatPrefix: statPrefix,
		Match:      routeMatch(e.match),
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: appClusterName(appPort)},
			// 0s disables Envoy's default 15s route timeout: like Istio's
			// sidecars, this one must not add a timeout production did not
			// have. Copies share this timeout; their clusters bound them.
			Timeout:               durationpb.New(0),
			RequestMirrorPolicies: policies,
		}},
	}
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
	var sm *matcherv3.StringMatcher
	switch {
	case h.Present:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm
	case h.Regex != "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Regex}}}
	case h.Prefix != "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix}}
	default:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact}}
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	return hm
}
