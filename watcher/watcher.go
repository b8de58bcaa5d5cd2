package watcher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/policy"
)

// Watcher watches Services, EndpointSlices and policy ConfigMaps and hands
// a new translator.World to Options.OnWorld after each burst of changes.
type Watcher struct {
	opts     Options
	selector labels.Selector
	scopes   []*scope
	debounce *debouncer
	metrics  *metrics
	reporter *reporter
	// broadcaster sends Events to the API; nil when Options.Recorder was
	// given.
	broadcaster record.EventBroadcaster

	started atomic.Bool
	synced  atomic.Bool

	// Owned by the goroutine in Run.
	inForce map[policyID]*policy.Policy
	parsed  map[keySource]cachedParse
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
		inForce:  map[policyID]*policy.Policy{},
		parsed:   map[keySource]cachedParse{},
	}
	recorder := opts.Recorder
	if recorder == nil {
		w.broadcaster = newEventBroadcaster()
		recorder = w.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent})
	}
	w.reporter = newReporter(recorder, opts.Logger)

	namespaces := opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		s, err := newScope(opts.Client, ns, selector, w.changed)
		if err != nil {
			return nil, err
		}
		w.scopes = append(w.scopes, s)
	}
	return w, nil
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
	for _, s := range w.scopes {
		for _, f := range s.factories {
			defer f.Shutdown() // waits for the informers, which stop with ctx
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	for _, s := range w.scopes {
		for _, f := range s.factories {
			f.Start(ctx.Done())
		}
	}
	var synced []cache.InformerSynced
	for _, s := range w.scopes {
		synced = append(synced, s.handlersSynced...)
	}
	// Waiting for the handlers, not just the caches, means every event of
	// the initial listings has been counted before the first World.
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
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
	w.emit(w.opts.clock.Now())
	w.synced.Store(true)
	w.debounce.run(ctx, w.emit)
	return nil
}

// Synced reports whether the caches have synced and the first World has been
// handed on.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// changed is called by the informers for every relevant event.
func (w *Watcher) changed(kind string) {
	w.metrics.events.WithLabelValues(kind).Inc()
	w.debounce.mark()
}

// emit builds a World and hands it on.
func (w *Watcher) emit(observedAt time.Time) {
	world, err := w.buildWorld(observedAt)
	if err != nil {
		// Listing from the informer caches fails only on programming errors;
		// keep the previous World rather than hand on a partial one.
		w.opts.Logger.Error("cannot build world", "error", err)
		return
	}
	w.metrics.worlds.Inc()
	w.opts.OnWorld(world)
}
