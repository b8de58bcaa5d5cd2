package watcher

import (
	"slices"

	"github.com/shadowplane/shadowplane/internal/policyrefs"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// judgeMemo remembers the last build's judgements, so a build judges again
// only the policy names whose definition, version in force, or named
// Services changed, and checks the route cap again only for the listeners
// whose policies changed. With 1,000 policies judging every one was most of
// the watcher's work per change. Everything it keeps is immutable or handed
// out clipped, so appending to a returned slice never writes into a kept
// one.
type judgeMemo struct {
	judged map[policyID]judgement
	caps   map[translator.ListenerKey]routeCapCheck
	// refs are the Services each policy names (policyrefs.Services).
	refs map[*policy.Policy][]string
}

type judgement struct {
	claim claim
	last  *policy.Policy
	// deps are the World's Services the claim's policy names, in refs
	// order, as they were when judged (nil where absent).
	deps    []*translator.Service
	inForce *policy.Policy
	verdict *verdict
	refs    []*policy.PolicyError
}

type routeCapCheck struct {
	policies []*policy.Policy
	errs     []*policy.PolicyError
}

func newJudgeMemo() *judgeMemo {
	return &judgeMemo{judged: map[policyID]judgement{}, caps: map[translator.ListenerKey]routeCapCheck{}, refs: map[*policy.Policy][]string{}}
}

// judge is judge(c, last, world), reusing the previous build's answer when
// nothing it depends on changed. next collects this build's judgements.
func (m *judgeMemo) judge(id policyID, c claim, last *policy.Policy, world *translator.World, next map[policyID]judgement) (*policy.Policy, *verdict, []*policy.PolicyError) {
	if m == nil {
		return judge(c, last, world)
	}
	deps := m.deps(c.policy, world)
	if j, ok := m.judged[id]; ok && j.last == last && sameClaim(j.claim, c) && slices.Equal(j.deps, deps) && !namesTLS(c.policy) {
		next[id] = j
		return j.inForce, cloneVerdict(j.verdict), j.refs
	}
	inForce, v, refs := judge(c, last, world)
	v = cloneVerdict(v)
	next[id] = judgement{claim: c, last: last, deps: deps, inForce: inForce, verdict: v, refs: slices.Clip(refs)}
	return inForce, cloneVerdict(v), slices.Clip(refs)
}

// deps are the World's Services p names: what CheckReferences reads.
func (m *judgeMemo) deps(p *policy.Policy, world *translator.World) []*translator.Service {
	if p == nil {
		return nil
	}
	refs, ok := m.refs[p]
	if !ok {
		refs = policyrefs.Services(p)
		m.refs[p] = refs
	}
	deps := make([]*translator.Service, len(refs))
	for i, key := range refs {
		deps[i] = world.Services[key]
	}
	return deps
}

// done makes this build's judgements the ones the next build reuses, and
// forgets the references of policies no longer judged.
func (m *judgeMemo) done(next map[policyID]judgement) {
	if m == nil {
		return
	}
	m.judged = next
	for p := range m.refs {
		if j, ok := next[policyID{Namespace: p.Namespace, Name: p.Name}]; !ok || j.claim.policy != p {
			delete(m.refs, p)
		}
	}
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
	groups := translator.ListenerGroups(policies)
	next := make(map[translator.ListenerKey]routeCapCheck, len(groups))
	var errs []*policy.PolicyError
	for _, g := range groups {
		check, ok := m.caps[g.Key]
		if !ok || !slices.Equal(check.policies, g.Policies) {
			check = routeCapCheck{policies: g.Policies, errs: slices.Clip(translator.CheckListenerRouteCap(g))}
		}
		next[g.Key] = check
		errs = append(errs, check.errs...)
	}
	m.caps = next
	return errs
}
