package watcher

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// watchHealth tracks whether the informers' list and watch calls reach the
// API server, per object kind. It logs once when the first kind goes down
// and once when all are back, not once per retry.
type watchHealth struct {
	gauge  *prometheus.GaugeVec
	logger hclog.Logger
	clock  clock.Clock
	// wake is signalled when a kind goes down, so the recovery loop starts
	// probing the API server.
	wake chan struct{}

	mu        sync.Mutex
	up        map[string]bool
	downSince time.Time // zero while every kind is up
}

func newWatchHealth(gauge *prometheus.GaugeVec, logger hclog.Logger, clk clock.Clock) *watchHealth {
	h := &watchHealth{gauge: gauge, logger: logger, clock: clk, wake: make(chan struct{}, 1), up: map[string]bool{}}
	for _, kind := range allKinds {
		h.up[kind] = false
		gauge.WithLabelValues(kind).Set(0)
	}
	return h
}

// failed records a failed list or watch request of kind.
func (h *watchHealth) failed(kind string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up[kind] && !h.downSince.IsZero() {
		return
	}
	h.up[kind] = false
	h.gauge.WithLabelValues(kind).Set(0)
	if h.downSince.IsZero() {
		h.downSince = h.clock.Now()
		h.logger.Warn("kubernetes watch down: serving the last known config until the API server answers again", "kind", kind, "error", err)
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// succeeded records that kind's informer got data from the API server.
func (h *watchHealth) succeeded(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up[kind] {
		return
	}
	h.markUpLocked(kind)
}

// restored records that every kind's informer has listed afresh.
func (h *watchHealth) restored() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, kind := range allKinds {
		h.markUpLocked(kind)
	}
}

func (h *watchHealth) markUpLocked(kind string) {
	h.up[kind] = true
	h.gauge.WithLabelValues(kind).Set(1)
	if h.downSince.IsZero() {
		return
	}
	for _, up := range h.up {
		if !up {
			return
		}
	}
	h.logger.Info("kubernetes watches restored", "down_for", h.clock.Since(h.downSince).Round(time.Millisecond).String())
	h.downSince = time.Time{}
}

// down reports since when some kind's watch has been down.
func (h *watchHealth) down() (since time.Time, isDown bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.downSince, !h.downSince.IsZero()
}

// trackedListWatch reports the outcome of every list and watch of one kind
// to a watchHealth. A watch request that succeeds does not count as up: after
// an API server restart it may deliver only a "too old resource version"
// error, so only a delivered object or bookmark does.
type trackedListWatch struct {
	inner  cache.ListerWatcherWithContext
	kind   string
	health *watchHealth
}

func (t *trackedListWatch) ListWithContext(ctx context.Context, options metav1.ListOptions) (runtime.Object, error) {
	obj, err := t.inner.ListWithContext(ctx, options)
	t.record(ctx, err)
	if err == nil {
		t.health.succeeded(t.kind)
	}
	return obj, err
}

func (t *trackedListWatch) WatchWithContext(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
	w, err := t.inner.WatchWithContext(ctx, options)
	t.record(ctx, err)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if e.Type != watch.Error {
			t.health.succeeded(t.kind)
		}
		return e, true
	}), nil
}

// record reports a failed request, unless it failed because the informer
// is stopping.
func (t *trackedListWatch) record(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		t.health.failed(t.kind, err)
	}
}

// List and Watch serve callers without a context.
func (t *trackedListWatch) List(options metav1.ListOptions) (runtime.Object, error) {
	return t.ListWithContext(context.Background(), options)
}

func (t *trackedListWatch) Watch(options metav1.ListOptions) (watch.Interface, error) {
	return t.WatchWithContext(context.Background(), options)
}
