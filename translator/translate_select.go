package translator

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

// planListeners returns the sidecar's inbound ports, sorted by listen port
// and free of duplicates, each with the policies that apply to it.
func (t *translation) planListeners() []listenerPlan {
	ports := t.sortedPorts()
	plans := make([]listenerPlan, len(ports))
	for i, pp := range ports {
		plans[i].port = pp
	}
	for _, p := range t.groupPolicies() {
		listen, why := t.policyListenPorts(p, ports)
		if len(listen) == 0 {
			t.warnf("policy %s: %s; it copies nothing from this sidecar", policyID(p), why)
			continue
		}
		for i := range plans {
			if containsPort(listen, plans[i].port.Listen) {
				plans[i].policies = append(plans[i].policies, p)
			}
		}
	}
	return plans
}

// sortedPorts copies the group's port pairs sorted by listen port, keeping
// the first pair of a listen port given twice (ParsePorts never yields that,
// but a NodeGroup built elsewhere might).
func (t *translation) sortedPorts() []nodemeta.PortPair {
	ports := append([]nodemeta.PortPair(nil), t.group.Ports...)
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].Listen < ports[j].Listen })
	out := ports[:0]
	for _, p := range ports {
		if len(out) > 0 && out[len(out)-1].Listen == p.Listen {
			t.warnf("listen port %d is given twice; forwarding it to app port %d, ignoring app port %d",
				p.Listen, out[len(out)-1].App, p.App)
			continue
		}
		out = append(out, p)
	}
	return out
}

// groupPolicies returns the policies of the Service this group fronts,
// sorted by name. Of two policies with the same name (from two ConfigMaps)
// only the first by source is kept, since both would own the same runtime
// keys.
func (t *translation) groupPolicies() []*policy.Policy {
	if t.world == nil {
		return nil
	}
	var out []*policy.Policy
	for _, p := range t.world.Policies {
		if p != nil && p.Namespace == t.group.Namespace && p.Service == t.group.Service {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return policyLess(out[i], out[j]) })
	kept := out[:0:0]
	for _, p := range out {
		if n := len(kept); n > 0 && kept[n-1].Name == p.Name {
			t.warnf("policy %s is defined twice (%s and %s); using the one in %s",
				policyID(p), sourceString(kept[n-1].Source), sourceString(p.Source), sourceString(kept[n-1].Source))
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

func policyLess(a, b *policy.Policy) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	if a.Source.ConfigMap != b.Source.ConfigMap {
		return a.Source.ConfigMap < b.Source.ConfigMap
	}
	if a.Source.Key != b.Source.Key {
		return a.Source.Key < b.Source.Key
	}
	return a.Source.Index < b.Source.Index
}

func sourceString(s policy.Source) string {
	return fmt.Sprintf("ConfigMap %s key %s", s.ConfigMap, s.Key)
}

// policyListenPorts decides on which of the sidecar's listen ports the
// requests a policy is about arrive. The sidecar sits behind the Service's
// targetPort (the port swap), so:
//
//   - When the World knows the Service, the policy's port reference is
//     resolved to a Service port, and the policy applies to the listener
//     whose port is that Service port's numeric targetPort. A named
//     targetPort is resolved through the ready endpoints (their port number
//     for the Service port's name); while no endpoint resolves it (pods not
//     ready yet), a sidecar with exactly one listener takes the policy, since
//     there is nowhere else the requests could arrive.
//   - When the World does not know the Service (not watched yet, or
//     deleted), a numeric port reference equal to a listen port applies to
//     that listener, and a policy without a port applies to a sidecar with
//     exactly one listener. Anything else cannot be placed and is reported.
//
// When nothing applies, the second result says why.
func (t *translation) policyListenPorts(p *policy.Policy, ports []nodemeta.PortPair) ([]uint32, string) {
	svcKey := ServiceKey(p.Namespace, p.Service)
	svc := t.world.Service(p.Namespace, p.Service)
	if svc == nil {
		switch {
		case p.Port.Number != 0 && hasListenPort(ports, uint32(p.Port.Number)):
			return []uint32{uint32(p.Port.Number)}, ""
		case p.Port.IsZero() && len(ports) == 1:
			return []uint32{ports[0].Listen}, ""
		case p.Port.IsZero():
			return nil, fmt.Sprintf("Service %s not found and the policy names no port, so it cannot be matched to one of this sidecar's listen ports (%s)",
				svcKey, listenPortList(ports))
		default:
			return nil, fmt.Sprintf("Service %s not found and port %s is not one of this sidecar's listen ports (%s)",
				svcKey, p.Port, listenPortList(ports))
		}
	}

	sp, ok := svc.Port(p.Port)
	if !ok {
		if p.Port.IsZero() {
			return nil, fmt.Sprintf("Service %s has %d ports and the policy names none", svcKey, len(svc.Ports))
		}
		return nil, fmt.Sprintf("Service %s has no port %s", svcKey, p.Port)
	}
	if sp.TargetPort != 0 {
		if hasListenPort(ports, uint32(sp.TargetPort)) {
			return []uint32{uint32(sp.TargetPort)}, ""
		}
		return nil, fmt.Sprintf("Service %s port %s targets port %d, which is not one of this sidecar's listen ports (%s), so its requests bypass the sidecar",
			svcKey, servicePortLabel(sp), sp.TargetPort, listenPortList(ports))
	}

	resolved := namedTargetPorts(svc, sp)
	if len(resolved) == 0 {
		if len(ports) == 1 {
			return []uint32{ports[0].Listen}, ""
		}
		return nil, fmt.Sprintf("Service %s port %s targets the named port %q, which no ready endpoint resolves yet",
			svcKey, servicePortLabel(sp), sp.TargetPortName)
	}
	var listen []uint32
	for _, n := range resolved {
		if hasListenPort(ports, n) {
			listen = append(listen, n)
		}
	}
	if len(listen) == 0 {
		return nil, fmt.Sprintf("Service %s port %s targets the named port %q, which resolves to %s, not one of this sidecar's listen ports (%s), so its requests bypass the sidecar",
			svcKey, servicePortLabel(sp), sp.TargetPortName, portList(resolved), listenPortList(ports))
	}
	return listen, ""
}

// namedTargetPorts returns, sorted and distinct, the port numbers the
// Service's endpoints give for a Service port with a named targetPort.
func namedTargetPorts(svc *Service, sp ServicePort) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, ep := range svc.Endpoints {
		if n, ok := ep.Ports[sp.Name]; ok && n > 0 && !seen[uint32(n)] {
			seen[uint32(n)] = true
			out = append(out, uint32(n))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func servicePortLabel(sp ServicePort) string {
	if sp.Name != "" {
		return fmt.Sprintf("%s (%d)", sp.Name, sp.Port)
	}
	return fmt.Sprint(sp.Port)
}

func hasListenPort(ports []nodemeta.PortPair, listen uint32) bool {
	for _, p := range ports {
		if p.Listen == listen {
			return true
		}
	}
	return false
}

func containsPort(ports []uint32, port uint32) bool {
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}

func listenPortList(ports []nodemeta.PortPair) string {
	if len(ports) == 0 {
		return "none"
	}
	listen := make([]uint32, len(ports))
	for i, p := range ports {
		listen[i] = p.Listen
	}
	return portList(listen)
}

func portList(ports []uint32) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ", ")
}
