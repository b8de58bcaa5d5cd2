package watcher

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// Hand-built parse results keep these tests about the reconcile rules, not
// about the YAML schema (watcher_test.go covers the real parser end to end).

const testNS = "ns"

func testWorld() *translator.World {
	http := []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}}
	return &translator.World{Services: map[string]*translator.Service{
		"ns/web":        {Namespace: testNS, Name: "web", Ports: http},
		"ns/web-shadow": {Namespace: testNS, Name: "web-shadow", Ports: http},
	}}
}

// mirrorPolicy copies ppm of web:http to the Service target.
func mirrorPolicy(cm, key string, index int, name, target string, ppm uint32) *policy.Policy {
	return &policy.Policy{
		Namespace:  testNS,
		Name:       name,
		Source:     policy.Source{ConfigMap: cm, Key: key, Index: index},
		Service:    "web",
		Port:       policy.PortRef{Name: "http"},
		MarkCopies: true,
		Mirrors: []policy.Mirror{{
			Name: testNS + "." + target + ".http", Service: target, Namespace: testNS,
			Port: policy.PortRef{Name: "http"}, PartsPerMillion: ppm,
		}},
	}
}

func validPolicy(cm, key string, index int, name string, ppm uint32) *policy.Policy {
	return mirrorPolicy(cm, key, index, name, "web-shadow", ppm)
}

func policyErr(cm, key string, index int, name, field, msg string) *policy.PolicyError {
	return &policy.PolicyError{Namespace: testNS, ConfigMap: cm, Key: key, Policy: name, Index: index, Field: field, Message: msg}
}

func keyErr(cm, key, msg string) *policy.PolicyError {
	return policyErr(cm, key, -1, "", "", msg)
}

func pkey(cm, key string, policies []*policy.Policy, errs ...*policy.PolicyError) parsedKey {
	return parsedKey{source: keySource{Namespace: testNS, ConfigMap: cm, Key: key}, policies: policies, errs: errs}
}

func inForce(policies ...*policy.Policy) map[policyID]*policy.Policy {
	m := map[policyID]*policy.Policy{}
	for _, p := range policies {
		m[policyID{Namespace: p.Namespace, Name: p.Name}] = p
	}
	return m
}

// wantNote expects a note about subject ("cm/key", "cm/key:policy" or
// "cm/key[index]") with a reason and a message containing contains.
type wantNote struct {
	subject  string
	reason   string
	contains string
}

func subjectString(s subject) string {
	base := s.source.ConfigMap + "/" + s.source.Key
	switch {
	case s.policy != "" && s.index != 0:
		return fmt.Sprintf("%s:%s#%d", base, s.policy, s.index)
	case s.policy != "":
		return base + ":" + s.policy
	case s.index >= 0:
		return fmt.Sprintf("%s[%d]", base, s.index)
	}
	return base
}

func TestReconcile(t *testing.T) {
	v1 := validPolicy("a", "p.yaml", 0, "p1", 250000)
	v2 := validPolicy("a", "p.yaml", 0, "p1", 500000)
	p2 := validPolicy("a", "p.yaml", 1, "p2", 10000)
	p3 := validPolicy("a", "other.yaml", 0, "p3", 10000)
	fromB := validPolicy("b", "p.yaml", 0, "p1", 770000)

	tests := []struct {
		name        string
		prev        map[policyID]*policy.Policy
		keys        []parsedKey
		world       *translator.World
		wantInForce map[policyID]*policy.Policy
		wantNotes   []wantNote
	}{
		{
			name:        "valid policy is applied",
			keys:        []parsedKey{pkey("a", "p.yaml", []*policy.Policy{v1})},
			wantInForce: inForce(v1),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyApplied, "policy p1 applied: copies 25% of web:http to ns/web-shadow:http"}},
		},
		{
			name:        "valid edit replaces the version in force",
			prev:        inForce(v1),
			keys:        []parsedKey{pkey("a", "p.yaml", []*policy.Policy{v2})},
			wantInForce: inForce(v2),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyApplied, "copies 50% of"}},
		},
		{
			name:        "invalid edit keeps the last valid version",
			prev:        inForce(v1),
			keys:        []parsedKey{pkey("a", "p.yaml", nil, policyErr("a", "p.yaml", 0, "p1", "mirrors[0].percent", "must be at most 100"))},
			wantInForce: inForce(v1),
			wantNotes: []wantNote{{"a/p.yaml:p1", ReasonPolicyRejected,
				`policy "p1": mirrors[0].percent: must be at most 100; the last valid version stays in force`}},
		},
		{
			name:        "invalid new policy is not in force",
			keys:        []parsedKey{pkey("a", "p.yaml", nil, policyErr("a", "p.yaml", 0, "p1", "service", "is required"))},
			wantInForce: inForce(),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyRejected, "is required; the policy is not in force"}},
		},
		{
			name: "key-wide error keeps every policy last read from the key",
			prev: inForce(v1, p2, p3),
			keys: []parsedKey{
				pkey("a", "other.yaml", []*policy.Policy{p3}),
				pkey("a", "p.yaml", nil, keyErr("a", "p.yaml", "invalid YAML: line 3: mapping values are not allowed")),
			},
			wantInForce: inForce(v1, p2, p3),
			wantNotes: []wantNote{
				{"a/other.yaml:p3", ReasonPolicyApplied, "policy p3 applied"},
				{"a/p.yaml", ReasonPolicyRejected, "invalid YAML: line 3: mapping values are not allowed; the policies last read from this key stay in force"},
			},
		},
		{
			name:        "key-wide error with nothing in force",
			keys:        []parsedKey{pkey("a", "p.yaml", nil, keyErr("a", "p.yaml", "invalid YAML"))},
			wantInForce: inForce(),
			wantNotes:   []wantNote{{"a/p.yaml", ReasonPolicyRejected, "invalid YAML; no policy from this key is in force"}},
		},
		{
			name:        "policy dropped from a valid key is removed",
			prev:        inForce(v1, p2),
			keys:        []parsedKey{pkey("a", "p.yaml", []*policy.Policy{v1})},
			wantInForce: inForce(v1),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyApplied, "policy p1 applied"}},
		},
		{
			name:        "deleted key or ConfigMap removes its policies",
			prev:        inForce(v1, p2, p3),
			keys:        []parsedKey{pkey("a", "other.yaml", []*policy.Policy{p3})},
			wantInForce: inForce(p3),
			wantNotes:   []wantNote{{"a/other.yaml:p3", ReasonPolicyApplied, "policy p3 applied"}},
		},
		{
			name: "duplicate across ConfigMaps: the first ConfigMap wins",
			prev: inForce(fromB),
			keys: []parsedKey{
				pkey("a", "p.yaml", []*policy.Policy{v1}),
				pkey("b", "p.yaml", []*policy.Policy{fromB}),
			},
			wantInForce: inForce(v1),
			wantNotes: []wantNote{
				{"a/p.yaml:p1", ReasonPolicyApplied, "policy p1 applied"},
				{"b/p.yaml:p1", ReasonPolicyRejected, `name: policy name "p1" is already used in this namespace by ConfigMap a key p.yaml`},
			},
		},
		{
			name: "duplicate across keys of one ConfigMap: the first key wins",
			keys: []parsedKey{
				pkey("a", "other.yaml", []*policy.Policy{validPolicy("a", "other.yaml", 0, "p1", 1)}),
				pkey("a", "p.yaml", []*policy.Policy{v1}),
			},
			wantInForce: inForce(validPolicy("a", "other.yaml", 0, "p1", 1)),
			wantNotes: []wantNote{
				{"a/other.yaml:p1", ReasonPolicyApplied, "copies 0.0001% of"},
				{"a/p.yaml:p1", ReasonPolicyRejected, "by ConfigMap a key other.yaml"},
			},
		},
		{
			name: "duplicate whose first definition is invalid keeps the last valid version",
			prev: inForce(fromB),
			keys: []parsedKey{
				pkey("a", "p.yaml", nil, policyErr("a", "p.yaml", 0, "p1", "port", "bad")),
				pkey("b", "p.yaml", []*policy.Policy{fromB}),
			},
			wantInForce: inForce(fromB),
			wantNotes: []wantNote{
				{"a/p.yaml:p1", ReasonPolicyRejected, "port: bad; the last valid version stays in force"},
				{"b/p.yaml:p1", ReasonPolicyRejected, "by ConfigMap a key p.yaml"},
			},
		},
		{
			name: "unnamed entry keeps the policies it may replace",
			prev: inForce(v1, p2),
			keys: []parsedKey{pkey("a", "p.yaml", []*policy.Policy{v2},
				policyErr("a", "p.yaml", 1, "", "name", "is required"))},
			wantInForce: inForce(v2, p2),
			wantNotes: []wantNote{
				{"a/p.yaml[1]", ReasonPolicyRejected, "this entry is ignored, and the policies last read from this key that it may replace stay in force"},
				{"a/p.yaml:p1", ReasonPolicyApplied, "copies 50% of"},
			},
		},
		{
			name: "name repeated within a key keeps the last valid version",
			prev: inForce(v1),
			// The parser drops every definition of a repeated name and
			// reports the repeats.
			keys:        []parsedKey{pkey("a", "p.yaml", nil, policyErr("a", "p.yaml", 2, "p1", "name", "already used by policies[0]"))},
			wantInForce: inForce(v1),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyRejected, "already used by policies[0]; the last valid version stays in force"}},
		},
		{
			name: "reference error is rejected and keeps the last valid version",
			prev: inForce(v1),
			keys: []parsedKey{pkey("a", "p.yaml", []*policy.Policy{func() *policy.Policy {
				p := validPolicy("a", "p.yaml", 0, "p1", 500000)
				p.Port = policy.PortRef{Name: "grpc"}
				return p
			}()})},
			wantInForce: inForce(v1),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonPolicyRejected, "the last valid version stays in force"}},
		},
		{
			name:        "missing target keeps the policy in force",
			keys:        []parsedKey{pkey("a", "p.yaml", []*policy.Policy{mirrorPolicy("a", "p.yaml", 0, "p1", "absent", 10000)})},
			wantInForce: inForce(mirrorPolicy("a", "p.yaml", 0, "p1", "absent", 10000)),
			wantNotes:   []wantNote{{"a/p.yaml:p1", ReasonTargetMissing, `mirrors[0].service: Service "ns/absent" does not exist`}},
		},
		{
			name: "parser warning keeps the policy in force",
			keys: []parsedKey{pkey("a", "p.yaml", []*policy.Policy{v1}, func() *policy.PolicyError {
				e := policyErr("a", "p.yaml", 0, "p1", "guard", "is generous")
				e.Warning = true
				return e
			}())},
			wantInForce: inForce(v1),
			wantNotes: []wantNote{
				{"a/p.yaml:p1", ReasonPolicyWarning, "guard: is generous"},
				{"a/p.yaml:p1", ReasonPolicyApplied, "policy p1 applied"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			world := tt.world
			if world == nil {
				world = testWorld()
			}
			prev := tt.prev
			if prev == nil {
				prev = inForce()
			}
			prevCopy := inForce()
			for id, p := range prev {
				prevCopy[id] = p
			}
			got := reconcile(prev, tt.keys, world)

			checkInForce(t, got.inForce, tt.wantInForce)
			checkNotes(t, got.verdicts, tt.wantNotes)
			if len(prev) != len(prevCopy) {
				t.Errorf("reconcile modified prev")
			}
			for id, p := range prevCopy {
				if prev[id] != p {
					t.Errorf("reconcile modified prev[%v]", id)
				}
			}
		})
	}
}

func checkInForce(t *testing.T, got, want map[policyID]*policy.Policy) {
	t.Helper()
	for id, w := range want {
		g := got[id]
		if g == nil {
			t.Errorf("policy %v not in force", id)
			continue
		}
		if g.Source != w.Source || g.Mirrors[0].PartsPerMillion != w.Mirrors[0].PartsPerMillion {
			t.Errorf("policy %v in force from %+v with %d ppm, want from %+v with %d ppm",
				id, g.Source, g.Mirrors[0].PartsPerMillion, w.Source, w.Mirrors[0].PartsPerMillion)
		}
	}
	for id := range got {
		if want[id] == nil {
			t.Errorf("policy %v in force, want it absent", id)
		}
	}
}

func checkNotes(t *testing.T, verdicts []verdict, want []wantNote) {
	t.Helper()
	var got []string
	for _, v := range verdicts {
		for _, n := range v.notes {
			got = append(got, fmt.Sprintf("%s %s: %s", subjectString(v.subject), n.reason, n.message))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d notes, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		prefix := w.subject + " " + w.reason + ": "
		if !strings.HasPrefix(got[i], prefix) || !strings.Contains(got[i], w.contains) {
			t.Errorf("note %d = %q\nwant %q … containing %q", i, got[i], prefix, w.contains)
		}
	}
}

// TestReconcileRouteCap: a policy whose routes would take its Service's
// listener past the cap gets a RouteCapExceeded Event naming it; the
// others are applied.
func TestReconcileRouteCap(t *testing.T) {
	var policies []*policy.Policy
	for i := 0; i < 8; i++ {
		p := validPolicy("a", "p.yaml", i, fmt.Sprintf("p%d", i), 10000)
		p.Match = policy.Match{Headers: []policy.HeaderMatch{{Name: fmt.Sprintf("x-%d", i), Present: true}}}
		policies = append(policies, p)
	}
	got := reconcile(inForce(), []parsedKey{pkey("a", "p.yaml", policies)}, testWorld())
	var capped []string
	for _, v := range got.verdicts {
		for _, n := range v.notes {
			if n.reason == ReasonRouteCapExceeded {
				capped = append(capped, subjectString(v.subject)+": "+n.message)
			}
		}
	}
	if len(capped) != 1 || !strings.Contains(capped[0], `a/p.yaml:p7: configmap "ns/a" key "p.yaml" policy "p7": match: with this policy, the policies of Service ns/web port "http" would need 255 routes`) {
		t.Errorf("RouteCapExceeded notes: %q", capped)
	}
}
