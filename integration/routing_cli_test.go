package integration

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const cliPolicies = `# Release of entrance, edited by shadowplane set: this comment stays.
policies:
- name: canary
  service: entrance
  routeTo:
  - service: entrance-v2
    name: canary
    weight: 5      # first step
  - {service: entrance-v3, name: next, weight: 0}
- name: copy
  service: entrance
  mirrors:
  - {service: entrance-shadow, name: staging, percent: 10}  # ten percent
`

// TestRoutingCLI: `shadowplane set`, `promote` and `rollback` against the
// real API server move the weights Envoy uses, keep the ConfigMap's
// comments and layout, and concurrent edits of different numbers all
// survive (resourceVersion, re-applied on conflict).
func TestRoutingCLI(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	f.applyPolicy(cliPolicies)
	f.waitRoutes("canary")
	f.waitWeight("canary", "entrance-v2", 50_000)

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(f.ctx, env(t).shadowplane, append(args, "--kubeconfig", f.kube.KubeconfigPath)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("shadowplane %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	policyText := func() string {
		cm, err := f.kube.Client.CoreV1().ConfigMaps(f.ns).Get(context.Background(), "mirror-policies", metav1.GetOptions{})
		must(t, err)
		return cm.Data["policies.yaml"]
	}

	out := run("set", f.ns+"/canary", "canary=25")
	t.Logf("%s", strings.TrimSpace(out))
	f.waitWeight("canary", "entrance-v2", 250_000)
	f.waitWeight("canary", "app", 750_000)
	if want := strings.Replace(cliPolicies, "weight: 5      #", "weight: 25      #", 1); policyText() != want {
		t.Errorf("after set, the ConfigMap holds\n%s\nwant (comments and layout kept)\n%s", policyText(), want)
	}

	// Concurrent writers on different numbers: every edit lands.
	var wg sync.WaitGroup
	for _, args := range [][]string{
		{"set", f.ns + "/canary", "next=3"},
		{"set", f.ns + "/copy", "staging=1.5"},
		{"set", f.ns + "/canary", "canary=30"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(f.ctx, env(t).shadowplane, append(args, "--kubeconfig", f.kube.KubeconfigPath)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("shadowplane %v: %v\n%s", args, err, out)
			}
		}()
	}
	wg.Wait()
	text := policyText()
	for _, want := range []string{"weight: 30      # first step", "{service: entrance-v3, name: next, weight: 3}", "percent: 1.5}  # ten percent", "# Release of entrance"} {
		if !strings.Contains(text, want) {
			t.Errorf("after concurrent edits the ConfigMap lacks %q:\n%s", want, text)
		}
	}
	f.waitWeight("canary", "entrance-v3", 30_000)
	f.waitWeight("canary", "entrance-v2", 300_000)

	run("promote", f.ns+"/canary", "canary")
	f.waitWeight("canary", "entrance-v2", 1_000_000)
	f.waitWeight("canary", "app", 0)
	run("rollback", f.ns+"/canary")
	f.waitWeight("canary", "entrance-v2", 0)
	f.waitWeight("canary", "app", 1_000_000)

	// A weight that breaks the policy is refused and changes nothing.
	before := policyText()
	cmd := exec.CommandContext(f.ctx, env(t).shadowplane, "set", f.ns+"/canary", "canary=80", "next=30", "--kubeconfig", f.kube.KubeconfigPath)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "the weights add up to 110 %") {
		t.Errorf("an over-100 split was not refused: %v\n%s", err, out)
	}
	if policyText() != before {
		t.Error("a refused edit changed the ConfigMap")
	}
}
