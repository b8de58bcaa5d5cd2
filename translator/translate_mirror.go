package translator

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/shadowplane/shadowplane/policy"
)

// mirrorRef is one mirror of one policy, resolved to its shadow cluster.
type mirrorRef struct {
	policy  *policy.Policy
	mirror  policy.Mirror
	cluster string
	// hostRewrite is the Host given to copies sent to a URL target.
	hostRewrite string
}

// shadowTarget is one shadow cluster and everything needed to build it and
// its endpoints.
type shadowTarget struct {
	cluster string
	// guard is the tightest of the guards of the policies that use it.
	guard policy.Guard

	// Service target. svc is nil when the World lacks the Service; port is
	// valid only when portFound.
	namespace string
	service   string
	svc       *Service
	port      ServicePort
	portFound bool
	portRef   policy.PortRef

	// URL target, and how it is reached over TLS: the mirror's settings
	// and the namespace whose Secret and ConfigMap they name.
	url          *policy.URLTarget
	tls          *policy.MirrorTLS
	tlsNamespace string

	// users are the IDs of the policies that copy to it, for messages.
	users []string
}

// resolveMirrors resolves the mirrors of the given policies to shadow
// clusters, recording each target (and its guard) in t.targets.
func (t *translation) resolveMirrors(policies []*policy.Policy) map[*policy.Policy][]mirrorRef {
	out := make(map[*policy.Policy][]mirrorRef, len(policies))
	for _, p := range policies {
		refs := make([]mirrorRef, 0, len(p.Mirrors))
		for _, m := range p.Mirrors {
			if t.usableMirror(p, m) {
				refs = append(refs, t.resolveMirror(p, m))
			}
		}
		out[p] = refs
	}
	return out
}

func (t *translation) resolveMirror(p *policy.Policy, m policy.Mirror) mirrorRef {
	var target *shadowTarget
	ref := mirrorRef{policy: p, mirror: m}
	if m.URL != nil {
		target = t.urlTarget(p, m)
		ref.hostRewrite = m.URL.Authority()
	} else {
		target = t.serviceTarget(p, m)
	}
	if m.Host != "" {
		ref.hostRewrite = m.Host
	}
	target.guard = tighterGuard(target.guard, p.Guard.WithDefaults())
	if !containsString(target.users, policyID(p)) {
		target.users = append(target.users, policyID(p))
	}
	ref.cluster = target.cluster
	return ref
}

// serviceTarget finds or creates the EDS shadow cluster of a Service target.
// Its name carries the target Service port's number when the Service is
// known, else the port reference as the policy wrote it.
func (t *translation) serviceTarget(p *policy.Policy, m policy.Mirror) *shadowTarget {
	ns := m.Namespace
	if ns == "" {
		ns = p.Namespace
	}
	svc := t.world.Service(ns, m.Service)
	var sp ServicePort
	found := false
	portName := m.Port.String()
	if svc != nil {
		if sp, found = svc.Port(m.Port); found {
			portName = strconv.Itoa(int(sp.Port))
		}
	}
	name := "shadow|" + ns + "|" + m.Service + "|" + portName
	if ns == p.Namespace && m.Service == p.Service {
		t.warnf("policy %s: mirror %s targets Service %s, the Service the policy copies from: copies reach production pods",
			policyID(p), m.Name, ServiceKey(ns, m.Service))
	}
	if target, ok := t.targets[name]; ok {
		return target
	}
	target := &shadowTarget{
		cluster: name, namespace: ns, service: m.Service,
		svc: svc, port: sp, portFound: found, portRef: m.Port,
	}
	t.targets[name] = target
	return target
}

// urlTarget finds or creates the DNS (or static, for an IP) shadow cluster
// of a URL target.
func (t *translation) urlTarget(p *policy.Policy, m policy.Mirror) *shadowTarget {
	u := m.URL
	if path := urlPath(u.Raw); path != "" && path != "/" {
		t.warnf("policy %s: mirror %s: the URL path %q is ignored; copies keep the path of the request they copy",
			policyID(p), m.Name, path)
	}
	name := fmt.Sprintf("shadow-url|%s|%s|%d", u.Scheme, u.Host, u.Port) + tlsClusterSuffix(p.Namespace, m.TLS)
	if target, ok := t.targets[name]; ok {
		return target
	}
	target := &shadowTarget{cluster: name, url: u, tls: m.TLS, tlsNamespace: p.Namespace}
	t.targets[name] = target
	return target
}

func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.EscapedPath()
}

// tighterGuard returns, field by field, the smaller of two guards, so a
// shadow cluster shared by several policies gets the strictest limits.
func tighterGuard(a, b policy.Guard) policy.Guard {
	if a == (policy.Guard{}) {
		return b
	}
	return policy.Guard{
		ConnectTimeout:     min(a.ConnectTimeout, b.ConnectTimeout),
		MaxConnections:     min(a.MaxConnections, b.MaxConnections),
		MaxPendingRequests: min(a.MaxPendingRequests, b.MaxPendingRequests),
		MaxRequests:        min(a.MaxRequests, b.MaxRequests),
		MaxBodyBytes:       min(a.MaxBodyBytes, b.MaxBodyBytes),
	}
}

// mirrorPolicy renders one mirror as Envoy's RequestMirrorPolicy.
func mirrorPolicy(r mirrorRef) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster: r.cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{
			// The default is 0 on purpose, NOT the policy's percent: the
			// percent lives only in RTDS, so changing it is an RTDS-only
			// update and routes keep their version (nothing re-sent,
			// nothing rebuilt). Envoy waits for RTDS before it starts, and a
			// key then missing from RTDS means "no copy": the safe failure.
			DefaultValue: &typev3.FractionalPercent{
				Numerator:   0,
				Denominator: typev3.FractionalPercent_MILLION,
			},
			RuntimeKey: policy.RuntimeKey(r.policy, r.mirror),
		},
		// Envoy appends "-shadow" to the copy's Host unless told not to;
		// test environments usually answer to the production host name.
		DisableShadowHostSuffixAppend: !r.policy.HostSuffix,
		HostRewriteLiteral:            r.hostRewrite,
		RequestHeadersMutations:       copyHeaderMutations(r.policy),
	}
}

// copyHeaderMutations renders the policy's header edits for its copies:
// removals first, then values set, then the copy marker, so the marker
// always survives.
func copyHeaderMutations(p *policy.Policy) []*mutationv3.HeaderMutation {
	var out []*mutationv3.HeaderMutation
	for _, name := range p.CopyHeaders.Remove {
		out = append(out, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Remove{Remove: name}})
	}
	for _, h := range p.CopyHeaders.Set {
		out = append(out, setHeader(h.Name, h.Value))
	}
	if p.MarkCopies {
		out = append(out, setHeader(policy.CopyMarkerHeader, p.Namespace+"/"+p.Name))
	}
	return out
}

func setHeader(name, value string) *mutationv3.HeaderMutation {
	return &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: name, Value: escapeHeaderFormat(value)},
		// Replace whatever the request carried, never add a second value.
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}}}
}

// escapeHeaderFormat makes a literal header value safe for Envoy, which
// reads header mutation values as format strings ("%REQ(x)%"): a bare "%"
// is a configuration error (checked against Envoy 1.40: "100%" is rejected,
// "100%%" accepted), so every "%" is doubled.
func escapeHeaderFormat(v string) string {
	return strings.ReplaceAll(v, "%", "%%")
}
