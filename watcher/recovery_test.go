package watcher

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/translator"
)

// outage makes a fake clientset behave like an API server that goes away:
// while down, open watches end and every list, watch and probe fails.
type outage struct {
	down    atomic.Bool
	mu      sync.Mutex
	watches []watch.Interface
}

var errRefused = errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")

func (o *outage) install(h *harness) {
	h.client.PrependReactor("list", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		if o.down.Load() {
			return true, nil, errRefused
		}
		return false, nil, nil
	})
	h.client.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		if o.down.Load() {
			return true, nil, errRefused
		}
		wa, ok := action.(clienttesting.WatchActionImpl)
		if !ok {
			return false, nil, nil
		}
		w, err := h.client.Tracker().Watch(action.GetResource(), action.GetNamespace(), wa.ListOptions)
		if err == nil {
			o.mu.Lock()
			o.watches = append(o.watches, w)
			o.mu.Unlock()
		}
		return true, w, err
	})
	h.watcher.probe = func(context.Context) error {
		if o.down.Load() {
			return errRefused
		}
		return nil
	}
}

func (o *outage) begin() {
	o.down.Store(true)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.watches {
		w.Stop()
	}
	o.watches = nil
}

func TestWatcherRecoversFromAPIServerOutage(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "25")),
	}))
	h := newHarness(t, Options{}, objects...)
	var logs testtools.SyncBuffer
	h.watcher.health.logger = hclog.New(&hclog.LoggerOptions{Output: &logs})
	var o outage
	o.install(h)
	// Not h.start: its watch reactor would serve the watches before ours.
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.watcher.Run(ctx) }()
	t.Cleanup(h.stop)
	h.eventually("synced with every watch open", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.watches) >= 3 && h.watcher.Synced()
	})
	h.world("first", func(w *translator.World) bool { return percentOf(w, "default", "p1") == 250000 })
	gauges := func() []float64 {
		var out []float64
		for _, kind := range allKinds {
			out = append(out, metricValue(t, h.watcher.metrics.watchUp.WithLabelValues(kind)))
		}
		return out
	}
	allAre := func(v float64) func() bool {
		return func() bool {
			for _, g := range gauges() {
				if g != v {
					return false
				}
			}
			return true
		}
	}
	h.eventually("every watch up after the initial sync", allAre(1))
	before := h.watcher.informers.Load()

	o.begin()
	h.eventually("every watch down while the API server is away", allAre(0))
	if _, down := h.watcher.WatchDown(); !down {
		t.Fatal("WatchDown reports up during the outage")
	}
	// A change made while the watches are down reaches the World once they
	// are back, from the fresh informers.
	if _, err := h.client.CoreV1().ConfigMaps("default").Update(context.Background(), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "60")),
	}), metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ConfigMap: %v", err)
	}
	o.down.Store(false)
	h.world("change made during the outage", func(w *translator.World) bool { return percentOf(w, "default", "p1") == 600000 })
	h.eventually("every watch up after the outage", allAre(1))
	if _, down := h.watcher.WatchDown(); down {
		t.Error("WatchDown reports down after the outage")
	}
	if h.watcher.informers.Load() == before {
		t.Error("the informers were not replaced after the outage")
	}
	if got := strings.Count(logs.String(), "kubernetes watch down"); got != 1 {
		t.Errorf("%d log lines for the watch going down, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "kubernetes watches restored"); got != 1 {
		t.Errorf("%d log lines for the watches coming back, want 1:\n%s", got, logs.String())
	}
}
