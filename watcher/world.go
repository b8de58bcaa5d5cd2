package watcher

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// cachedParse remembers the parse result of one key's content, so unchanged
// keys are not parsed again on every change elsewhere.
type cachedParse struct {
	data     string
	policies []*policy.Policy
	errs     []*policy.PolicyError
}

// buildWorld builds a new World from the informer caches, reconciles the
// policies against it, and reports the verdicts that changed.
func (w *Watcher) buildWorld(observedAt time.Time) (*translator.World, error) {
	var (
		services       []*corev1.Service
		endpointSlices []*discoveryv1.EndpointSlice
		configMaps     []*corev1.ConfigMap
	)
	for _, s := range w.scopes {
		svc, err := s.services.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		eps, err := s.slices.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("list endpointslices: %w", err)
		}
		cms, err := s.configMaps.List(w.selector)
		if err != nil {
			return nil, fmt.Errorf("list configmaps: %w", err)
		}
		services = append(services, svc...)
		endpointSlices = append(endpointSlices, eps...)
		configMaps = append(configMaps, cms...)
	}

	world := &translator.World{
		Services:   buildServices(services, endpointSlices),
		ObservedAt: observedAt,
	}
	out := reconcile(w.inForce, w.parseConfigMaps(configMaps), world)
	w.reporter.report(out, w.inForce, configMapFinder(configMaps))
	w.metrics.observe(out)
	w.inForce = out.inForce
	world.Policies = sortedPolicies(out.inForce)
	return world, nil
}

// parseConfigMaps parses every policy key, in (namespace, ConfigMap, key)
// order, reusing the last result for keys whose content did not change.
func (w *Watcher) parseConfigMaps(configMaps []*corev1.ConfigMap) []parsedKey {
	slices.SortFunc(configMaps, func(a, b *corev1.ConfigMap) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	next := make(map[keySource]cachedParse, len(w.parsed))
	var out []parsedKey
	for _, cm := range configMaps {
		keys := make([]string, 0, len(cm.Data))
		for key := range cm.Data {
			if isPolicyKey(key) {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		for _, key := range keys {
			src := keySource{Namespace: cm.Namespace, ConfigMap: cm.Name, Key: key}
			data := cm.Data[key]
			c, ok := w.parsed[src]
			if !ok || c.data != data {
				policies, errs := policy.ParsePolicies(cm.Namespace, cm.Name, key, []byte(data), w.opts.ParseOptions)
				c = cachedParse{data: data, policies: policies, errs: errs}
			}
			next[src] = c
			out = append(out, parsedKey{source: src, policies: c.policies, errs: c.errs})
		}
	}
	w.parsed = next
	return out
}

// configMapFinder looks ConfigMaps up by namespace and name.
func configMapFinder(configMaps []*corev1.ConfigMap) func(namespace, name string) *corev1.ConfigMap {
	byName := make(map[[2]string]*corev1.ConfigMap, len(configMaps))
	for _, cm := range configMaps {
		byName[[2]string{cm.Namespace, cm.Name}] = cm
	}
	return func(namespace, name string) *corev1.ConfigMap { return byName[[2]string{namespace, name}] }
}

// sortedPolicies lists the policies in force by namespace, then name.
func sortedPolicies(inForce map[policyID]*policy.Policy) []*policy.Policy {
	out := make([]*policy.Policy, 0, len(inForce))
	for _, id := range sortedIDs(inForce) {
		out = append(out, inForce[id])
	}
	return out
}
