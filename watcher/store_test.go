package watcher

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// richPolicyYAML uses every kind of field a policy has, so the round trip
// through the annotation covers them all.
const richPolicyYAML = `policies:
- name: rich
  service: web
  port: http
  match:
    pathPrefix: /api/
    methods: [POST, GET]
    headers:
    - {name: x-tenant, exact: beta}
    - {name: x-trace, present: true}
  mirrors:
  - service: web-shadow
    port: http
    percent: 12.3456
  - url: http://10.16.0.147
    percent: 1.5
  copyHeaders:
    remove: [authorization, cookie]
    set: {x-copy: "1"}
  markCopies: false
  guard:
    connectTimeout: 100ms
    maxConnections: 8
`

// TestLastValidRoundTrip: a policy read back from the annotation is the
// very value the parser made, so every replica translates it alike.
func TestLastValidRoundTrip(t *testing.T) {
	parsed, errs := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(richPolicyYAML),
		policy.ParseOptions{AllowedURLHosts: []string{"10.16.0.147"}})
	for _, e := range errs {
		if !e.Warning {
			t.Fatalf("parse: %v", e)
		}
	}
	raw, err := encodeLastValid(parsed)
	if err != nil {
		t.Fatal(err)
	}
	cm := policyConfigMap("default", "mirrors", nil)
	cm.Annotations = map[string]string{AnnotationLastValid: raw}
	got, err := decodeLastValid(cm)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, parsed) {
		t.Errorf("round trip changed the policies:\n got %+v\nwant %+v", got, parsed)
	}

	// Another ConfigMap's entries are not adopted.
	other := policyConfigMap("default", "other", nil)
	other.Annotations = cm.Annotations
	if got, _ := decodeLastValid(other); len(got) != 0 {
		t.Errorf("ConfigMap other adopted %d policies of ConfigMap mirrors", len(got))
	}
}

// withAnnotations sets annotations on a ConfigMap object.
func withAnnotations(obj runtime.Object, annotations map[string]string) runtime.Object {
	obj.(*corev1.ConfigMap).Annotations = annotations
	return obj
}

// storedVersion renders p1 at percent as the leader stores it.
func storedVersion(t *testing.T, percent string) string {
	t.Helper()
	parsed, _ := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(policiesYAML(mirrorEntry("p1", "web-shadow", percent))), policy.ParseOptions{})
	raw, err := encodeLastValid(parsed)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestWatcherStartsFromStoredLastValid: a replica that starts while a
// policy is invalid serves the stored last valid version, and a follower
// records no Event.
func TestWatcherStartsFromStoredLastValid(t *testing.T) {
	cm := withAnnotations(policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "150")),
	}), map[string]string{AnnotationLastValid: storedVersion(t, "40")})
	h := newHarness(t, Options{LeaderElected: true}, append(baseObjects("default"), cm)...)
	h.start(3)
	w := h.world("first", func(*translator.World) bool { return true })
	if got := percentOf(w, "default", "p1"); got != 400000 {
		t.Errorf("p1 copies %d ppm, want the stored 400000", got)
	}
	if got := h.events(); len(got) != 0 {
		t.Errorf("a follower recorded Events: %v", got)
	}
}

// TestWatcherLeaderWritesStatusOnce: the leader writes the last valid
// versions and a status per policy; a new leader reads which verdicts its
// predecessor recorded and records none of them again.
func TestWatcherLeaderWritesStatusOnce(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "40")),
	}))
	h := newStoreHarness(t, Options{SidecarsAcked: func() map[string]int { return map[string]int{"default/web": 3, "default/other": 5} }, Identity: "replica-a"}, objects...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy p1 applied"})

	var status ConfigMapStatus
	h.eventually("status written", func() bool {
		cm, err := h.client.CoreV1().ConfigMaps("default").Get(context.Background(), "mirrors", metav1.GetOptions{})
		if err != nil || cm.Annotations[AnnotationLastValid] != storedVersion(t, "40") {
			return false
		}
		return json.Unmarshal([]byte(cm.Annotations[AnnotationStatus]), &status) == nil
	})
	want := []PolicyStatus{{Key: "policies.yaml", Name: "p1", State: StateApplied, Reason: ReasonPolicyApplied, SidecarsAcked: 3}}
	if len(status.Policies) != 1 || status.CountedBy != "replica-a" || len(status.Verdicts) != 1 {
		t.Fatalf("status = %+v", status)
	}
	got := status.Policies[0]
	got.Message, got.AppliedVersion = "", ""
	if got != want[0] || status.Policies[0].AppliedVersion == "" {
		t.Errorf("policy status = %+v, want %+v with a version", status.Policies[0], want[0])
	}
	// The leader's own write reaches its informer, and builds no World:
	// it stores what every replica already has in force.
	h.eventually("own write in the informer cache", func() bool {
		cm := h.watcher.cachedConfigMap(configMapRef{"default", "mirrors"})
		return cm != nil && cm.Annotations[AnnotationLastValid] == storedVersion(t, "40")
	})
	time.Sleep(100 * time.Millisecond)
	if got := metricValue(t, h.watcher.metrics.worlds); got != 1 {
		t.Errorf("shadowplane_worlds_total = %v after the leader's own write, want 1", got)
	}
	stored, err := h.client.CoreV1().ConfigMaps("default").Get(context.Background(), "mirrors", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.stop()

	// A second replica, started as a follower on what the first left,
	// takes over: it records nothing already recorded, then an edit once.
	h2 := newStoreHarness(t, Options{LeaderElected: true, Identity: "replica-b"}, append(baseObjects("default"), stored)...)
	h2.start(3)
	h2.world("first", func(*translator.World) bool { return true })
	h2.watcher.SetLeader(true)
	h2.eventually("status counted by replica-b", func() bool {
		cm, err := h2.client.CoreV1().ConfigMaps("default").Get(context.Background(), "mirrors", metav1.GetOptions{})
		return err == nil && json.Unmarshal([]byte(cm.Annotations[AnnotationStatus]), &status) == nil && status.CountedBy == "replica-b"
	})
	if got := h2.events(); len(got) != 0 {
		t.Errorf("the new leader recorded again what the old one had: %v", got)
	}
	h2.setPolicies("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "150"))})
	h2.eventually("one rejection", func() bool {
		got := h2.events()
		if len(got) > 1 {
			t.Errorf("more than one Event for one verdict: %v", got)
		}
		return len(got) == 1
	})
}

// TestStoreEncodingsReuseOnlyWhatIsUnchanged: across builds the remembered
// encodings equal fresh ones whether the policies are the same objects, in
// another order, or partly replaced, and a build reuses only what the
// previous build encoded.
func TestStoreEncodingsReuseOnlyWhatIsUnchanged(t *testing.T) {
	parse := func(percent string) []*policy.Policy {
		yaml := strings.ReplaceAll(twoPolicyYAML, "PERCENT", percent)
		ps, errs := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(yaml), policy.ParseOptions{})
		if len(errs) != 0 {
			t.Fatalf("parse: %v", errs)
		}
		return ps
	}
	first := parse("10")
	changed := parse("20")
	ref := configMapRef{"default", "mirrors"}
	steps := []struct {
		name     string
		policies []*policy.Policy
		reused   bool
	}{
		{"first build", first, false},
		{"same objects", first, true},
		{"same objects, other order", []*policy.Policy{first[1], first[0]}, true},
		{"one policy replaced", []*policy.Policy{first[0], changed[1]}, false},
		{"equal content, new objects", parse("10"), false},
	}
	var enc storeEncodings
	for _, step := range steps {
		enc = enc.nextBuild()
		got, err := enc.lastValid(ref, step.policies)
		if err != nil {
			t.Fatal(err)
		}
		want, err := encodeLastValid(step.policies)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: lastValid = %s, want %s", step.name, got, want)
		}
		prev, ok := enc.prev.lastValidOf(ref)
		// A reused encoding is the very entry of the previous build.
		if reused := ok && &prev[0] == &enc.next.lastValid[ref].sorted[0]; reused != step.reused {
			t.Errorf("%s: reused the previous encoding = %v, want %v", step.name, reused, step.reused)
		}
		for _, p := range step.policies {
			if b := enc.json(p); string(b) != string(policyJSON(p)) {
				t.Errorf("%s: json(%s) = %s, want %s", step.name, p.Name, b, policyJSON(p))
			}
			if v := enc.version(p); v != computePolicyVersion(p) {
				t.Errorf("%s: version(%s) = %s, want %s", step.name, p.Name, v, computePolicyVersion(p))
			}
		}
	}
}

const twoPolicyYAML = `policies:
- name: first
  service: shop
  port: http
  mirrors:
  - service: shop-shadow
    port: http
    name: shadow
    percent: 5
- name: second
  service: cart
  port: http
  mirrors:
  - service: cart-shadow
    port: http
    name: shadow
    percent: PERCENT
`
