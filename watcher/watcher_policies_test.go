package watcher

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shadowplane/shadowplane/translator"
)

func TestWatcherPolicyLifecycle(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "25"), mirrorEntry("p2", "web-shadow", "10")),
	}))
	h := newHarness(t, Options{}, objects...)
	h.start(3)
	w := h.world("first", func(*translator.World) bool { return true })
	if percentOf(w, "default", "p1") != 250000 || percentOf(w, "default", "p2") != 100000 {
		t.Fatalf("first World policies: %v", policyNames(w))
	}
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy p1 applied"}, []string{"Normal PolicyApplied policy p2 applied"})

	steps := []struct {
		name         string
		data         string
		wantPercents map[string]int64 // -1: not in force
		wantEvents   [][]string
		wantInvalid  float64
	}{
		{
			name:         "valid edit applies",
			data:         policiesYAML(mirrorEntry("p1", "web-shadow", "50"), mirrorEntry("p2", "web-shadow", "10")),
			wantPercents: map[string]int64{"p1": 500000, "p2": 100000},
			wantEvents:   [][]string{{"Normal PolicyApplied policy p1 applied: copies 50% of"}},
		},
		{
			name:         "invalid edit keeps the last valid version",
			data:         policiesYAML(mirrorEntry("p1", "web-shadow", "150"), mirrorEntry("p2", "web-shadow", "10")),
			wantPercents: map[string]int64{"p1": 500000, "p2": 100000},
			wantEvents: [][]string{{"Warning PolicyRejected", `configmap "default/mirrors" key "policies.yaml" policy "p1": mirrors[0].percent:`,
				"; the last valid version stays in force"}},
			wantInvalid: 1,
		},
		{
			name:         "YAML syntax error keeps every policy of the key",
			data:         "policies:\n- name: p1\n  service: [unclosed\n",
			wantPercents: map[string]int64{"p1": 500000, "p2": 100000},
			wantEvents: [][]string{{"Warning PolicyRejected", `configmap "default/mirrors" key "policies.yaml": invalid YAML`,
				"; the policies last read from this key stay in force"}},
			wantInvalid: 1,
		},
		{
			name:         "fix applies and a policy left out is removed",
			data:         policiesYAML(mirrorEntry("p1", "web-shadow", "60")),
			wantPercents: map[string]int64{"p1": 600000, "p2": -1},
			wantEvents: [][]string{
				{"Normal PolicyApplied policy p1 applied: copies 60% of"},
				{"Normal PolicyRemoved policy p2 removed: key policies.yaml no longer defines it"},
			},
		},
		{
			name:         "same content again reports nothing",
			data:         policiesYAML(mirrorEntry("p1", "web-shadow", "60")) + "# a comment\n",
			wantPercents: map[string]int64{"p1": 600000, "p2": -1},
		},
	}
	for _, step := range steps {
		w := h.setPolicies("default", "mirrors", map[string]string{"policies.yaml": step.data})
		for name, want := range step.wantPercents {
			if got := percentOf(w, "default", name); got != want {
				t.Errorf("%s: %s copies %d ppm, want %d", step.name, name, got, want)
			}
		}
		wantEvents(t, h.events(), step.wantEvents...)
		if got := metricValue(t, h.watcher.metrics.policies.WithLabelValues("invalid")); got != step.wantInvalid {
			t.Errorf(`%s: shadowplane_policies{state="invalid"} = %v, want %v`, step.name, got, step.wantInvalid)
		}
	}

	w = h.update("delete ConfigMap", func(ctx context.Context) error {
		return h.client.CoreV1().ConfigMaps("default").Delete(ctx, "mirrors", metav1.DeleteOptions{})
	})
	if len(w.Policies) != 0 {
		t.Errorf("after deleting the ConfigMap, policies = %v, want none", policyNames(w))
	}
	// The ConfigMap is gone, so the removal is only logged.
	wantEvents(t, h.events())
}

func TestWatcherDuplicateAcrossConfigMaps(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "b-team", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "40")),
	}))
	h := newHarness(t, Options{}, objects...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	h.events()

	w := h.update("create a-team", func(ctx context.Context) error {
		_, err := h.client.CoreV1().ConfigMaps("default").Create(ctx, policyConfigMap("default", "a-team", map[string]string{
			"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "10")),
		}), metav1.CreateOptions{})
		return err
	})
	if p := policyOf(w, "default", "p1"); p == nil || p.Source.ConfigMap != "a-team" || p.Mirrors[0].PartsPerMillion != 100000 {
		t.Fatalf("p1 in force = %+v, want the a-team version", p)
	}
	wantEvents(t, h.events(),
		[]string{"Normal PolicyApplied policy p1 applied: copies 10% of"},
		[]string{"Warning PolicyRejected", `configmap "default/b-team"`, `policy name "p1" is already used in this namespace by ConfigMap a-team key policies.yaml`})

	w = h.update("delete a-team", func(ctx context.Context) error {
		return h.client.CoreV1().ConfigMaps("default").Delete(ctx, "a-team", metav1.DeleteOptions{})
	})
	if p := policyOf(w, "default", "p1"); p == nil || p.Source.ConfigMap != "b-team" {
		t.Fatalf("p1 in force = %+v, want the b-team version", p)
	}
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy p1 applied: copies 40% of"})
}

func TestWatcherReferencesFollowServices(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "staging", "5")),
	}))
	h := newHarness(t, Options{}, objects...)
	h.start(3)
	w := h.world("first", func(*translator.World) bool { return true })
	if policyOf(w, "default", "p1") == nil {
		t.Fatal("policy with a missing target is not in force")
	}
	wantEvents(t, h.events(), []string{"Warning TargetMissing", `mirrors[0].service: Service "default/staging" does not exist`})

	h.update("create the target", func(ctx context.Context) error {
		_, err := h.client.CoreV1().Services("default").Create(ctx, httpService("default", "staging"), metav1.CreateOptions{})
		return err
	})
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy p1 applied: copies 5% of web:http to default/staging:http"})

	// Renaming the port the policy uses makes its references invalid; the
	// version in force stays.
	w = h.update("rename the port of web", func(ctx context.Context) error {
		_, err := h.client.CoreV1().Services("default").Update(ctx,
			service("default", "web", svcPort("main", 80, intstr.FromInt32(8080))), metav1.UpdateOptions{})
		return err
	})
	if policyOf(w, "default", "p1") == nil {
		t.Error("policy left force when its Service lost the port; want the last valid version kept")
	}
	wantEvents(t, h.events(), []string{"Warning PolicyRejected", `port: Service "default/web" has no port "http"`, "the last valid version stays in force"})
}

func TestWatcherIgnoresUnlabelledConfigMaps(t *testing.T) {
	h := newHarness(t, Options{}, baseObjects("default")...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	// The fake clientset's watch ignores label selectors, like a proxy
	// that dropped them might; the watcher must still ignore the object.
	if _, err := h.client.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "unlabelled"},
		Data:       map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p-unlabelled", "web-shadow", "1"))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := h.update("create labelled ConfigMap", func(ctx context.Context) error {
		_, err := h.client.CoreV1().ConfigMaps("default").Create(ctx, policyConfigMap("default", "labelled", map[string]string{
			"policies.yml": policiesYAML(mirrorEntry("p1", "web-shadow", "1")),
		}), metav1.CreateOptions{})
		return err
	})
	if got := policyNames(w); !slices.Equal(got, []string{"default/p1"}) {
		t.Errorf("policies = %v, want only default/p1", got)
	}
}

func TestWatcherDefaultRecorderWritesEventsToAPI(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "25")),
	}))
	client := fake.NewClientset(objects...)
	w, err := New(Options{Client: client, OnWorld: func(*translator.World) {}, Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	deadline := time.Now().Add(waitTimeout)
	for {
		list, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 0 {
			e := list.Items[0]
			if e.Reason != ReasonPolicyApplied || e.InvolvedObject.Kind != "ConfigMap" || e.InvolvedObject.Name != "mirrors" || e.Source.Component != EventComponent {
				t.Errorf("event = reason %q on %s %s from %q; want PolicyApplied on ConfigMap mirrors from %q",
					e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Source.Component, EventComponent)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no Event written to the API")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
