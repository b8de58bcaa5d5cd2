package watcher

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// keySource locates one data key of one policy ConfigMap.
type keySource struct {
	Namespace string
	ConfigMap string
	Key       string
}

func compareKeySources(a, b keySource) int {
	return cmp.Or(
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.ConfigMap, b.ConfigMap),
		cmp.Compare(a.Key, b.Key),
	)
}

// parsedKey is what policy.ParsePolicies made of one data key.
type parsedKey struct {
	source   keySource
	policies []*policy.Policy
	errs     []*policy.PolicyError
}

// policyID names a policy: names are unique within a namespace.
type policyID struct {
	Namespace string
	Name      string
}

// outcome is the result of reconciling the policy keys with the policies in
// force.
type outcome struct {
	inForce  map[policyID]*policy.Policy
	verdicts []verdict
	// problems are every parse, reference and duplicate-name problem
	// found, in key order, then by policy name.
	problems []*policy.PolicyError
}

// reconcile decides which policies are in force, given the policies in force
// so far (prev), every policy key in (namespace, ConfigMap, key) order, and
// the current Services. The rules:
//   - a valid definition replaces the version in force;
//   - an invalid one (parse or reference error) keeps the last valid version
//     in force;
//   - a key that cannot be read at all keeps every policy last read from it;
//   - an entry whose name cannot be read keeps the policies last read from
//     its key that the key no longer names (the entry may be one of them);
//   - a policy no key defines any more is removed;
//   - when a name is defined more than once in a namespace, the definition
//     first by (ConfigMap, key, position) wins and the others are rejected.
//
// It never modifies prev or anything reachable from keys.
func reconcile(prev map[policyID]*policy.Policy, keys []parsedKey, world *translator.World) outcome {
	return reconcileMemo(prev, keys, world, nil)
}

// reconcileMemo is reconcile, reusing the judgements in memo (nil: none)
// that nothing changed and keeping this build's for the next.
func reconcileMemo(prev map[policyID]*policy.Policy, keys []parsedKey, world *translator.World, memo *judgeMemo) outcome {
	out := outcome{inForce: map[policyID]*policy.Policy{}}
	byName := map[policyID][]claim{}
	for _, k := range keys {
		out.problems = append(out.problems, k.errs...)
		claims, verdicts := claimsOfKey(k, prev)
		out.verdicts = append(out.verdicts, verdicts...)
		for _, c := range claims {
			id := policyID{Namespace: k.source.Namespace, Name: c.name}
			byName[id] = append(byName[id], c)
		}
	}
	ids := make([]policyID, 0, len(byName))
	for id := range byName {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, comparePolicyIDs)
	var judged map[policyID]judgement
	if memo != nil {
		judged = make(map[policyID]judgement, len(ids))
	}
	for _, id := range ids {
		claims := byName[id]
		winner := claims[0]
		inForce, v, refs := memo.judge(id, winner, prev[id], world, judged)
		out.problems = append(out.problems, refs...)
		if inForce != nil {
			out.inForce[id] = inForce
		}
		if v != nil {
			out.verdicts = append(out.verdicts, *v)
		}
		for _, dup := range claims[1:] {
			if dup.kept != nil {
				continue // its key's own verdict already speaks for it
			}
			e := duplicateError(dup, winner)
			out.problems = append(out.problems, e)
			out.verdicts = append(out.verdicts, verdict{
				subject: dup.subject,
				policy:  dup.policy,
				notes:   errorNotes([]*policy.PolicyError{e}, ReasonPolicyWarning, "; this definition is ignored"),
			})
		}
	}
	memo.done(judged)
	out.reportRouteCap(memo)
	// Verdicts in the order of the ConfigMaps, so logs read top to bottom.
	slices.SortStableFunc(out.verdicts, func(a, b verdict) int { return compareSubjects(a.subject, b.subject) })
	return out
}

// reportRouteCap adds a RouteCapExceeded note to the verdict of each policy
// in force that sidecars leave out because its routes would pass the
// translator's cap (see translator.CheckRouteCap).
func (o *outcome) reportRouteCap(memo *judgeMemo) {
	policies := make([]*policy.Policy, 0, len(o.inForce))
	for _, id := range sortedIDs(o.inForce) {
		policies = append(policies, o.inForce[id])
	}
	for _, e := range memo.routeCap(policies) {
		o.problems = append(o.problems, e)
		for i := range o.verdicts {
			s := o.verdicts[i].subject
			if s.source.Namespace == e.Namespace && s.source.ConfigMap == e.ConfigMap && s.source.Key == e.Key && s.policy == e.Policy {
				o.verdicts[i].notes = append(o.verdicts[i].notes, note{eventType: eventWarning, reason: ReasonRouteCapExceeded, message: e.Error()})
			}
		}
	}
}

// compareSubjects orders by key, then the key itself, unnamed entries and
// named policies.
func compareSubjects(a, b subject) int {
	return cmp.Or(
		compareKeySources(a.source, b.source),
		cmp.Compare(a.policy, b.policy),
		cmp.Compare(a.index, b.index),
	)
}

func comparePolicyIDs(a, b policyID) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// judge decides what the winning definition of a policy name puts in force
// and what to report about it, and returns the problems CheckReferences
// found. last is the version in force so far, if any.
func judge(c claim, last *policy.Policy, world *translator.World) (*policy.Policy, *verdict, []*policy.PolicyError) {
	if c.kept != nil {
		return c.kept, nil, nil
	}
	v := &verdict{subject: c.subject, policy: c.policy}
	var refs []*policy.PolicyError
	if c.policy != nil && !hasError(c.errs) {
		refs = translator.CheckReferences(c.policy, world)
	}
	if c.policy != nil && !hasError(c.errs) && !hasError(refs) {
		// CheckReferences' warnings already say the policy stays in force.
		v.notes = append(errorNotes(c.errs, ReasonPolicyWarning, ""), referenceNotes(refs, "")...)
		tlsRefs := translator.CheckMirrorTLS(c.policy, world)
		v.notes = append(v.notes, errorNotes(tlsRefs, ReasonMirrorTLSInvalid, "")...)
		refs = append(refs, tlsRefs...)
		if len(refs) == 0 {
			v.notes = append(v.notes, note{eventType: eventNormal, reason: ReasonPolicyApplied, message: appliedMessage(c.policy)})
		}
		return c.policy, v, refs
	}
	suffix := "; the policy is not in force"
	if last != nil {
		suffix = "; the last valid version stays in force"
	}
	v.notes = append(errorNotes(c.errs, ReasonPolicyWarning, suffix), referenceNotes(refs, suffix)...)
	return last, v, refs
}

// duplicateError rejects a definition whose name an earlier one took.
func duplicateError(dup, winner claim) *policy.PolicyError {
	return &policy.PolicyError{
		Namespace: dup.subject.source.Namespace,
		ConfigMap: dup.subject.source.ConfigMap,
		Key:       dup.subject.source.Key,
		Policy:    dup.name,
		Index:     dup.index,
		Field:     "name",
		Message: fmt.Sprintf("policy name %q is already used in this namespace by ConfigMap %s key %s; names must be unique within a namespace, so rename one of them",
			dup.name, winner.subject.source.ConfigMap, winner.subject.source.Key),
	}
}

// hasError reports whether errs holds anything but warnings.
func hasError(errs []*policy.PolicyError) bool {
	return slices.ContainsFunc(errs, func(e *policy.PolicyError) bool { return !e.Warning })
}

// referenceNotes turns the problems CheckReferences found into Event notes:
// a routeTo backend without ready endpoints is BackendNotReady, other
// warnings TargetMissing.
func referenceNotes(refs []*policy.PolicyError, errorSuffix string) []note {
	notes := errorNotes(refs, ReasonTargetMissing, errorSuffix)
	for i, e := range refs {
		if isUnreadyBackend(e) {
			notes[i].reason = ReasonBackendNotReady
		}
	}
	return notes
}

func isUnreadyBackend(e *policy.PolicyError) bool {
	return e.Warning && strings.Contains(e.Message, translator.NoReadyEndpoints)
}

// errorNotes turns policy errors into Event notes: errors are rejections,
// with errorSuffix saying what stays in force; warnings get warningReason.
func errorNotes(errs []*policy.PolicyError, warningReason, errorSuffix string) []note {
	out := make([]note, 0, len(errs))
	for _, e := range errs {
		if e.Warning {
			out = append(out, note{eventType: eventWarning, reason: warningReason, message: e.Error()})
			continue
		}
		out = append(out, note{eventType: eventWarning, reason: ReasonPolicyRejected, message: e.Error() + errorSuffix})
	}
	return out
}
