package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/watcher"
)

// invalidCorpusFile is one broken policy ConfigMap of the policy parser's
// corpus (policy/testdata/invalid): its key's text and the substring its
// error message must contain.
type invalidCorpusFile struct {
	name   string
	expect string
	key    string
	text   string
}

// loadInvalidCorpus reads the corpus. Every file is a ConfigMap
// mirror-policies whose one key breaks policy entrance-to-staging of
// Service entrance, port http, mirroring to entrance-shadow: the fixture's
// names, so the key's text applies unchanged to the fixture's namespace.
func loadInvalidCorpus(t *testing.T) []invalidCorpusFile {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testtools.RepoRoot(), "policy", "testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("want the whole corpus (50+ files), found %d", len(files))
	}
	var out []invalidCorpusFile
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
		expect, ok := strings.CutPrefix(string(first), "# expect: ")
		if !ok {
			t.Fatalf("%s: first line must be \"# expect: <substring>\"", file)
		}
		var cm struct {
			Metadata struct{ Name string } `yaml:"metadata"`
			Data     map[string]string     `yaml:"data"`
		}
		if err := yaml.Unmarshal(data, &cm); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		text, ok := cm.Data["policies.yaml"]
		if cm.Metadata.Name != "mirror-policies" || len(cm.Data) != 1 || !ok {
			t.Fatalf("%s: want ConfigMap mirror-policies with the one key policies.yaml", file)
		}
		out = append(out, invalidCorpusFile{name: filepath.Base(file), expect: expect, key: "policies.yaml", text: text})
	}
	return out
}

// otherPolicyYAML is a second valid policy, in its own ConfigMap, on the
// same sidecar: it copies /other/ requests, so those get a copy from each
// policy.
const otherPolicyYAML = `policies:
- name: other-to-staging
  service: entrance
  port: http
  match: {pathPrefix: /other/}
  mirrors:
  - {service: entrance-shadow, port: http, name: staging, percent: 100}
`

// TestBadInputCorpus applies every broken ConfigMap of the corpus, one after
// another, as an edit of a valid policy running at 100 % on the real API
// server. Each edit yields a Warning Event naming the problem; Envoy keeps
// copying per the last valid version (proved by traffic, runtime values and
// unchanged xDS versions); a second policy in another ConfigMap copies
// throughout; the control plane never stops serving; no Event is lost.
func TestBadInputCorpus(t *testing.T) {
	corpus := loadInvalidCorpus(t)
	start := time.Now()
	f := newMirrorFixture(t, fixtureOptions{allowedURLHosts: []string{"10.16.0.0/16"}})
	kube := env(t).kube
	f.applyPolicy(policyYAML("100", ""))
	must(t, kube.ApplyPolicyConfigMap(f.ctx, f.ns, "other-policies", "policies.yaml", otherPolicyYAML))
	otherKey := "shadowplane." + f.ns + ".other-to-staging.staging"
	f.waitApplied(1_000_000)
	f.waitRuntime(otherKey, 1_000_000)
	// Each mirror has its own cluster: the other policy's must have its
	// endpoint too before it can copy.
	f.waitClusterHosts(f.mirrorCluster("other-to-staging"), 1)
	f.waitRouteMirrors(3) // /other/: both policies' mirrors; catch-all: one
	f.checkCopies("baseline")
	baseline := f.waitProxySynced()
	t.Logf("fixture ready in %s", time.Since(start).Round(time.Millisecond))

	corpusStart := time.Now()
	for _, c := range corpus {
		before := f.policyEvents("mirror-policies")
		must(t, kube.ApplyPolicyConfigMap(f.ctx, f.ns, "mirror-policies", c.key, c.text))
		ev := f.waitNewEvent("mirror-policies", before, func(e corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == watcher.ReasonPolicyRejected && strings.Contains(e.Message, c.expect)
		})
		if ev == nil {
			t.Fatalf("%s: no PolicyRejected Warning Event containing %q; Events since the edit:\n%s", c.name, c.expect, f.describeNewEvents("mirror-policies", before))
		}
		t.Logf("%s: %s %s: %s", c.name, ev.Type, ev.Reason, ev.Message)
		if !strings.Contains(ev.Message, "stays in force") && !strings.Contains(ev.Message, "stay in force") {
			t.Errorf("%s: the Event does not say that the last valid version stays in force: %q", c.name, ev.Message)
		}
		if !strings.Contains(ev.Message, fmt.Sprintf("configmap %q key %q", f.ns+"/mirror-policies", "policies.yaml")) {
			t.Errorf("%s: the Event does not name the ConfigMap and key: %q", c.name, ev.Message)
		}

		// The last valid version still runs, unchanged, beside the other policy.
		f.checkCopies(c.name)
		f.checkRuntime(f.runtimeKey(), 1_000_000)
		f.checkRuntime(otherKey, 1_000_000)
		if now := f.proxyState(); now != baseline {
			t.Errorf("%s: the sidecar's xDS state changed:\nbefore %+v\nafter  %+v", c.name, baseline, now)
		}
		f.checkHealthy(c.name)
		if t.Failed() {
			t.Fatalf("stopping after %s", c.name)
		}
	}
	t.Logf("%d corpus files applied and checked in %s", len(corpus), time.Since(corpusStart).Round(time.Millisecond))

	metrics := scrapeMetrics(t, f.cp.HTTPURL())
	if v := metrics[`shadowplane_policies{state="valid"}`]; v != 2 {
		t.Errorf("shadowplane_policies{state=\"valid\"} = %v after the last bad edit, want 2", v)
	}
	if v := metrics[`shadowplane_policies{state="invalid"}`]; v < 1 {
		t.Errorf("shadowplane_policies{state=\"invalid\"} = %v after the last bad edit, want at least 1", v)
	}

	// Beside an invalid edit in the same key, a new valid policy is applied.
	before := f.policyEvents("mirror-policies")
	sameKey := policyYAML("250", "") + `- name: same-key
  service: entrance
  port: http
  match: {pathPrefix: /same/}
  mirrors:
  - {service: entrance-shadow, port: http, name: staging, percent: 100}
`
	must(t, kube.ApplyPolicyConfigMap(f.ctx, f.ns, "mirror-policies", "policies.yaml", sameKey))
	if f.waitNewEvent("mirror-policies", before, func(e corev1.Event) bool {
		return e.Reason == watcher.ReasonPolicyApplied && strings.HasPrefix(e.Message, "policy same-key applied")
	}) == nil {
		t.Fatalf("no PolicyApplied Event for the valid policy beside an invalid one:\n%s", f.describeNewEvents("mirror-policies", before))
	}
	f.waitRuntime("shadowplane."+f.ns+".same-key.staging", 1_000_000)
	f.waitClusterHosts(f.mirrorCluster("same-key"), 1)
	f.waitRouteMirrors(5) // /same/ and /other/: two mirrors each; catch-all: one
	f.shadow.Reset()
	res := harness.SendN(f.ctx, f.client, 10, 4, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/same/%d", i))
	})
	if res.Errors() != 0 {
		t.Fatalf("%d requests failed; first: %s", res.Errors(), res.FirstError())
	}
	f.shadow.WaitCount(f.ctx, 20, 100*time.Millisecond)
	for _, policy := range []string{"same-key", "entrance-to-staging"} {
		if got := f.shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-shadowplane-copy") == f.ns+"/"+policy }); got != 10 {
			t.Errorf("%s copied %d of 10 /same/ requests", policy, got)
		}
	}
	f.checkCopies("beside a new policy in the same key")
	f.checkRuntime(f.runtimeKey(), 1_000_000)

	// A valid edit replaces the last valid version.
	before = f.policyEvents("mirror-policies")
	f.applyPolicy(policyYAML("50", ""))
	if f.waitNewEvent("mirror-policies", before, func(e corev1.Event) bool {
		return e.Reason == watcher.ReasonPolicyApplied && strings.Contains(e.Message, "copies 50% of entrance:http")
	}) == nil {
		t.Errorf("no PolicyApplied Event for the valid edit:\n%s", f.describeNewEvents("mirror-policies", before))
	}
	f.waitRuntime(f.runtimeKey(), 500_000)

	// The other ConfigMap heard nothing but its own PolicyApplied.
	for _, e := range f.policyEvents("other-policies") {
		if e.Reason != watcher.ReasonPolicyApplied {
			t.Errorf("other-policies got a %s Event: %q", e.Reason, e.Message)
		}
	}
}

// TestTargetMissing: a policy whose mirror Service does not exist yet is
// only a warning. It is in force, its copies go nowhere and the primary is
// unaffected; once the Service and its endpoints appear, copying starts by
// itself.
func TestTargetMissing(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	kube := env(t).kube
	before := f.policyEvents("mirror-policies")
	f.applyPolicy(strings.Replace(policyYAML("100", ""), "service: entrance-shadow", "service: late-shadow", 1))
	missing := fmt.Sprintf(`mirrors[0].service: Service %q does not exist (yet): the policy stays in force and takes effect when the Service appears`, f.ns+"/late-shadow")
	if f.waitNewEvent("mirror-policies", before, func(e corev1.Event) bool {
		return e.Type == corev1.EventTypeWarning && e.Reason == watcher.ReasonTargetMissing && strings.Contains(e.Message, missing)
	}) == nil {
		t.Fatalf("no TargetMissing Event containing %q:\n%s", missing, f.describeNewEvents("mirror-policies", before))
	}
	f.waitRuntime(f.runtimeKey(), 1_000_000) // in force

	const n = 20
	res := harness.SendN(f.ctx, f.client, n, 4, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
	})
	if res.Errors() != 0 || f.primary.Count() != n {
		t.Fatalf("primary affected by the missing target: %d errors (first: %s), primary got %d of %d", res.Errors(), res.FirstError(), f.primary.Count(), n)
	}
	time.Sleep(300 * time.Millisecond) // copies trail their originals
	if got := f.shadow.Count(); got != 0 {
		t.Fatalf("shadow got %d copies while its Service did not exist", got)
	}

	before = f.policyEvents("mirror-policies")
	must(t, kube.ApplyService(f.ctx, f.ns, "late-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: f.shadow.Port}))
	must(t, kube.ApplyEndpointSlice(f.ctx, f.ns, "late-shadow", "http", f.shadow.Port, harness.SliceEndpoint{Address: env(t).endpointHost, Ready: true}))
	if f.waitNewEvent("mirror-policies", before, func(e corev1.Event) bool {
		return e.Reason == watcher.ReasonPolicyApplied && strings.Contains(e.Message, "late-shadow")
	}) == nil {
		t.Errorf("no PolicyApplied Event once the Service appeared:\n%s", f.describeNewEvents("mirror-policies", before))
	}
	f.waitClusterHosts(f.shadowCluster(), 1)
	res = harness.SendN(f.ctx, f.client, n, 4, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
	})
	if res.Errors() != 0 {
		t.Fatalf("%d requests failed; first: %s", res.Errors(), res.FirstError())
	}
	if got := f.shadow.WaitCount(f.ctx, n, 200*time.Millisecond); got != n {
		t.Fatalf("shadow got %d copies after its Service appeared, want %d", got, n)
	}
	for _, e := range f.policyEvents("mirror-policies") {
		t.Logf("event: %s %s: %s", e.Type, e.Reason, e.Message)
	}
}

// checkCopies sends 10 requests to /entrance/ and 10 to /other/ and checks
// that the standard policy copied all 20 and other-to-staging the 10
// /other/ ones, each copy marked by its policy.
func (f *mirrorFixture) checkCopies(phase string) {
	f.t.Helper()
	f.shadow.Reset()
	f.primary.Reset()
	const half = 10
	res := harness.SendN(f.ctx, f.client, 2*half, 4, func(ctx context.Context, i int) *http.Request {
		if i%2 == 0 {
			return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
		}
		return f.get(ctx, fmt.Sprintf("/other/%d", i))
	})
	if res.Errors() != 0 || f.primary.Count() != 2*half {
		f.t.Errorf("%s: %d requests failed (first: %s), primary got %d of %d", phase, res.Errors(), res.FirstError(), f.primary.Count(), 2*half)
	}
	f.shadow.WaitCount(f.ctx, 3*half, 100*time.Millisecond)
	marked := func(policy string) int {
		return f.shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-shadowplane-copy") == f.ns+"/"+policy })
	}
	if got := marked("entrance-to-staging"); got != 2*half {
		f.t.Errorf("%s: entrance-to-staging copied %d of %d requests", phase, got, 2*half)
	}
	if got := marked("other-to-staging"); got != half {
		f.t.Errorf("%s: other-to-staging copied %d of %d /other/ requests", phase, got, half)
	}
	if got := f.shadow.Count(); got != 3*half {
		f.t.Errorf("%s: shadow got %d copies in all, want %d", phase, got, 3*half)
	}
}

// checkRuntime checks Envoy's runtime value of key now.
func (f *mirrorFixture) checkRuntime(key string, ppm uint32) {
	f.t.Helper()
	v, ok, err := f.sidecar.RuntimeValue(f.ctx, key)
	if err != nil || !ok || !harness.RuntimeShareIs(v, ppm) {
		f.t.Errorf("envoy runtime %s = %q (present %v, %v), want %d ppm", key, v, ok, err, ppm)
	}
}

// checkHealthy checks the control plane's /healthz and /readyz.
func (f *mirrorFixture) checkHealthy(phase string) {
	f.t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		if _, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+path); err != nil {
			f.t.Errorf("%s: %s: %v", phase, path, err)
		}
	}
}

// proxyState is what the control plane knows of the fixture's sidecar: its
// stream (a reconnect changes Connected) and, per type, the acknowledged
// version and status.
type proxyState struct {
	connected time.Time
	types     string
}

func (f *mirrorFixture) proxyState() proxyState {
	f.t.Helper()
	proxies := f.cp.XDS.Proxies()
	if len(proxies) != 1 {
		return proxyState{types: fmt.Sprintf("%d proxies", len(proxies))}
	}
	var b strings.Builder
	for _, typ := range []string{"listener", "route", "cluster", "endpoint", "runtime"} {
		ts := proxies[0].Types[typ]
		fmt.Fprintf(&b, "%s=%s/%s ", typ, ts.Acked, ts.Status)
	}
	return proxyState{connected: proxies[0].Connected, types: b.String()}
}

// waitProxySynced waits until the sidecar acknowledged the current version
// of every type, and returns that state.
func (f *mirrorFixture) waitProxySynced() proxyState {
	f.t.Helper()
	var last proxyState
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		last = f.proxyState()
		return strings.Count(last.types, "/SYNCED") == 5, nil
	})
	if err != nil {
		f.t.Fatalf("sidecar never SYNCED for every type (last %+v): %v", last, err)
	}
	return last
}

// eventMark is what is known of one Event, to tell later changes apart.
type eventMark struct {
	count   int32
	message string
}

// policyEvents lists the Events of a policy ConfigMap in the fixture's
// namespace.
func (f *mirrorFixture) policyEvents(configMap string) []corev1.Event {
	f.t.Helper()
	list, err := env(f.t).kube.Client.CoreV1().Events(f.ns).List(f.ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=" + configMap,
	})
	if err != nil {
		f.t.Fatalf("list events: %v", err)
	}
	return list.Items
}

// newEvents returns the Events that are new or changed (count or message)
// since before.
func (f *mirrorFixture) newEvents(configMap string, before []corev1.Event) []corev1.Event {
	seen := map[string]eventMark{}
	for _, e := range before {
		seen[string(e.UID)] = eventMark{e.Count, e.Message}
	}
	var out []corev1.Event
	for _, e := range f.policyEvents(configMap) {
		if m, ok := seen[string(e.UID)]; !ok || m != (eventMark{e.Count, e.Message}) {
			out = append(out, e)
		}
	}
	return out
}

// waitNewEvent waits up to 20 s for a new or changed Event that fits match.
func (f *mirrorFixture) waitNewEvent(configMap string, before []corev1.Event, match func(corev1.Event) bool) *corev1.Event {
	f.t.Helper()
	var found *corev1.Event
	_ = harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		for _, e := range f.newEvents(configMap, before) {
			if match(e) {
				found = &e
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

func (f *mirrorFixture) describeNewEvents(configMap string, before []corev1.Event) string {
	var b strings.Builder
	for _, e := range f.newEvents(configMap, before) {
		fmt.Fprintf(&b, "  %s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}
