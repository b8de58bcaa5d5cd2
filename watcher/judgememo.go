package watcher

import (
	"reflect"
	"slices"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// judgeMemo remembers the last build's judgements, so a build whose World
// shares the previous World's Services map (a policy edit: no Service or
// EndpointSlice changed) judges again only the policy names whose
// definition or version in force changed, and checks the route cap again
// only for the listeners whose policies changed. With 1,000 policies this
// was most of the watcher's work per policy edit. Everything it keeps is
// immutable or handed out clipped, so appending to a returned slice never
// writes into a kept one.
type judgeMemo struct {
	// services is the Services map the entries were judged against.
	services map[string]*translator.Service
	judged   map[policyID]judgement
	caps     map[listenerKey]routeCapCheck
}

type judgement struct {
	claim   claim
	last    *policy.Policy
	inForce *policy.Policy
	verdict *verdict
	refs    []*policy.PolicyError
}

type listenerKey struct{ namespace, service, port string }

type routeCapCheck struct {
	policies []*policy.Policy
	errs     []*policy.PolicyError
}

func newJudgeMemo() *judgeMemo {
	return &judgeMemo{judged: map[policyID]judgement{}, caps: map[listenerKey]routeCapCheck{}}
}

// sameMap reports whether a and b are the very same map.
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return a != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// judge is judge(c, last, world), reusing the previous build's answer when
// nothing it depends on changed. next collects this build's judgements.
func (m *judgeMemo) judge(id policyID, c claim, last *policy.Policy, world *translator.World, next map[policyID]judgement) (*policy.Policy, *verdict, []*policy.PolicyError) {
	if m == nil {
		return judge(c, last, world)
	}
	if j, ok := m.judged[id]; ok && sameMap(m.services, world.Services) && j.last == last && sameClaim(j.claim, c) && !namesTLS(c.policy) {
		next[id] = j
		return j.inForce, cloneVerdict(j.verdict), j.refs
	}
	inForce, v, refs := judge(c, last, world)
	v = cloneVerdict(v)
	next[id] = judgement{claim: c, last: last, inForce: inForce, verdict: v, refs: slices.Clip(refs)}
	return inForce, cloneVerdict(v), slices.Clip(refs)
}

// done makes this build's judgements the ones the next build reuses.
func (m *judgeMemo) done(world *translator.World, next map[policyID]judgement) {
	if m == nil {
		return
	}
	m.services, m.judged = world.Services, next
}

func cloneVerdict(v *verdict) *verdict {
	if v == nil {
		return nil
	}
	c := *v
	c.notes = slices.Clip(c.notes)
	return &c
}

func sameClaim(a, b claim) bool {
	return a.subject == b.subject && a.name == b.name && a.index == b.index && a.policy == b.policy && a.kept == b.kept &&
		len(a.errs) == len(b.errs) && (len(a.errs) == 0 || &a.errs[0] == &b.errs[0])
}

// namesTLS reports whether a policy's verdict depends on TLS material,
// which is built anew for every World: such policies are always judged.
func namesTLS(p *policy.Policy) bool {
	if p == nil {
		return false
	}
	for _, m := range p.Mirrors {
		if m.TLS != nil {
			return true
		}
	}
	return false
}

// routeCap is translator.CheckRouteCap(policies), checking again only the
// listeners whose policies are not the very ones checked last time.
// policies are in (namespace, name) order, as CheckRouteCap's callers give
// them.
func (m *judgeMemo) routeCap(policies []*policy.Policy) []*policy.PolicyError {
	if m == nil {
		return translator.CheckRouteCap(policies)
	}
	byListener := map[listenerKey][]*policy.Policy{}
	var keys []listenerKey
	for _, p := range policies {
		k := listenerKey{p.Namespace, p.Service, p.Port.String()}
		if byListener[k] == nil {
			keys = append(keys, k)
		}
		byListener[k] = append(byListener[k], p)
	}
	next := make(map[listenerKey]routeCapCheck, len(keys))
	var errs []*policy.PolicyError
	for _, k := range keys {
		group := byListener[k]
		check, ok := m.caps[k]
		if !ok || !slices.Equal(check.policies, group) {
			// CheckRouteCap sorts its argument.
			check = routeCapCheck{policies: group, errs: slices.Clip(translator.CheckRouteCap(slices.Clone(group)))}
		}
		next[k] = check
		errs = append(errs, check.errs...)
	}
	m.caps = next
	return errs
}
