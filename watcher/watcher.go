package watcher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// Watcher watches Services, EndpointSlices and policy ConfigMaps and hands
// a new translator.World to Options.OnWorld after each burst of changes.
type Watcher struct {
	opts     Options
	selector labels.Selector
	// informers is the running informer set; the recovery loop replaces it
	// after an API server outage.
	informers atomic.Pointer[informerSet]
	health    *watchHealth
	// probe asks the API server whether it is serving.
	probe    func(context.Context) error
	debounce *debouncer
	// publisher reports each World's verdicts once the push has gone out.
	publisher *publisher
	metrics   *metrics
	// reporter and encodings (the last build's store encodings,
	// storeEncodings) are used by publish alone: on Run's goroutine for the
	// first World, on the publisher's after.
	reporter  *reporter
	encodings storeEncodings
	// broadcaster sends Events to the API; nil when Options.Recorder was
	// given.
	broadcaster record.EventBroadcaster

	started atomic.Bool
	synced  atomic.Bool
	// leader is true while this replica records Events and writes the
	// annotations; promoted asks the next build to read what the previous
	// leader recorded first.
	leader   atomic.Bool
	promoted atomic.Bool
	// handedOn and published count the Worlds handed on and those whose
	// verdicts have been reported, so tests can wait for the reports.
	handedOn, published atomic.Int64
	store               *storeWriter

	// Owned by the goroutine in Run.
	// references holds "namespace/name" of every Service some policy
	// (valid or not) names; nil until the first World.
	references atomic.Pointer[map[string]bool]

	inForce map[policyID]*policy.Policy
	parsed  map[keySource]cachedParse
	stored  map[configMapRef]storedPolicies
	refs    map[*policy.Policy][]string // policyrefs.Services of each policy
	// converted are the Services of the last World, by key.
	converted map[string]convertedService
	// dirty collects the keys of the Services whose object or slices had
	// events since the last World (all: every Service, after the informers
	// were replaced); lastServices is the Services map of the last World. A
	// build converts only the dirty Services again and shares the rest:
	// with 10,000 Services, converting all of them was most of an
	// EndpointSlice event's cost, and a policy edit converts none.
	dirty        dirtyServices
	lastServices map[string]*translator.Service
	// judged remembers the last build's judgements (see judgeMemo).
	judged *judgeMemo
	// tlsRecheck fires when a certificate's validity changes.
	tlsRecheck clock.Timer
	// tlsChecks are the last checks of the labelled Secrets and CA keys.
	tlsChecks map[string]tlsCheck
}

// New sets up a Watcher; nothing is watched until Run.
func New(opts Options) (*Watcher, error) {
	opts, selector, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		opts:     opts,
		selector: selector,
		debounce: newDebouncer(opts.clock, opts.Debounce, opts.MaxDelay),
		metrics:  m,
		judged:   newJudgeMemo(),
		health:   newWatchHealth(m.watchUp, opts.Logger, opts.clock),
		probe:    probeAPIServer(opts.Client),
		inForce:  map[policyID]*policy.Policy{},
		parsed:   map[keySource]cachedParse{},
		stored:   map[configMapRef]storedPolicies{},
	}
	w.publisher = newPublisher(opts.clock, opts.Debounce, opts.MaxDelay, w.publish)
	w.store = &storeWriter{
		client:   opts.Client,
		log:      opts.Logger,
		clock:    opts.clock,
		identity: opts.Identity,
		acked:    opts.SidecarsAcked,
		cached:   w.cachedConfigMap,
		isLeader: w.leader.Load,
		disabled: opts.noStoreWrites,
		metrics:  m,
		kick:     make(chan struct{}, 1),
	}
	if !opts.LeaderElected {
		w.SetLeader(true)
	}
	recorder := opts.Recorder
	if recorder == nil {
		w.broadcaster = NewEventBroadcaster()
		recorder = w.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent})
	}
	w.reporter = newReporter(recorder, opts.Logger)

	set, err := w.newInformerSet()
	if err != nil {
		return nil, err
	}
	w.informers.Store(set)
	return w, nil
}

func (w *Watcher) newInformerSet() (*informerSet, error) {
	namespaces := w.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	return newInformerSet(w.opts.Client, namespaces, w.selector, w.health, w.changed)
}

// Run starts the informers, waits for their caches to sync, hands on the
// first World, and then hands on a new World after each burst of changes
// until ctx is done. It returns nil when ctx ends after the first World, and
// an error when it ends before. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice")
	}
	if w.broadcaster != nil {
		w.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: w.opts.Client.CoreV1().Events("")})
		defer w.broadcaster.Shutdown()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Stop whichever informer set runs last, and wait for it.
	defer func() { w.informers.Load().stop() }()

	set := w.informers.Load()
	set.start(ctx)
	// Waiting for the handlers, not just the caches, means every event of
	// the initial listings has been counted before the first World.
	if !cache.WaitForCacheSync(ctx.Done(), set.synced()...) {
		return fmt.Errorf("watcher: informer caches did not sync: %w", context.Cause(ctx))
	}
	if len(w.opts.Namespaces) == 0 {
		w.opts.Logger.Info("caches synced", "namespaces", "all")
	} else {
		w.opts.Logger.Info("caches synced", "namespaces", w.opts.Namespaces)
	}

	// The caches hold everything seen so far, so the events of the initial
	// listing need no World of their own.
	w.debounce.reset()
	if verdicts, ok := w.emit(w.opts.clock.Now()); ok {
		w.publish(verdicts) // no push before it to wait for
	}
	w.synced.Store(true)
	published := make(chan struct{})
	go func() {
		defer close(published)
		w.publisher.run(ctx)
	}()
	defer func() { <-published }() // before the Event broadcaster shuts down
	stored := make(chan struct{})
	go func() {
		defer close(stored)
		w.store.run(ctx)
	}()
	defer func() { <-stored }()
	recovered := make(chan struct{})
	go func() {
		defer close(recovered)
		w.recoverWatches(ctx)
	}()
	defer func() { <-recovered }() // before the last informer set is stopped
	w.debounce.run(ctx, func(observedAt time.Time) {
		if verdicts, ok := w.emit(observedAt); ok {
			w.publisher.add(verdicts)
		}
	})
	return nil
}

// Synced reports whether the caches have synced and the first World has been
// handed on.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// SetLeader tells the watcher whether this replica leads. A new leader
// first reads the verdicts its predecessor recorded from the status
// annotations, then records only what changed since, and writes the status
// and last valid versions from then on.
func (w *Watcher) SetLeader(leader bool) {
	if w.leader.Swap(leader) == leader {
		return
	}
	if leader {
		w.promoted.Store(true)
		w.metrics.leader.Set(1)
		w.opts.Logger.Info("leading: recording Events and writing policy status", "identity", w.opts.Identity)
		w.debounce.mark() // rebuild, to report and write as the leader
		return
	}
	w.metrics.leader.Set(0)
	w.opts.Logger.Info("following: serving xDS; the leader records Events and writes policy status", "identity", w.opts.Identity)
}

// Leader reports whether this replica leads.
func (w *Watcher) Leader() bool { return w.leader.Load() }

// cachedConfigMap finds a policy ConfigMap in the informer cache.
func (w *Watcher) cachedConfigMap(ref configMapRef) *corev1.ConfigMap {
	for _, s := range w.informers.Load().scopes {
		if cm, err := s.configMaps.ConfigMaps(ref.Namespace).Get(ref.Name); err == nil {
			return cm
		}
	}
	return nil
}

// WatchDown reports since when a Kubernetes watch has been failing; while it
// does, the last World handed on stays in force.
func (w *Watcher) WatchDown() (since time.Time, down bool) { return w.health.down() }

// changed is called by the informers for every relevant event. A Service or
// EndpointSlice of a Service no policy names cannot change any
// translation, so it is counted and dropped: no World, no translation.
func (w *Watcher) changed(kind string, objs ...any) {
	w.metrics.events.WithLabelValues(kind).Inc()
	if kind == kindService || kind == kindEndpointSlice {
		// Even an ignored event changes the next World's Services.
		w.dirty.add(objs...)
	}
	if kind == kindConfigMap && len(objs) == 2 && w.store.echoes(objs[0], objs[1]) {
		return // the leader's own write of what this replica has in force
	}
	if !w.referenced(kind, objs) {
		w.metrics.ignored.WithLabelValues(kind).Inc()
		return
	}
	w.debounce.mark()
}

// referenced reports whether any of objs may matter to a translation.
func (w *Watcher) referenced(kind string, objs []any) bool {
	refs := w.references.Load()
	if refs == nil || kind == kindConfigMap {
		return true // before the first World, everything counts
	}
	for _, obj := range objs {
		if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		key, ok := serviceKeyOf(obj)
		if !ok || (*refs)[key] {
			return true
		}
	}
	return false
}

// serviceKeyOf is "namespace/name" of the Service a Service or EndpointSlice
// belongs to.
func serviceKeyOf(obj any) (string, bool) {
	switch o := obj.(type) {
	case *corev1.Service:
		return o.Namespace + "/" + o.Name, true
	case *discoveryv1.EndpointSlice:
		name, ok := o.Labels[discoveryv1.LabelServiceName]
		return o.Namespace + "/" + name, ok
	}
	return "", false
}

// emit builds a World and hands it on, and returns its verdicts for
// publish; ok is false when no World could be built.
func (w *Watcher) emit(observedAt time.Time) (verdicts builtVerdicts, ok bool) {
	world, verdicts, err := w.buildWorld(observedAt)
	if err != nil {
		// Listing from the informer caches fails only on programming errors;
		// keep the previous World rather than hand on a partial one.
		w.opts.Logger.Error("cannot build world", "error", err)
		return builtVerdicts{}, false
	}
	w.metrics.worlds.Inc()
	w.handedOn.Add(1)
	w.opts.OnWorld(world)
	return verdicts, true
}
