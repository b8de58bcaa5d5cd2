package integration

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// applyExample puts the policies of an example ConfigMap from
// deploy/examples into the fixture's namespace, as the policy ConfigMap.
func (f *routingFixture) applyExample(file string) {
	f.t.Helper()
	objects := decodeManifests(f.t, filepath.Join(testtools.RepoRoot(), "deploy", "examples", file))
	cm, ok := objects[0].(*corev1.ConfigMap)
	if !ok || len(objects) != 1 {
		f.t.Fatalf("%s: want one ConfigMap, got %d objects", file, len(objects))
	}
	f.applyPolicy(cm.Data["policies.yaml"])
}

// sendCounting sends n GETs, with the header h on every k-th (none when k
// is 0), and fails on any error.
func (f *routingFixture) sendCounting(n, k int, header, value string) {
	f.t.Helper()
	res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
		req := f.get(ctx, fmt.Sprintf("/example/%d", i))
		if k > 0 && i%k == 0 {
			req.Header.Set(header, value)
		}
		return req
	})
	if res.Errors() != 0 {
		f.t.Fatalf("%d of %d requests failed; first: %s", res.Errors(), n, res.FirstError())
	}
}

func checkShare(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	lo, hi := harness.BinomialBounds(n, p, harness.ShareAlpha)
	t.Logf("%s: %d of %d, %s interval [%d, %d]", what, got, n, harness.ShareConfidence, lo, hi)
	if got < lo || got > hi {
		t.Errorf("%s: %d of %d, outside the binomial %s interval [%d, %d] for %.1f%%", what, got, n, harness.ShareConfidence, lo, hi, 100*p)
	}
}

// TestReleaseExamples runs the three release examples of deploy/examples on
// the real Envoy, as their comments describe them.
func TestReleaseExamples(t *testing.T) {
	t.Run("gray", func(t *testing.T) {
		f := newRoutingFixture(t, fixtureOptions{})
		f.applyExample("release-gray.yaml")
		f.waitRoutes("gray-cookie", "gray-header", "gray-ticket")
		f.waitWeight("gray-ticket", "entrance-edge", 1_000_000)
		for _, marker := range []struct{ header, value string }{{"x-gray", "1"}, {"cookie", "a=1; gray=1"}} {
			f.resetBackends()
			f.sendCounting(100, 2, marker.header, marker.value)
			if f.edge.Count() != 50 || f.primary.Count() != 50 {
				t.Errorf("%s: %s: edge %d, stable %d; want 50 and 50", marker.header, marker.value, f.edge.Count(), f.primary.Count())
			}
		}
		f.resetBackends()
		must(t, harness.Do(f.client, f.get(f.ctx, "/a?ticket=T-7")).Err)
		if f.edge.Count() != 1 {
			t.Errorf("a request with ?ticket did not reach the edge version")
		}

		// Rolling a marker rule back writes the weight it left out.
		out, err := exec.CommandContext(f.ctx, env(t).shadowplane, "rollback", f.ns+"/gray-header", "--kubeconfig", f.kube.KubeconfigPath).CombinedOutput()
		if err != nil {
			t.Fatalf("shadowplane rollback: %v\n%s", err, out)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
		f.waitWeight("gray-header", "entrance-edge", 0)
		f.resetBackends()
		f.sendCounting(100, 2, "x-gray", "1")
		if f.edge.Count() != 0 || f.primary.Count() != 100 {
			t.Errorf("after rollback: edge %d, stable %d; want 0 and 100", f.edge.Count(), f.primary.Count())
		}
	})
	t.Run("canary", func(t *testing.T) {
		f := newRoutingFixture(t, fixtureOptions{})
		f.applyExample("release-canary.yaml")
		f.waitRoutes("canary")
		f.waitWeight("canary", "entrance-v2", 50_000)
		const n = 2000
		f.sendCounting(n, 0, "", "")
		checkShare(t, "canary at 5 %", f.v2.Count(), n, 0.05)

		// The documented next step: shadowplane set default/canary canary=25.
		out, err := exec.CommandContext(f.ctx, env(t).shadowplane, "set", f.ns+"/canary", "canary=25", "--kubeconfig", f.kube.KubeconfigPath).CombinedOutput()
		if err != nil {
			t.Fatalf("shadowplane set: %v\n%s", err, out)
		}
		f.waitWeight("canary", "entrance-v2", 250_000)
		f.resetBackends()
		f.sendCounting(n, 0, "", "")
		checkShare(t, "canary at 25 %", f.v2.Count(), n, 0.25)
	})
	t.Run("copy-then-release", func(t *testing.T) {
		f := newRoutingFixture(t, fixtureOptions{})
		f.applyExample("release-copy-then-release.yaml")
		f.waitRoutes("canary", "gray")
		f.waitWeight("canary", "entrance-v2", 50_000)
		f.waitClusterHosts(f.mirrorCluster("copy-to-staging"), 1)
		const n = 4000
		f.sendCounting(n, 4, "x-gray", "1") // a quarter carry the marker
		if got := f.edge.Count(); got != n/4 {
			t.Errorf("edge got %d requests, want the %d with the marker", got, n/4)
		}
		checkShare(t, "canary, 5 % of the unmarked", f.v2.Count(), n*3/4, 0.05)
		copies := f.shadow.WaitCount(f.ctx, n, 500*time.Millisecond)
		checkShare(t, "copies, 10 % of all", copies, n, 0.10)
	})
}
