package watcher

import (
	"fmt"
	"strings"

	"github.com/shadowplane/shadowplane/policy"
)

// appliedMessage describes a policy in force for its PolicyApplied Event, e.g.
// "policy p applied: copies 25% of entrance:http to staging/entrance:8080,
// 1.5% to http://10.16.0.147/entrance/".
func appliedMessage(p *policy.Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s applied: ", p.Name)
	source := p.Service
	if port := p.Port.String(); port != "" {
		source += ":" + port
	}
	for i, m := range p.Mirrors {
		if i == 0 {
			fmt.Fprintf(&b, "copies %s of %s to %s", formatPercent(m.PartsPerMillion), source, describeTarget(m))
			continue
		}
		fmt.Fprintf(&b, ", %s to %s", formatPercent(m.PartsPerMillion), describeTarget(m))
	}
	for i, r := range p.RouteTo {
		switch {
		case i == 0 && len(p.Mirrors) > 0:
			b.WriteString("; ")
			fallthrough
		case i == 0:
			fmt.Fprintf(&b, "routes %s of %s to %s", formatPercent(r.PartsPerMillion), source, p.Namespace+"/"+r.Service)
		default:
			fmt.Fprintf(&b, ", %s to %s", formatPercent(r.PartsPerMillion), p.Namespace+"/"+r.Service)
		}
	}
	if !p.Match.IsZero() {
		b.WriteString(" (matching requests only)")
	}
	return b.String()
}

// describeTarget names a mirror target as a user wrote it.
func describeTarget(m policy.Mirror) string {
	if m.URL != nil {
		return m.URL.Raw
	}
	target := m.Namespace + "/" + m.Service
	if port := m.Port.String(); port != "" {
		target += ":" + port
	}
	return target
}

// formatPercent renders parts per million as a percentage with up to four
// decimals and no trailing zeros: 250000 → "25%", 15000 → "1.5%",
// 1 → "0.0001%". Integer arithmetic keeps it exact.
func formatPercent(ppm uint32) string {
	whole, frac := ppm/10000, ppm%10000
	if frac == 0 {
		return fmt.Sprintf("%d%%", whole)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%04d", whole, frac), "0") + "%"
}
