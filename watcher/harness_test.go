package watcher

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// waitTimeout bounds every wait for the watcher; generous because the
// machine is shared. Tests assert what happens, never how fast.
const waitTimeout = 20 * time.Second

// harness runs a Watcher against a fake clientset.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	recorder *record.FakeRecorder
	registry *prometheus.Registry
	watcher  *Watcher
	worlds   chan *translator.World
	done     chan error
	cancel   context.CancelFunc
	// last is the latest World taken from worlds.
	last *translator.World
}

// newHarness creates the watcher; opts.Client, Recorder, Registry, OnWorld
// and Logger are filled in.
// The leader's annotation writes are off: they are asynchronous, and a
// World built from one would be taken for the World of the test's next
// change (newStoreHarness has them on).
func newHarness(t *testing.T, opts Options, objects ...runtime.Object) *harness {
	t.Helper()
	opts.noStoreWrites = true
	return newStoreHarness(t, opts, objects...)
}

// newStoreHarness is newHarness with the leader's annotation writes as
// configured in opts.
func newStoreHarness(t *testing.T, opts Options, objects ...runtime.Object) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		client:   fake.NewClientset(objects...),
		recorder: record.NewFakeRecorder(1000),
		registry: prometheus.NewRegistry(),
		worlds:   make(chan *translator.World, 1000),
	}
	opts.Client = h.client
	opts.Recorder = h.recorder
	opts.Registry = h.registry
	opts.OnWorld = func(w *translator.World) { h.worlds <- w }
	opts.Logger = newTestLogger(t)
	w, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.watcher = w
	return h
}

// start runs the watcher and waits until its watches are established (the
// fake clientset drops events that happen before) and it is synced.
func (h *harness) start(wantWatches int) {
	h.t.Helper()
	watches := h.countWatches()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.watcher.Run(ctx) }()
	h.t.Cleanup(h.stop)
	h.eventually("watches established and first World handed on", func() bool {
		return watches() >= wantWatches && h.watcher.Synced()
	})
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Error("Run did not return after its context ended")
	}
}

// countWatches makes the fake clientset count the watches it serves.
func (h *harness) countWatches() func() int {
	var mu sync.Mutex
	n := 0
	h.client.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		wa, ok := action.(clienttesting.WatchActionImpl)
		if !ok {
			return false, nil, nil
		}
		w, err := h.client.Tracker().Watch(action.GetResource(), action.GetNamespace(), wa.ListOptions)
		if err == nil {
			mu.Lock()
			n++
			mu.Unlock()
		}
		return true, w, err
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// world waits for a World that satisfies cond, skipping earlier ones.
func (h *harness) world(what string, cond func(*translator.World) bool) *translator.World {
	h.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case w := <-h.worlds:
			h.last = w
			if cond(w) {
				return w
			}
		case <-timeout:
			h.t.Fatalf("timed out waiting for a World: %s", what)
			return nil
		}
	}
}

// events returns the Events recorded so far, once the verdicts of every
// World handed on have been reported: Events are recorded after the World
// they belong to is handed on.
func (h *harness) events() []string {
	h.t.Helper()
	h.eventually("verdicts of the Worlds handed on reported", func() bool {
		return h.watcher.published.Load() == h.watcher.handedOn.Load()
	})
	return drain(h.recorder)
}

func newTestLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "watcher", Level: hclog.Debug, Output: testWriter{t}})
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// policyOf finds a policy in a World.
func policyOf(w *translator.World, ns, name string) *policy.Policy {
	for _, p := range w.Policies {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}

// percentOf returns the ppm of the policy's first mirror, -1 without the
// policy.
func percentOf(w *translator.World, ns, name string) int64 {
	p := policyOf(w, ns, name)
	if p == nil || len(p.Mirrors) == 0 {
		return -1
	}
	return int64(p.Mirrors[0].PartsPerMillion)
}

func policyNames(w *translator.World) []string {
	var out []string
	for _, p := range w.Policies {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

// filterEvents keeps the events containing all of substrings.
func filterEvents(events []string, substrings ...string) []string {
	var out []string
next:
	for _, e := range events {
		for _, s := range substrings {
			if !strings.Contains(e, s) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("metric is neither counter nor gauge: %v", &out)
	return 0
}

// gatheredSeries counts the series of the named families in a registry.
func gatheredSeries(t *testing.T, g prometheus.Gatherer, names ...string) int {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	n := 0
	for _, f := range families {
		if slices.Contains(names, f.GetName()) {
			n += len(f.GetMetric())
		}
	}
	return n
}

// update applies a change and returns the first World built after it, which
// must already reflect it.
func (h *harness) update(what string, change func(ctx context.Context) error) *translator.World {
	h.t.Helper()
	before := time.Now()
	if err := change(context.Background()); err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
	return h.world(what, func(w *translator.World) bool { return !w.ObservedAt.Before(before) })
}

func (h *harness) setPolicies(ns, name string, data map[string]string) *translator.World {
	h.t.Helper()
	return h.update("update ConfigMap "+name, func(ctx context.Context) error {
		_, err := h.client.CoreV1().ConfigMaps(ns).Update(ctx, policyConfigMap(ns, name, data), metav1.UpdateOptions{})
		return err
	})
}

// wantEvents checks the events, in order, each by substrings.
func wantEvents(t *testing.T, got []string, want ...[]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, subs := range want {
		for _, s := range subs {
			if !strings.Contains(got[i], s) {
				t.Errorf("event %d = %q, want it to contain %q", i, got[i], s)
			}
		}
	}
}
