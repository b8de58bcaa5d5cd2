package watcher

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/shadowplane/shadowplane/translator"
)

func TestWatcherFirstWorld(t *testing.T) {
	objects := append(baseObjects("default"),
		policyConfigMap("default", "mirrors", map[string]string{
			"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "25")),
			"notes.txt":     "not a policy key",
		}),
		// Unlabelled: its policies are ignored.
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "unlabelled"},
			Data:       map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p-unlabelled", "web-shadow", "1"))},
		},
	)
	h := newHarness(t, Options{}, objects...)
	if h.watcher.Synced() {
		t.Fatal("Synced() before Run")
	}
	h.start(3)

	w := h.world("first", func(*translator.World) bool { return true })
	if w.ObservedAt.IsZero() {
		t.Error("first World has no ObservedAt")
	}
	wantServices := map[string]*translator.Service{
		"default/web": {Namespace: "default", Name: "web",
			Ports: []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Endpoints: []translator.Endpoint{
				{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080}},
				{Address: "10.0.0.2", Ports: map[string]int32{"http": 8080}},
			}},
		"default/web-shadow": {Namespace: "default", Name: "web-shadow",
			Ports: []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}}},
	}
	if diff := cmp.Diff(wantServices, w.Services); diff != "" {
		t.Errorf("Services mismatch (-want +got):\n%s", diff)
	}
	if got := policyNames(w); !slices.Equal(got, []string{"default/p1"}) {
		t.Errorf("policies = %v, want [default/p1]", got)
	}
	if got := percentOf(w, "default", "p1"); got != 250000 {
		t.Errorf("p1 copies %d ppm, want 250000", got)
	}
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy p1 applied: copies 25% of web:http to default/web-shadow:http"})
	if got := metricValue(t, h.watcher.metrics.worlds); got != 1 {
		t.Errorf("shadowplane_worlds_total = %v, want 1", got)
	}
	if got := metricValue(t, h.watcher.metrics.policies.WithLabelValues("valid")); got != 1 {
		t.Errorf(`shadowplane_policies{state="valid"} = %v, want 1`, got)
	}
	// The metrics are registered under their documented names.
	if n := gatheredSeries(t, h.registry, "shadowplane_policies", "shadowplane_watcher_events_total", "shadowplane_worlds_total"); n != 8 {
		t.Errorf("gathered %d series, want 8", n)
	}
}

func TestRunTwice(t *testing.T) {
	h := newHarness(t, Options{}, baseObjects("default")...)
	h.start(3)
	if err := h.watcher.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}

func TestRunEndsBeforeSync(t *testing.T) {
	h := newHarness(t, Options{})
	h.client.PrependReactor("list", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.watcher.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not sync") {
		t.Errorf("Run = %v, want a sync error", err)
	}
	if h.watcher.Synced() {
		t.Error("Synced() after a failed sync")
	}
	if len(h.worlds) != 0 {
		t.Error("a World was handed on without synced caches")
	}
}

func TestNewValidatesOptions(t *testing.T) {
	client := fake.NewClientset()
	onWorld := func(*translator.World) {}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no client", Options{OnWorld: onWorld}, "Client is required"},
		{"no OnWorld", Options{Client: client}, "OnWorld is required"},
		{"bad selector", Options{Client: client, OnWorld: onWorld, PolicyLabel: "a b c"}, `policy label selector "a b c"`},
		{"empty namespace", Options{Client: client, OnWorld: onWorld, Namespaces: []string{"a", ""}}, "empty name"},
		{"namespace with a space", Options{Client: client, OnWorld: onWorld, Namespaces: []string{"team a"}}, `namespace "team a"`},
		{"namespace in capitals", Options{Client: client, OnWorld: onWorld, Namespaces: []string{"Team-A"}}, `namespace "Team-A"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name                  string
		opts                  Options
		wantLabel             string
		wantDebounce, wantMax time.Duration
		wantNamespaces        []string
	}{
		{"zero values", Options{}, DefaultPolicyLabel, DefaultDebounce, DefaultMaxDelay, []string{}},
		{"MaxDelay raised to Debounce", Options{Debounce: time.Second, PolicyLabel: "team=x", Namespaces: []string{"b", "a", "b"}},
			"team=x", time.Second, time.Second, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Client = fake.NewClientset()
			tt.opts.OnWorld = func(*translator.World) {}
			w, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := w.opts
			if got.PolicyLabel != tt.wantLabel || got.Debounce != tt.wantDebounce || got.MaxDelay != tt.wantMax || !slices.Equal(got.Namespaces, tt.wantNamespaces) {
				t.Errorf("options = label %q debounce %v max %v namespaces %v; want %q %v %v %v",
					got.PolicyLabel, got.Debounce, got.MaxDelay, got.Namespaces, tt.wantLabel, tt.wantDebounce, tt.wantMax, tt.wantNamespaces)
			}
		})
	}
}
