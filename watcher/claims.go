package watcher

import (
	"cmp"
	"slices"

	"github.com/shadowplane/shadowplane/policy"
)

// claim is one definition of a policy name found in a key.
type claim struct {
	subject subject
	name    string
	index   int // position in the key's policies list
	// policy is the version read now; nil when the entry is invalid.
	policy *policy.Policy
	// kept is the last valid version, kept because its key cannot be read
	// now (or holds an entry whose name cannot be read).
	kept *policy.Policy
	// errs are the parser's errors and warnings about this entry.
	errs []*policy.PolicyError
}

// claimsOfKey turns the parse result of one key into claims on policy names,
// plus the verdicts about the key itself and its unnamed entries.
func claimsOfKey(k parsedKey, prev map[policyID]*policy.Policy) ([]claim, []verdict) {
	type entry struct {
		name  string
		index int
	}
	var keyErrs []*policy.PolicyError
	unnamed := map[int][]*policy.PolicyError{}
	named := map[entry][]*policy.PolicyError{}
	for _, e := range k.errs {
		switch {
		case e.Policy != "":
			named[entry{e.Policy, e.Index}] = append(named[entry{e.Policy, e.Index}], e)
		case e.Index >= 0:
			unnamed[e.Index] = append(unnamed[e.Index], e)
		default:
			keyErrs = append(keyErrs, e)
		}
	}
	keySubject := subject{source: k.source, index: -1}
	var verdicts []verdict

	if hasError(keyErrs) {
		kept := keptClaims(k.source, prev, nil)
		suffix := "; no policy from this key is in force"
		if len(kept) > 0 {
			suffix = "; the policies last read from this key stay in force"
		}
		verdicts = append(verdicts, verdict{subject: keySubject, notes: errorNotes(keyErrs, ReasonPolicyWarning, suffix)})
		return kept, verdicts
	}
	if len(keyErrs) > 0 {
		verdicts = append(verdicts, verdict{subject: keySubject, notes: errorNotes(keyErrs, ReasonPolicyWarning, "")})
	}

	var claims []claim
	for _, p := range k.policies {
		e := entry{p.Name, p.Source.Index}
		claims = append(claims, claim{name: p.Name, index: p.Source.Index, policy: p, errs: named[e]})
		delete(named, e)
	}
	for e, errs := range named {
		claims = append(claims, claim{name: e.name, index: e.index, errs: errs})
	}
	slices.SortFunc(claims, func(a, b claim) int { return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(a.name, b.name)) })
	seen := map[string]bool{}
	for i := range claims {
		claims[i].subject = subject{source: k.source, policy: claims[i].name}
		if seen[claims[i].name] {
			// The same name twice in one key: tell the verdicts apart.
			claims[i].subject.index = claims[i].index
		}
		seen[claims[i].name] = true
	}

	if len(unnamed) > 0 {
		// An entry whose name cannot be read may be an edit of any policy
		// last read from this key, so none of those is removed yet.
		kept := keptClaims(k.source, prev, seen)
		suffix := "; this entry is ignored"
		if len(kept) > 0 {
			suffix += ", and the policies last read from this key that it may replace stay in force"
		}
		indexes := make([]int, 0, len(unnamed))
		for i := range unnamed {
			indexes = append(indexes, i)
		}
		slices.Sort(indexes)
		for _, i := range indexes {
			verdicts = append(verdicts, verdict{
				subject: subject{source: k.source, index: i},
				notes:   errorNotes(unnamed[i], ReasonPolicyWarning, suffix),
			})
		}
		claims = append(claims, kept...)
	}
	return claims, verdicts
}

// keptClaims claims, for the policies in force that were last read from
// source and are not named in skip, their last valid version.
func keptClaims(source keySource, prev map[policyID]*policy.Policy, skip map[string]bool) []claim {
	var out []claim
	for id, p := range prev {
		if id.Namespace != source.Namespace || p.Source.ConfigMap != source.ConfigMap || p.Source.Key != source.Key || skip[id.Name] {
			continue
		}
		out = append(out, claim{
			subject: subject{source: source, policy: id.Name},
			name:    id.Name,
			index:   p.Source.Index,
			kept:    p,
		})
	}
	slices.SortFunc(out, func(a, b claim) int { return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(a.name, b.name)) })
	return out
}
