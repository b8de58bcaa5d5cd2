package xds

import (
	"encoding/json"
	"slices"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/internal/policyrefs"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// policiesByService indexes a World's policies by the "namespace/name" of
// the Service they copy from, which is the node group they apply to.
func policiesByService(w *translator.World) map[string][]*policy.Policy {
	out := map[string][]*policy.Policy{}
	for _, p := range w.Policies {
		if p != nil {
			key := p.Namespace + "/" + p.Service
			out[key] = append(out[key], p)
		}
	}
	return out
}

// groupInputs fingerprints what a group's translation reads from a World:
// the group itself, the policies of its Service, the client certificates
// and CA bundles their mirrors name, and every Service those policies name
// (ports and ready endpoints), or its absence. A World that
// differs elsewhere (another group's policy, an unrelated Service's
// endpoints) gives the same fingerprint, so SetWorld leaves the group
// alone. Marshalling cannot fail for these plain structs; were it to, the
// error text still moves the hash.
func groupInputs(w *translator.World, g nodemeta.NodeGroup, byService map[string][]*policy.Policy, cache *inputCache) string {
	parts := [][]byte{[]byte(g.Key())}
	refs := []string{g.Namespace + "/" + g.Service}
	for _, p := range byService[g.Namespace+"/"+g.Service] {
		c := cache.of(p)
		parts = append(parts, c.json)
		parts = append(parts, tlsInputs(w, p)...)
		refs = append(refs, c.services...)
	}
	slices.Sort(refs)
	for _, ref := range slices.Compact(refs) {
		parts = append(parts, []byte(ref), cache.service(w.Services[ref]))
	}
	return contenthash.Of(parts...)
}

// groupInputRefs lists the objects of w that groupInputs reads for g, in
// a fixed order. A World's objects are never modified once handed on, so
// the same objects give the same fingerprint; with 1,000 groups, hashing
// every group's inputs on every change cost more than the one group's
// translation the change needed.
func groupInputRefs(w *translator.World, g nodemeta.NodeGroup, byService map[string][]*policy.Policy, cache *inputCache) []any {
	var out []any
	refs := []string{g.Namespace + "/" + g.Service}
	for _, p := range byService[g.Namespace+"/"+g.Service] {
		out = append(out, p)
		refs = append(refs, cache.of(p).services...)
		for _, m := range p.Mirrors {
			if m.TLS == nil {
				continue
			}
			if m.TLS.ClientCertSecret != "" {
				out = append(out, w.ClientCertificates[translator.ClientCertificateKey(p.Namespace, m.TLS.ClientCertSecret)])
			}
			if m.TLS.CAConfigMap != "" {
				out = append(out, w.CABundles[translator.CABundleKey(p.Namespace, m.TLS.CAConfigMap, m.TLS.CAKey)])
			}
		}
	}
	slices.Sort(refs)
	for _, ref := range slices.Compact(refs) {
		svc := w.Services[ref]
		cache.keepService(svc)
		out = append(out, ref, svc)
	}
	return out
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

// inputCache remembers each policy's encoding and references, and each
// Service's encoding: both are immutable, and a World shares the unchanged
// ones with the previous World, so each is worked out once rather than
// once per group and World (with 1,000 groups, encoding their Services
// again was most of a one-policy change's cost in the xDS server).
type inputCache struct {
	entries map[*policy.Policy]policyInputs
	// used are the entries the current World needed; the rest are dropped
	// by sweep.
	used map[*policy.Policy]policyInputs

	services, usedServices map[*translator.Service][]byte
}

type policyInputs struct {
	json     []byte
	services []string
}

func (c *inputCache) of(p *policy.Policy) policyInputs {
	in, ok := c.used[p]
	if ok {
		return in
	}
	if in, ok = c.entries[p]; !ok {
		in = policyInputs{json: marshal(p), services: policyrefs.Services(p)}
	}
	if c.used == nil {
		c.used = make(map[*policy.Policy]policyInputs, len(c.entries))
	}
	c.used[p] = in
	return in
}

// service returns the encoding of a Service of the World (nil: absent).
func (c *inputCache) service(svc *translator.Service) []byte {
	if svc == nil {
		return marshal(svc)
	}
	b, ok := c.usedServices[svc]
	if ok {
		return b
	}
	if b, ok = c.services[svc]; !ok {
		b = marshal(svc)
	}
	if c.usedServices == nil {
		c.usedServices = make(map[*translator.Service][]byte, len(c.services))
	}
	c.usedServices[svc] = b
	return b
}

// keepService keeps svc's encoding, if there is one, for the next World
// without encoding it: a group skipped by identity still names it.
func (c *inputCache) keepService(svc *translator.Service) {
	b, ok := c.services[svc]
	if !ok || svc == nil {
		return
	}
	if c.usedServices == nil {
		c.usedServices = make(map[*translator.Service][]byte, len(c.services))
	}
	c.usedServices[svc] = b
}

// sweep keeps only what the last World used.
func (c *inputCache) sweep() {
	c.entries, c.used = c.used, nil
	c.services, c.usedServices = c.usedServices, nil
}

// tlsInputs are the client certificates and CA bundles a policy's mirrors
// name, each with its key (or its absence), so rotating one re-translates
// the groups that use it. They only feed the hash.
func tlsInputs(w *translator.World, p *policy.Policy) [][]byte {
	var out [][]byte
	for _, m := range p.Mirrors {
		if m.TLS == nil {
			continue
		}
		if m.TLS.ClientCertSecret != "" {
			key := translator.ClientCertificateKey(p.Namespace, m.TLS.ClientCertSecret)
			out = append(out, []byte(key), marshal(w.ClientCertificates[key]))
		}
		if m.TLS.CAConfigMap != "" {
			key := translator.CABundleKey(p.Namespace, m.TLS.CAConfigMap, m.TLS.CAKey)
			out = append(out, []byte(key), marshal(w.CABundles[key]))
		}
	}
	return out
}
