package watcher

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// TestJudgeMemoMatchesFullReconcile: over random sequences of policy edits
// (valid, invalid, duplicate names across ConfigMaps, missing targets,
// several policies on one listener) and Service changes, reconciling with
// the memo gives exactly what reconciling everything gives: the same
// policies in force (the same objects), verdicts and problems.
func TestJudgeMemoMatchesFullReconcile(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { compareReconciles(t, rand.New(rand.NewPCG(seed, 11))) })
	}
	// The sequences must reach the route cap, or they test half the memo.
	if cappedTotal.Load() == 0 {
		t.Error("no sequence passed the route cap")
	}
}

var cappedTotal atomic.Int64

func compareReconciles(t *testing.T, rng *rand.Rand) {
	http := []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}}
	serviceSets := []map[string]*translator.Service{
		{"ns/web": {Namespace: testNS, Name: "web", Ports: http}, "ns/web-shadow": {Namespace: testNS, Name: "web-shadow", Ports: http}},
		{"ns/web": {Namespace: testNS, Name: "web", Ports: http}},
		{"ns/web": {Namespace: testNS, Name: "web", Ports: http}, "ns/web-shadow": {Namespace: testNS, Name: "web-shadow", Ports: http},
			"ns/other": {Namespace: testNS, Name: "other", Ports: http}},
	}
	services := serviceSets[0]
	contents := map[string]string{}
	memo := newJudgeMemo()
	var cache map[keySource]cachedParse
	prevMemo, prevFull := map[policyID]*policy.Policy{}, map[policyID]*policy.Policy{}
	capped := 0
	for step := range 30 {
		switch rng.IntN(4) {
		case 0: // Services change: a new map
			services = maps.Clone(serviceSets[rng.IntN(len(serviceSets))])
		default: // one ConfigMap rewritten
			cm := fmt.Sprintf("cm-%d", rng.IntN(2))
			var entries []string
			for range rng.IntN(12) {
				target := []string{"web-shadow", "web-shadow", "web-shadow", "web-shadow", "other", "missing"}[rng.IntN(6)]
				percent := []string{"1", "10", "50", "1", "10", "50", "150", "x"}[rng.IntN(8)]
				entry := mirrorEntry(fmt.Sprintf("p%d", rng.IntN(16)), target, percent)
				if rng.IntN(3) > 0 {
					// Distinct header matches on one listener: eight
					// of them pass the route cap.
					entry += fmt.Sprintf("  match: {headers: [{name: x-%d, present: true}]}\n", rng.IntN(16))
				}
				entries = append(entries, entry)
			}
			if rng.IntN(8) == 0 {
				contents[cm] = "policies: [unclosed"
			} else {
				contents[cm] = policiesYAML(entries...)
			}
		}
		var cms []*corev1.ConfigMap
		for name, data := range contents {
			cms = append(cms, policyConfigMap(testNS, name, map[string]string{"policies.yaml": data}))
		}
		var keys []parsedKey
		keys, cache = parseConfigMaps(cms, cache, policy.ParseOptions{})
		world := &translator.World{Services: services}
		withMemo := reconcileMemo(prevMemo, keys, world, memo)
		full := reconcile(prevFull, keys, world)
		if !maps.Equal(withMemo.inForce, full.inForce) {
			t.Fatalf("step %d: in force with the memo %v, reconciling everything %v", step, withMemo.inForce, full.inForce)
		}
		if !reflect.DeepEqual(withMemo.verdicts, full.verdicts) {
			t.Fatalf("step %d: verdicts differ:\nmemo %+v\nfull %+v", step, withMemo.verdicts, full.verdicts)
		}
		for _, v := range full.verdicts {
			for _, n := range v.notes {
				if n.reason == ReasonRouteCapExceeded {
					capped++
				}
			}
		}
		if !reflect.DeepEqual(withMemo.problems, full.problems) {
			t.Fatalf("step %d: problems differ:\nmemo %v\nfull %v", step, withMemo.problems, full.problems)
		}
		prevMemo, prevFull = withMemo.inForce, full.inForce
	}
	cappedTotal.Add(int64(capped))
}

// TestParseKeepsUnchangedPolicies: re-parsing a key after one of its
// policies changed keeps the others the very objects they were; the
// changed one, and one that moved, are new.
func TestParseKeepsUnchangedPolicies(t *testing.T) {
	parse := func(cache map[keySource]cachedParse, entries ...string) ([]*policy.Policy, map[keySource]cachedParse) {
		keys, next := parseConfigMaps([]*corev1.ConfigMap{policyConfigMap(testNS, "cm", map[string]string{"policies.yaml": policiesYAML(entries...)})}, cache, policy.ParseOptions{})
		if len(keys) != 1 || len(keys[0].errs) != 0 {
			t.Fatalf("parse: %+v", keys)
		}
		return keys[0].policies, next
	}
	a, b, c := mirrorEntry("a", "web-shadow", "1"), mirrorEntry("b", "web-shadow", "2"), mirrorEntry("c", "web-shadow", "3")
	first, cache := parse(nil, a, b, c)
	second, cache := parse(cache, a, mirrorEntry("b", "web-shadow", "20"), c)
	if second[0] != first[0] || second[2] != first[2] {
		t.Error("unchanged policies a and c are new objects")
	}
	if second[1] == first[1] || second[1].Mirrors[0].PartsPerMillion != 200000 {
		t.Errorf("the edited policy b: %+v", second[1])
	}
	// Moving a policy changes its position, which it records.
	third, _ := parse(cache, c, a, mirrorEntry("b", "web-shadow", "20"))
	if third[0] == second[2] || third[0].Source.Index != 0 {
		t.Errorf("a policy that moved kept its old object (index %d)", third[0].Source.Index)
	}
}

// TestJudgeMemoRejudgesTLSPolicies: a policy whose mirror names a client
// certificate is judged again in every build, since its Secret may change
// while the policy and its Services stay the very same objects.
func TestJudgeMemoRejudgesTLSPolicies(t *testing.T) {
	p := validPolicy("a", "p.yaml", 0, "p0", 10000)
	p.Mirrors[0].TLS = &policy.MirrorTLS{ClientCertSecret: "client"}
	keys := []parsedKey{pkey("a", "p.yaml", []*policy.Policy{p})}
	services := testWorld().Services
	memo := newJudgeMemo()
	certs := []map[string]*translator.ClientCertificate{
		nil, // missing: a warning
		{translator.ClientCertificateKey(testNS, "client"): {CertChain: []byte("c"), PrivateKey: []byte("k")}},
		{translator.ClientCertificateKey(testNS, "client"): {Problem: "expired"}},
	}
	prev := map[policyID]*policy.Policy{}
	for i, c := range certs {
		world := &translator.World{Services: services, ClientCertificates: c}
		got, want := reconcileMemo(prev, keys, world, memo), reconcile(prev, keys, world)
		if !reflect.DeepEqual(got.verdicts, want.verdicts) || !reflect.DeepEqual(got.problems, want.problems) {
			t.Fatalf("build %d: memo verdicts %+v problems %v; full %+v %v", i, got.verdicts, got.problems, want.verdicts, want.problems)
		}
		prev = got.inForce
	}
}

// TestDirtyServicesRestore: marks a failed build took are there for the
// next one, with any added since.
func TestDirtyServicesRestore(t *testing.T) {
	var d dirtyServices
	d.add(httpService("ns", "a"))
	d.addAll()
	keys, all := d.take()
	d.add(httpService("ns", "b"))
	d.restore(keys, all)
	keys, all = d.take()
	if !all || len(keys) != 2 {
		t.Errorf("after restore: keys %v, all %v; want ns/a and ns/b, all", keys, all)
	}
	if keys, all = d.take(); len(keys) != 0 || all {
		t.Errorf("take twice: %v %v", keys, all)
	}
}
