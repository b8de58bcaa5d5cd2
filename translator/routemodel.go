package translator

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/shadowplane/shadowplane/policy"
)

// MaxRoutesPerListener caps the routes the route model may build for one
// listener. Policies whose matches overlap in part need a route for every
// combination of them that a request can satisfy, up to 2^n - 1 for n
// policies, so the cap keeps one ConfigMap from growing a route table
// without bound.
const MaxRoutesPerListener = 128

// routeEntry is one route of a listener: one region of requests, described
// by a match, with everything that applies to the requests in it.
type routeEntry struct {
	match policy.Match
	key   string
	// owners are the policies whose match is exactly this one (none for a
	// route that only exists as the overlap of other policies' matches).
	owners []*policy.Policy
	// members are all the policies whose match contains this one, sorted by
	// name: every request that takes this route satisfies exactly these.
	members []*policy.Policy
	// mirrors are the mirrors of every member: a request is copied by every
	// policy whose match it satisfies.
	mirrors []mirrorRef
	// rule is the most specific member with routeTo backends, nil when the
	// requests stay on the stable version; backends are its resolved
	// backends.
	rule     *policy.Policy
	backends []routeBackendRef
}

// name is the route's name in Envoy: the policies that own the match, or,
// for an overlap, all the policies whose matches meet there.
func (e routeEntry) name() string {
	if len(e.members) == 0 {
		return forwardRouteName
	}
	kind := "mirror:"
	if e.rule != nil {
		kind = "route:"
	}
	if len(e.owners) > 0 {
		return kind + policyNames(e.owners, ",")
	}
	return kind + policyNames(e.members, "+")
}

func policyNames(policies []*policy.Policy, sep string) string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = p.Name
	}
	return strings.Join(names, sep)
}

// routeEntries builds the route model of one listener.
//
// Semantics: a request is copied by every policy with mirrors whose match
// it satisfies, and routed by the most specific policy with routeTo whose
// match it satisfies (see ruleMoreSpecific), else it stays on the stable
// version.
//
// Construction: one route per distinct satisfiable intersection of the
// policies' matches (a policy's own match is the intersection of one).
// Each route carries its members, the policies whose match contains it.
// Routes are ordered by member count, most first. For a request r with
// matching set P(r), the route built from the intersection of P(r) has
// exactly P(r) as members, and every route r matches has members inside
// P(r); so the first route r matches in this order has members P(r): the
// right copies and the right rule, whatever the overlaps.
//
// Policies are added in name order; one whose routes would take the
// listener past MaxRoutesPerListener is left out, and reported.
func routeEntries(policies []*policy.Policy, mirrors map[*policy.Policy][]mirrorRef, backends map[*policy.Policy][]routeBackendRef, report func(p *policy.Policy, routes int)) []*routeEntry {
	kept, matches := capRoutes(policies, report)

	entries := make([]*routeEntry, 0, len(matches))
	for _, m := range matches {
		e := &routeEntry{match: m, key: matchKey(m)}
		for _, p := range kept {
			pm := canonicalMatch(p.Match)
			if !matchContains(pm, m) {
				continue
			}
			e.members = append(e.members, p)
			e.mirrors = append(e.mirrors, mirrors[p]...)
			if matchKey(pm) == e.key {
				e.owners = append(e.owners, p)
			}
			if len(p.RouteTo) > 0 && (e.rule == nil || ruleMoreSpecific(p, e.rule)) {
				e.rule = p
			}
		}
		if e.rule != nil {
			e.backends = backends[e.rule]
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if a, b := len(entries[i].members), len(entries[j].members); a != b {
			return a > b
		}
		return moreSpecific(entries[i], entries[j])
	})
	return entries
}

// capRoutes adds the policies' matches and their intersections in the
// given order, leaving out (and reporting) each policy that would take
// the count past MaxRoutesPerListener.
func capRoutes(policies []*policy.Policy, report func(p *policy.Policy, routes int)) (kept []*policy.Policy, matches []policy.Match) {
	for _, p := range policies {
		next := addIntersections(matches, canonicalMatch(p.Match))
		if len(next) > MaxRoutesPerListener {
			report(p, len(next))
			continue
		}
		matches = next
		kept = append(kept, p)
	}
	return kept, matches
}

// ListenerKey names the listener policies share: one per Service and port.
type ListenerKey struct{ Namespace, Service, Port string }

// ListenerGroup is the policies of one listener, in the order given.
type ListenerGroup struct {
	Key      ListenerKey
	Policies []*policy.Policy
}

// ListenerGroups groups policies by listener, listeners in the order of
// their first policy.
func ListenerGroups(policies []*policy.Policy) []ListenerGroup {
	index := map[ListenerKey]int{}
	var groups []ListenerGroup
	for _, p := range policies {
		k := ListenerKey{p.Namespace, p.Service, p.Port.String()}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, ListenerGroup{Key: k})
		}
		groups[i].Policies = append(groups[i].Policies, p)
	}
	return groups
}

// CheckRouteCap finds the policies that the route cap keeps out of force,
// as a sidecar would: policies of one Service and port share a listener
// and are added in name order. It backs `shadowplane validate`, so the
// error shows before the policies are applied.
func CheckRouteCap(policies []*policy.Policy) []*policy.PolicyError {
	var errs []*policy.PolicyError
	for _, g := range ListenerGroups(policies) {
		errs = append(errs, checkListenerRouteCap(g)...)
	}
	return errs
}

// checkListenerRouteCap is CheckRouteCap for one listener's policies; it
// sorts them.
func checkListenerRouteCap(g ListenerGroup) []*policy.PolicyError {
	var errs []*policy.PolicyError
	group := g.Policies
	sort.SliceStable(group, func(i, j int) bool { return group[i].Name < group[j].Name })
	capRoutes(group, func(p *policy.Policy, routes int) {
		errs = append(errs, &policy.PolicyError{
			Namespace: p.Namespace, ConfigMap: p.Source.ConfigMap, Key: p.Source.Key, Policy: p.Name, Index: p.Source.Index,
			Field: "match",
			Message: fmt.Sprintf("with this policy, the policies of Service %s port %q would need %d routes to honour every overlap of their matches, more than the limit of %d per listener, so it is not put in force: narrow or merge the matches of the Service's policies",
				ServiceKey(p.Namespace, p.Service), g.Key.Port, routes, MaxRoutesPerListener),
		})
	})
	return errs
}

// CheckListenerRouteCap is CheckRouteCap for the policies of one listener
// (a ListenerGroups entry); it leaves g's slice as it was.
func CheckListenerRouteCap(g ListenerGroup) []*policy.PolicyError {
	g.Policies = slices.Clone(g.Policies)
	return checkListenerRouteCap(g)
}

// addIntersections returns matches plus m and m's intersection with each
// of them, without repeats, in a deterministic order.
func addIntersections(matches []policy.Match, m policy.Match) []policy.Match {
	out := append([]policy.Match(nil), matches...)
	seen := make(map[string]bool, len(matches)*2+1)
	for _, x := range matches {
		seen[matchKey(x)] = true
	}
	add := func(x policy.Match) {
		if k := matchKey(x); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	add(m)
	for _, x := range matches {
		if both, ok := intersectMatches(x, m); ok {
			add(both)
		}
	}
	return out
}

// intersectMatches returns the match of the requests both a and b match
// (canonical matches in, canonical match out). ok is false when no request
// can match both: path prefixes that diverge, no method in common, or two
// different exact values for one header or query parameter. Conditions it
// cannot prove contradictory are kept together; such a route just never
// matches.
func intersectMatches(a, b policy.Match) (policy.Match, bool) {
	var out policy.Match
	switch {
	case strings.HasPrefix(a.PathPrefix, b.PathPrefix):
		out.PathPrefix = a.PathPrefix
	case strings.HasPrefix(b.PathPrefix, a.PathPrefix):
		out.PathPrefix = b.PathPrefix
	default:
		return policy.Match{}, false
	}
	switch {
	case len(a.Methods) == 0:
		out.Methods = b.Methods
	case len(b.Methods) == 0:
		out.Methods = a.Methods
	default:
		for _, m := range a.Methods {
			if containsString(b.Methods, m) {
				out.Methods = append(out.Methods, m)
			}
		}
		if len(out.Methods) == 0 {
			return policy.Match{}, false
		}
	}
	if exactConflict(a.Headers, b.Headers) || exactConflict(a.Query, b.Query) {
		return policy.Match{}, false
	}
	out.Headers = canonicalConditions(append(append([]policy.HeaderMatch(nil), a.Headers...), b.Headers...))
	out.Cookies = canonicalConditions(append(append([]policy.HeaderMatch(nil), a.Cookies...), b.Cookies...))
	out.Query = canonicalConditions(append(append([]policy.HeaderMatch(nil), a.Query...), b.Query...))
	return out, true
}

// exactConflict reports whether a and b require different exact values of
// the same name, which no request satisfies at once.
func exactConflict(a, b []policy.HeaderMatch) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Name == y.Name && x.Exact != "" && y.Exact != "" && x.Exact != y.Exact {
				return true
			}
		}
	}
	return false
}

// moreSpecific orders routes with as many members: longer path prefix
// first, then more header conditions, then fewer methods (any restriction
// before none), then by the name of the first member, then by match for a
// total order.
func moreSpecific(a, b *routeEntry) bool {
	if la, lb := len(a.match.PathPrefix), len(b.match.PathPrefix); la != lb {
		return la > lb
	}
	if ha, hb := conditionCount(a.match), conditionCount(b.match); ha != hb {
		return ha > hb
	}
	if ma, mb := methodRank(a.match), methodRank(b.match); ma != mb {
		return ma < mb
	}
	if na, nb := a.members[0].Name, b.members[0].Name; na != nb {
		return na < nb
	}
	return a.key < b.key
}

// ruleMoreSpecific decides which of two routing rules a request satisfying
// both takes: the one with more header, cookie and query conditions (a
// marker is the most deliberate selector), then the longer path prefix,
// then a method restriction over none (fewer methods first), then the name.
func ruleMoreSpecific(a, b *policy.Policy) bool {
	ma, mb := canonicalMatch(a.Match), canonicalMatch(b.Match)
	if ca, cb := conditionCount(ma), conditionCount(mb); ca != cb {
		return ca > cb
	}
	if la, lb := len(ma.PathPrefix), len(mb.PathPrefix); la != lb {
		return la > lb
	}
	if ra, rb := methodRank(ma), methodRank(mb); ra != rb {
		return ra < rb
	}
	return a.Name < b.Name
}

// conditionCount counts a match's header, cookie and query conditions.
func conditionCount(m policy.Match) int { return len(m.Headers) + len(m.Cookies) + len(m.Query) }

func methodRank(m policy.Match) int {
	if len(m.Methods) == 0 {
		return math.MaxInt
	}
	return len(m.Methods)
}
