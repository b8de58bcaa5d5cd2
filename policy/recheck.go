package policy

import (
	"fmt"
)

// RecheckStored checks a policy read back from the last-valid store
// against the control plane's current options, as the parser checked it
// when it was written: every URL target must still pass the deny list and
// the allowlist (which may have been narrowed since), and agree with its
// own raw URL; shares must be within 100 %. A stored policy that fails is
// not put back in force. The store is written by the leader, but it is an
// annotation anyone who may edit the ConfigMap can also edit, so what it
// holds is checked, not trusted.
func RecheckStored(p *Policy, opts ParseOptions) []string {
	var problems []string
	for i, m := range p.Mirrors {
		field := fmt.Sprintf("mirrors[%d]", i)
		if m.PartsPerMillion > 1_000_000 {
			problems = append(problems, fmt.Sprintf("%s: share %d ppm is over 100 %%", field, m.PartsPerMillion))
		}
		if m.URL == nil {
			continue
		}
		t, _, urlProblems := parseURLTarget(m.URL.Raw, opts)
		for _, pr := range urlProblems {
			problems = append(problems, fmt.Sprintf("%s.url: %s", field, pr))
		}
		if t != nil && *t != *m.URL {
			problems = append(problems, fmt.Sprintf("%s.url: stored target %s://%s:%d does not match its URL", field, m.URL.Scheme, m.URL.Host, m.URL.Port))
		}
	}
	var total uint64
	for _, b := range p.RouteTo {
		total += uint64(b.PartsPerMillion)
	}
	if total > 1_000_000 {
		problems = append(problems, fmt.Sprintf("routeTo: shares sum to %d ppm, over 100 %%", total))
	}
	return problems
}
