package watcher

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// drain returns the Events recorded so far.
func drain(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func checkEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestReporterReportsEachChangeOnce(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	r := newReporter(rec, hclog.NewNullLogger())
	cms := configMapFinder([]*corev1.ConfigMap{policyConfigMap(testNS, "a", nil)})
	world := testWorld()
	keysWith := func(p ...*policy.Policy) []parsedKey { return []parsedKey{pkey("a", "p.yaml", p)} }

	var state map[policyID]*policy.Policy = inForce()
	step := func(keys []parsedKey, w *translator.World) []string {
		o := reconcile(state, keys, w)
		r.report(o, state, cms, true)
		state = o.inForce
		return drain(rec)
	}

	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 0, "p1", 250000)), world),
		"Normal PolicyApplied policy p1 applied: copies 25% of")
	// The same content again, and moved within its list: nothing new.
	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 0, "p1", 250000)), world))
	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 3, "p1", 250000)), world))
	// A changed percent is reported.
	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 0, "p1", 500000)), world),
		"Normal PolicyApplied policy p1 applied: copies 50% of")
	// An invalid edit is reported once, however often the World is rebuilt.
	bad := []parsedKey{pkey("a", "p.yaml", nil, policyErr("a", "p.yaml", 0, "p1", "mirrors[0].percent", "must be at most 100"))}
	checkEvents(t, step(bad, world), "Warning PolicyRejected ")
	checkEvents(t, step(bad, world))
	if p := state[policyID{testNS, "p1"}]; p == nil || p.Mirrors[0].PartsPerMillion != 500000 {
		t.Fatalf("last valid version not in force: %+v", p)
	}
	// Fixing it back to the version in force is reported again.
	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 0, "p1", 500000)), world),
		"Normal PolicyApplied policy p1 applied: copies 50% of")
	// Removal is reported on the ConfigMap.
	checkEvents(t, step(nil, world),
		"Normal PolicyRemoved policy p1 removed: key p.yaml no longer defines it")
	// Defining it again is new.
	checkEvents(t, step(keysWith(validPolicy("a", "p.yaml", 0, "p1", 500000)), world),
		"Normal PolicyApplied policy p1 applied")
}

func TestReporterTargetMissingThenApplied(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	r := newReporter(rec, hclog.NewNullLogger())
	cms := configMapFinder([]*corev1.ConfigMap{policyConfigMap(testNS, "a", nil)})
	keys := []parsedKey{pkey("a", "p.yaml", []*policy.Policy{mirrorPolicy("a", "p.yaml", 0, "p1", "staging", 10000)})}

	state := inForce()
	step := func(w *translator.World) []string {
		o := reconcile(state, keys, w)
		r.report(o, state, cms, true)
		state = o.inForce
		return drain(rec)
	}
	world := testWorld()
	checkEvents(t, step(world), "Warning TargetMissing ")
	checkEvents(t, step(world))
	if state[policyID{testNS, "p1"}] == nil {
		t.Fatal("policy with a missing target is not in force")
	}
	world = testWorld()
	world.Services["ns/staging"] = &translator.Service{Namespace: testNS, Name: "staging",
		Ports: []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 80, Protocol: "TCP"}}}
	checkEvents(t, step(world), "Normal PolicyApplied policy p1 applied: copies 1% of web:http to ns/staging:http")
	checkEvents(t, step(world))
}

func TestReporterSkipsEventsForDeletedConfigMap(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	r := newReporter(rec, hclog.NewNullLogger())
	p := validPolicy("a", "p.yaml", 0, "p1", 250000)
	noConfigMaps := configMapFinder(nil)
	r.report(reconcile(inForce(p), nil, testWorld()), inForce(p), noConfigMaps, true)
	checkEvents(t, drain(rec))
}
