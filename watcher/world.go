package watcher

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/shadowplane/shadowplane/internal/policyrefs"
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

// builtVerdicts is what a build decided, for publish to report after the
// World is handed on.
type builtVerdicts struct {
	out outcome
	// previous are the policies in force before this build.
	previous   map[policyID]*policy.Policy
	configMaps []*corev1.ConfigMap
}

// buildWorld builds a new World from the informer caches with the same
// conversion as BuildWorld, keeping the last valid version of each policy
// in force; publish reports its verdicts.
func (w *Watcher) buildWorld(observedAt time.Time) (_ *translator.World, _ builtVerdicts, err error) {
	// Taken before reading the caches: an event after this builds again.
	dirty, all := w.dirty.take()
	defer func() {
		if err != nil {
			w.dirty.restore(dirty, all) // for the next build
		}
	}()
	scopes := w.informers.Load().scopes
	convertAll := w.lastServices == nil || all
	var (
		services       []*corev1.Service
		endpointSlices []*discoveryv1.EndpointSlice
		configMaps     []*corev1.ConfigMap
		tlsSecrets     []*corev1.Secret
		caConfigMaps   []*corev1.ConfigMap
	)
	for _, s := range scopes {
		if convertAll {
			svc, err := s.services.List(labels.Everything())
			if err != nil {
				return nil, builtVerdicts{}, fmt.Errorf("list services: %w", err)
			}
			eps, err := s.slices.List(labels.Everything())
			if err != nil {
				return nil, builtVerdicts{}, fmt.Errorf("list endpointslices: %w", err)
			}
			services = append(services, svc...)
			endpointSlices = append(endpointSlices, eps...)
		}
		cms, err := s.configMaps.List(w.selector)
		if err != nil {
			return nil, builtVerdicts{}, fmt.Errorf("list configmaps: %w", err)
		}
		secrets, err := s.tlsSecrets.List(tlsSelector)
		if err != nil {
			return nil, builtVerdicts{}, fmt.Errorf("list secrets: %w", err)
		}
		cas, err := s.caConfigMaps.List(tlsSelector)
		if err != nil {
			return nil, builtVerdicts{}, fmt.Errorf("list CA configmaps: %w", err)
		}
		configMaps = append(configMaps, cms...)
		tlsSecrets = append(tlsSecrets, secrets...)
		caConfigMaps = append(caConfigMaps, cas...)
	}
	// Worlds are never modified once handed on, so an unchanged Services
	// map is shared with the previous World, and unchanged Services with it.
	converted := w.lastServices
	switch {
	case convertAll:
		converted = w.services(services, endpointSlices)
	case len(dirty) > 0:
		var err error
		if converted, err = w.updateServices(scopes, dirty); err != nil {
			return nil, builtVerdicts{}, err
		}
	}
	w.lastServices = converted

	keys, parsed := parseConfigMaps(configMaps, w.parsed, w.opts.ParseOptions)
	w.parsed = parsed
	material := buildTLSMaterial(tlsSecrets, caConfigMaps, w.opts.clock.Now(), w.tlsChecks)
	w.tlsChecks = material.checks
	w.scheduleTLSRecheck(material.recheck)
	// The stored last valid versions, which every replica reads alike, take
	// precedence over this replica's memory: replicas that started at
	// different times then keep the same version of an invalid policy.
	world, out := reconcileWorld(converted, keys, w.lastValid(configMaps), material, w.judged)
	world.ObservedAt = observedAt
	verdicts := builtVerdicts{out: out, previous: w.inForce, configMaps: configMaps}
	w.inForce = out.inForce
	w.references.Store(w.referencedServices(keys, out.inForce))
	return world, verdicts, nil
}

// publish logs the verdicts of a build that changed, records them as
// Events and hands the status annotations to the store writer (both as
// the leader only), and updates the metrics. Builds are published in
// order, one at a time (the publisher's goroutine, or Run's for the first).
func (w *Watcher) publish(v builtVerdicts) {
	defer w.published.Add(1)
	leader := w.leader.Load()
	if leader && w.promoted.CompareAndSwap(true, false) {
		w.reporter.seed(recordedSubjects(v.configMaps))
	}
	w.encodings = w.encodings.nextBuild()
	w.reporter.encode = w.encodings.json
	w.reporter.report(v.out, v.previous, configMapFinder(v.configMaps), leader)
	w.metrics.observe(v.out)
	desired, err := desiredFrom(v.out, w.reporter.recorded, v.configMaps, w.encodings)
	if err != nil {
		// Only encoding the last valid versions can fail, and that only on
		// a programming error; the World is in force regardless.
		w.opts.Logger.Error("cannot encode the policy status", "error", err)
		return
	}
	w.store.set(desired)
}

// referencedServices is every Service named by a policy in force or by a
// current definition, valid or not: a Service appearing can make an
// invalid definition valid. Policies are immutable and the parse cache
// keeps them, so each one's references are worked out once.
func (w *Watcher) referencedServices(keys []parsedKey, inForce map[policyID]*policy.Policy) *map[string]bool {
	refs := map[string]bool{}
	next := make(map[*policy.Policy][]string, len(w.refs))
	add := func(p *policy.Policy) {
		services, ok := w.refs[p]
		if !ok {
			services = policyrefs.Services(p)
		}
		next[p] = services
		for _, s := range services {
			refs[s] = true
		}
	}
	for _, k := range keys {
		for _, p := range k.policies {
			add(p)
		}
	}
	for _, p := range inForce {
		add(p)
	}
	w.refs = next
	return &refs
}

// storedPolicies caches the decoding of one ConfigMap's last-valid
// annotation.
type storedPolicies struct {
	raw      string
	policies []*policy.Policy
}

// lastValid merges the policies in force in memory with the stored last
// valid versions of configMaps, which win.
func (w *Watcher) lastValid(configMaps []*corev1.ConfigMap) map[policyID]*policy.Policy {
	merged := make(map[policyID]*policy.Policy, len(w.inForce))
	for id, p := range w.inForce {
		merged[id] = p
	}
	next := make(map[configMapRef]storedPolicies, len(configMaps))
	leading := w.leader.Load()
	for _, cm := range configMaps {
		ref := configMapRef{cm.Namespace, cm.Name}
		raw := cm.Annotations[AnnotationLastValid]
		if own, ok := w.store.desiredLastValid(ref); leading && ok && own != raw {
			// The leader is the store's only writer: what its last build
			// decided to store is newer than the annotation, whose write
			// may not have landed (or reached this cache) yet. An invalid
			// edit made right after a valid one must keep that valid one,
			// not the version stored before it.
			raw = own
		}
		entry, ok := w.stored[ref]
		if !ok || entry.raw != raw {
			policies, err := decodeLastValidRaw(ref, raw)
			if err != nil {
				w.opts.Logger.Warn("ignoring unreadable last valid versions; the leader rewrites them", "error", err)
			}
			entry = storedPolicies{raw: raw, policies: w.recheckStored(ref, policies)}
		}
		next[ref] = entry
		for _, p := range entry.policies {
			merged[policyID{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	w.stored = next
	return merged
}

// recheckStored keeps the stored policies that still pass the checks of
// the current options (policy.RecheckStored): the annotation is editable
// by whoever may edit the ConfigMap, and the options may have narrowed
// since it was written.
func (w *Watcher) recheckStored(ref configMapRef, policies []*policy.Policy) []*policy.Policy {
	kept := policies[:0:0]
	for _, p := range policies {
		if problems := policy.RecheckStored(p, w.opts.ParseOptions); len(problems) > 0 {
			w.opts.Logger.Warn("ignoring a stored last valid version that the current options refuse",
				"configmap", ref.Namespace+"/"+ref.Name, "annotation", AnnotationLastValid, "policy", p.Name,
				"problems", strings.Join(problems, "; "))
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// recordedSubjects reads the verdicts recorded as Events from the status
// annotations of configMaps.
func recordedSubjects(configMaps []*corev1.ConfigMap) map[subject]string {
	out := map[subject]string{}
	for _, cm := range configMaps {
		ref := configMapRef{cm.Namespace, cm.Name}
		for name, fp := range recordedVerdicts(cm) {
			if s, ok := parseSubjectName(ref, name); ok {
				out[s] = fp
			}
		}
	}
	return out
}

// BuildWorld converts Kubernetes objects into the World the watcher hands on
// when it sees them for the first time (no policy in force yet): the Services
// with their ready endpoints, and the valid policies of the given policy
// ConfigMaps (selecting them by label is the caller's business). It also
// returns every problem found: parse errors and warnings, reference
// problems, and duplicate names. It runs the watcher's own conversion, so
// offline tools and tests see exactly what the control plane would, and it
// modifies none of its arguments.
func BuildWorld(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, configMaps []*corev1.ConfigMap,
	opts policy.ParseOptions) (*translator.World, []*policy.PolicyError) {
	return BuildWorldWithTLS(services, endpointSlices, configMaps, nil, nil, opts, time.Time{})
}

// BuildWorldWithTLS is BuildWorld with the client certificates and CA
// bundles of mirror targets: the Secrets and ConfigMaps labelled
// policy.TLSObjectLabel (selecting them is the caller's business), checked
// for validity at now.
func BuildWorldWithTLS(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, configMaps []*corev1.ConfigMap,
	tlsSecrets []*corev1.Secret, caConfigMaps []*corev1.ConfigMap, opts policy.ParseOptions, now time.Time) (*translator.World, []*policy.PolicyError) {
	keys, _ := parseConfigMaps(configMaps, nil, opts)
	world, out := assembleWorld(services, endpointSlices, keys, nil, buildTLSMaterial(tlsSecrets, caConfigMaps, now, nil))
	return world, out.problems
}

// assembleWorld converts the Services and EndpointSlices, then reconciles the
// parsed policy keys against them and the policies in force so far (prev).
func assembleWorld(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, keys []parsedKey,
	prev map[policyID]*policy.Policy, material tlsMaterial) (*translator.World, outcome) {
	return reconcileWorld(buildServices(services, endpointSlices), keys, prev, material, nil)
}

// reconcileWorld reconciles the parsed policy keys against converted
// Services, the checked TLS material of mirror targets and the policies in
// force so far (prev).
func reconcileWorld(services map[string]*translator.Service, keys []parsedKey, prev map[policyID]*policy.Policy,
	material tlsMaterial, memo *judgeMemo) (*translator.World, outcome) {
	world := &translator.World{
		Services:           services,
		ClientCertificates: material.certificates,
		CABundles:          material.bundles,
	}
	out := reconcileMemo(prev, keys, world, memo)
	world.Policies = sortedPolicies(out.inForce)
	return world, out
}

// convertedService is a Service converted for a World, with the resource
// versions it was converted from.
type convertedService struct {
	versions string
	service  *translator.Service
}

// services converts the Services and their EndpointSlices like
// buildServices, but converts again only the Services whose object or
// slices changed since the last World: translator.Service values are never
// modified once handed on, so unchanged ones are shared between Worlds. In
// a cluster of 10,000 Services that is most of the cost of an event.
func (w *Watcher) services(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) map[string]*translator.Service {
	slicesOf := make(map[string][]*discoveryv1.EndpointSlice, len(services))
	for _, sl := range endpointSlices {
		if name := sl.Labels[discoveryv1.LabelServiceName]; name != "" {
			key := translator.ServiceKey(sl.Namespace, name)
			slicesOf[key] = append(slicesOf[key], sl)
		}
	}
	out := make(map[string]*translator.Service, len(services))
	next := make(map[string]convertedService, len(services))
	for _, svc := range services {
		key := translator.ServiceKey(svc.Namespace, svc.Name)
		own := slicesOf[key]
		versions, cacheable := resourceVersions(svc, own)
		if c, ok := w.converted[key]; ok && cacheable && c.versions == versions {
			out[key], next[key] = c.service, c
			continue
		}
		converted := buildServices([]*corev1.Service{svc}, own)[key]
		out[key] = converted
		if cacheable {
			next[key] = convertedService{versions: versions, service: converted}
		}
	}
	w.converted = next
	return out
}

// updateServices is the previous World's Services with those of dirty
// converted again from the caches (removed when gone), like services
// would convert them.
func (w *Watcher) updateServices(scopes []*scope, dirty map[string]struct{}) (map[string]*translator.Service, error) {
	next := maps.Clone(w.lastServices)
	for key := range dirty {
		svc, own, err := serviceAndSlices(scopes, key)
		if err != nil {
			return nil, err
		}
		if svc == nil {
			delete(next, key)
			delete(w.converted, key)
			continue
		}
		converted := buildServices([]*corev1.Service{svc}, own)[key]
		next[key] = converted
		if versions, cacheable := resourceVersions(svc, own); cacheable {
			w.converted[key] = convertedService{versions: versions, service: converted}
		} else {
			delete(w.converted, key)
		}
	}
	return next, nil
}

// dirtyServices collects the keys of Services to convert again.
type dirtyServices struct {
	mu   sync.Mutex
	keys map[string]struct{}
	all  bool
}

// add marks the Services of Service and EndpointSlice objects.
func (d *dirtyServices) add(objs ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, obj := range objs {
		if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		key, ok := serviceKeyOf(obj)
		if !ok {
			if _, isSlice := obj.(*discoveryv1.EndpointSlice); !isSlice {
				d.all = true // not expected; convert everything
			}
			continue // a slice of no Service attaches to nothing
		}
		d.markLocked(key)
	}
}

func (d *dirtyServices) markLocked(key string) {
	if d.keys == nil {
		d.keys = map[string]struct{}{}
	}
	d.keys[key] = struct{}{}
}

// addAll marks every Service.
func (d *dirtyServices) addAll() {
	d.mu.Lock()
	d.all = true
	d.mu.Unlock()
}

// restore marks again what a failed build took.
func (d *dirtyServices) restore(keys map[string]struct{}, all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.all = d.all || all
	for key := range keys {
		d.markLocked(key)
	}
}

// take returns and forgets the marks.
func (d *dirtyServices) take() (keys map[string]struct{}, all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys, all = d.keys, d.all
	d.keys, d.all = nil, false
	return keys, all
}

// resourceVersions identifies the state of a Service and its slices; false
// when an object has no resource version (fake clients), which is then
// converted every time.
func resourceVersions(svc *corev1.Service, own []*discoveryv1.EndpointSlice) (string, bool) {
	if svc.ResourceVersion == "" {
		return "", false
	}
	parts := make([]string, 0, 1+len(own))
	parts = append(parts, svc.ResourceVersion)
	for _, sl := range own {
		if sl.ResourceVersion == "" {
			return "", false
		}
		parts = append(parts, sl.Name+"@"+sl.ResourceVersion)
	}
	slices.Sort(parts[1:]) // the lister's order is not fixed
	return strings.Join(parts, ","), true
}

// parseConfigMaps parses every policy key, in (namespace, ConfigMap, key)
// order, reusing the cached result for keys whose content did not change.
// It returns the parsed keys and the cache for the next call.
func parseConfigMaps(configMaps []*corev1.ConfigMap, cache map[keySource]cachedParse,
	opts policy.ParseOptions) ([]parsedKey, map[keySource]cachedParse) {
	configMaps = slices.Clone(configMaps)
	slices.SortFunc(configMaps, func(a, b *corev1.ConfigMap) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	next := make(map[keySource]cachedParse, len(cache))
	var out []parsedKey
	for _, cm := range configMaps {
		keys := make([]string, 0, len(cm.Data))
		for key := range cm.Data {
			if policy.IsPolicyKey(key) {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		parsed := make([]parsedKey, 0, len(keys))
		for _, key := range keys {
			src := keySource{Namespace: cm.Namespace, ConfigMap: cm.Name, Key: key}
			data := cm.Data[key]
			c, ok := cache[src]
			if !ok || c.data != data {
				policies, errs := policy.ParsePolicies(cm.Namespace, cm.Name, key, []byte(data), opts)
				if ok {
					policies = keepUnchanged(c.policies, policies)
				}
				c = cachedParse{data: data, policies: policies, errs: errs}
			}
			next[src] = c
			parsed = append(parsed, parsedKey{source: src, policies: c.policies, errs: c.errs})
		}
		applyCaps(parsed)
		out = append(out, parsed...)
	}
	return out, next
}

// keepUnchanged returns parsed with each policy equal to one of the key's
// previous parse replaced by that earlier object. Editing one policy of a
// key that holds a hundred then leaves the other ninety-nine the very
// objects they were, so every stage that skips unchanged objects by
// identity (verdicts, node groups, encodings) skips them.
func keepUnchanged(previous, parsed []*policy.Policy) []*policy.Policy {
	if len(previous) == 0 {
		return parsed
	}
	byName := make(map[string]*policy.Policy, len(previous))
	for _, p := range previous {
		if p != nil {
			byName[p.Name] = p
		}
	}
	out := make([]*policy.Policy, len(parsed))
	for i, p := range parsed {
		out[i] = p
		if p == nil {
			continue
		}
		if old, ok := byName[p.Name]; ok && reflect.DeepEqual(old, p) {
			out[i] = old
		}
	}
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
