package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/xds"
)

// statusTypes are the columns of `shadowplane status`.
var statusTypes = []string{"LDS", "RDS", "CDS", "EDS", "RTDS"}

// twoPolicies copies all requests of entrance and of checkout to the shadow
// Service; match is added to both (YAML, indented 2).
func twoPolicies(match string) string {
	entrance := policyYAML("100", match)
	checkout := strings.Replace(strings.Replace(entrance, "name: entrance-to-staging", "name: checkout-to-staging", 1), "service: entrance\n", "service: checkout\n", 1)
	return entrance + strings.TrimPrefix(checkout, "policies:\n")
}

// TestStatusAndNack: `shadowplane status` (the built binary) lists a SotW and
// a delta sidecar as SYNCED for every type. When both Envoys reject a route
// update — their RE2 program-size limit lowered through the admin runtime,
// so Envoy, not shadowplane, refuses a config shadowplane accepts — status
// shows RDS as NACKED with Envoy's own message, the NACKs are counted in
// /metrics, and the last good routes stay in force (traffic is still
// copied). A later update Envoy accepts brings both back to SYNCED.
func TestStatusAndNack(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{}) // entrance, SotW
	checkout := f.addSidecar("checkout", true) // delta
	f.applyPolicy(twoPolicies(""))
	f.waitApplied(1_000_000)
	f.waitRuntimeOn(checkout.sidecar, "shadowplane."+f.ns+".checkout-to-staging.staging", 1_000_000)
	f.waitHostsOn(checkout.sidecar, f.shadowCluster(), 1)

	entranceID, checkoutID := "entrance-"+f.ns, "checkout-"+f.ns
	rows := f.waitStatus(func(rows map[string]statusRow) bool {
		return rows[entranceID].all(xds.StatusSynced) && rows[checkoutID].all(xds.StatusSynced)
	})
	if rows[entranceID].mode != "SotW" || rows[checkoutID].mode != "Delta" {
		t.Errorf("modes: entrance %q, checkout %q; want SotW and Delta", rows[entranceID].mode, rows[checkoutID].mode)
	}
	f.checkBothCopied("synced", checkout, nil)

	metrics := scrapeMetrics(t, f.cp.HTTPURL())
	expectMetric(t, metrics, "shadowplane_xds_connected_proxies", func(v float64) bool { return v == 2 }, "2")
	for _, typ := range []string{"listener", "route", "cluster", "endpoint", "runtime"} {
		expectMetric(t, metrics, fmt.Sprintf(`shadowplane_xds_pushes_total{type=%q}`, typ), func(v float64) bool { return v >= 1 }, ">= 1")
		expectMetric(t, metrics, fmt.Sprintf(`shadowplane_xds_nacks_total{type=%q}`, typ), func(v float64) bool { return v == 0 }, "0")
	}
	expectMetric(t, metrics, "shadowplane_translation_duration_seconds_count", func(v float64) bool { return v >= 2 }, ">= 2 (one per node group)")
	expectMetric(t, metrics, "shadowplane_translation_duration_seconds_sum", func(v float64) bool { return v > 0 }, "> 0")
	expectMetric(t, metrics, "shadowplane_event_to_snapshot_seconds_count", func(v float64) bool { return v >= 1 }, ">= 1")
	expectMetric(t, metrics, "shadowplane_event_to_snapshot_seconds_sum", func(v float64) bool { return v > 0 }, "> 0")
	expectMetric(t, metrics, `shadowplane_policies{state="valid"}`, func(v float64) bool { return v == 2 }, "2")
	expectMetric(t, metrics, `shadowplane_policies{state="invalid"}`, func(v float64) bool { return v == 0 }, "0")

	// Both Envoys now refuse any regex: the next route update, which adds
	// a header regex, is NACKed.
	for _, s := range []*harness.Sidecar{f.sidecar, checkout.sidecar} {
		must(t, s.ModifyRuntime(f.ctx, map[string]string{"re2.max_program_size.error_level": "5"}))
	}
	f.applyPolicy(twoPolicies("headers:\n- {name: x-tenant, regex: \"^(beta|gamma)-[0-9]+$\"}\n"))
	rows = f.waitStatus(func(rows map[string]statusRow) bool {
		return rows[entranceID].types["RDS"] == xds.StatusNacked && rows[checkoutID].types["RDS"] == xds.StatusNacked
	})
	for _, id := range []string{entranceID, checkoutID} {
		for _, typ := range statusTypes {
			if want := xds.StatusSynced; typ != "RDS" && rows[id].types[typ] != want {
				t.Errorf("%s %s is %s after the route NACK, want %s", id, typ, rows[id].types[typ], want)
			}
		}
		nack := rows[id].nack
		envoyMessage := "regex '^(beta|gamma)-[0-9]+$' RE2 program size of 16 > max program size of 5 set for the error level threshold"
		if !strings.HasPrefix(nack, id+" RDS rejected version ") || !strings.Contains(nack, envoyMessage) {
			t.Errorf("status NACK line for %s = %q, want Envoy's message %q", id, nack, envoyMessage)
		}
	}
	metrics = scrapeMetrics(t, f.cp.HTTPURL())
	expectMetric(t, metrics, `shadowplane_xds_nacks_total{type="route"}`, func(v float64) bool { return v >= 2 }, ">= 2")
	logShadowplaneMetrics(t, metrics)
	// The old routes copy every request; the rejected ones would copy only
	// requests with a matching x-tenant, which these lack.
	f.checkBothCopied("nacked", checkout, nil)

	// Envoy's limit restored, the next update is accepted.
	for _, s := range []*harness.Sidecar{f.sidecar, checkout.sidecar} {
		must(t, s.ModifyRuntime(f.ctx, map[string]string{"re2.max_program_size.error_level": "100"}))
	}
	f.applyPolicy(twoPolicies("headers:\n- {name: x-tenant, regex: \"^(beta|delta)-[0-9]+$\"}\n"))
	f.waitStatus(func(rows map[string]statusRow) bool {
		return rows[entranceID].all(xds.StatusSynced) && rows[checkoutID].all(xds.StatusSynced)
	})
	f.checkBothCopied("recovered", checkout, http.Header{"X-Tenant": {"delta-7"}})
}

// TestReadyzWaitsForSync: /readyz answers 503 while the informers cannot
// sync (the API server is unreachable) though /healthz answers 200, and 200
// once a control plane has synced and built its first World.
func TestReadyzWaitsForSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dead, err := harness.ClosedPort("127.0.0.1")
	must(t, err)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(dead))), Timeout: time.Second})
	must(t, err)
	cp, err := controlplane.New(controlplane.Config{
		Client: client, Namespaces: []string{"default"},
		XDSAddress: "127.0.0.1:0", HTTPAddress: "127.0.0.1:0",
		Logger: hclog.NewNullLogger(), InsecureXDS: true, // readiness is the subject here
	})
	must(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.Run(runCtx) }()
	base := "http://" + cp.HTTPAddr.String()
	must(t, harness.WaitUntil(ctx, 10*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, base+"/healthz")
		return err == nil, err
	}))
	for i := 0; i < 10; i++ { // it stays unready, it is not merely slow
		body, err := harness.GetJSON(ctx, base+"/readyz")
		if err == nil || !strings.Contains(string(body), "not ready: the initial sync with Kubernetes has not completed") {
			t.Fatalf("/readyz without an API server: %q, %v; want 503 not ready", body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("control plane stopped with %v", err)
	}

	f := newMirrorFixture(t, fixtureOptions{})
	if body, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/readyz"); err != nil || strings.TrimSpace(string(body)) != "ready" {
		t.Errorf("/readyz of a synced control plane: %q, %v", body, err)
	}
}

// extraSidecar is a second sidecar-fronted Service in a fixture's namespace.
type extraSidecar struct {
	service string
	primary *harness.Backend
	sidecar *harness.Sidecar
}

// addSidecar adds Service name (port http) fronted by its own Envoy, SotW or
// delta, with its own primary backend, served by the fixture's control plane.
func (f *mirrorFixture) addSidecar(name string, delta bool) *extraSidecar {
	f.t.Helper()
	e := env(f.t)
	primary, err := harness.StartBackend(name, "127.0.0.1")
	must(f.t, err)
	f.t.Cleanup(primary.Stop)
	listen, err := harness.FreePort()
	must(f.t, err)
	must(f.t, e.kube.ApplyService(f.ctx, f.ns, name, harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listen)}))
	sidecar, err := f.cp.StartSidecar(f.ctx, e.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: f.t.TempDir(),
		NodeID: name + "-" + f.ns, Namespace: f.ns, Service: name,
		ListenPort: listen, AppPort: uint32(primary.Port),
		Delta: delta,
	})
	must(f.t, err)
	f.t.Cleanup(func() {
		if f.t.Failed() {
			f.t.Logf("%s envoy log tail:\n%s", name, sidecar.LogTail(40))
		}
		sidecar.Stop()
	})
	return &extraSidecar{service: name, primary: primary, sidecar: sidecar}
}

func (f *mirrorFixture) waitRuntimeOn(s *harness.Sidecar, key string, ppm uint32) {
	f.t.Helper()
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		v, ok, err := s.RuntimeValue(f.ctx, key)
		return ok && harness.RuntimeShareIs(v, ppm), err
	})
	if err != nil {
		f.t.Fatalf("runtime %s never became %d ppm: %v", key, ppm, err)
	}
}

func (f *mirrorFixture) waitHostsOn(s *harness.Sidecar, cluster string, n int) {
	f.t.Helper()
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		hosts, err := s.ClusterHosts(f.ctx, cluster)
		return len(hosts) == n, err
	})
	if err != nil {
		f.t.Fatalf("cluster %s never had %d hosts: %v", cluster, n, err)
	}
}

// checkBothCopied sends 10 requests through each sidecar, with header, and
// checks that every one was copied, marked by its Service's policy.
func (f *mirrorFixture) checkBothCopied(phase string, other *extraSidecar, header http.Header) {
	f.t.Helper()
	const n = 10
	f.shadow.Reset()
	for _, s := range []*harness.Sidecar{f.sidecar, other.sidecar} {
		res := harness.SendN(f.ctx, f.client, n, 4, func(ctx context.Context, i int) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/x/%d", s.URL, i), nil)
			for k, v := range header {
				req.Header[k] = v
			}
			return req
		})
		if res.Errors() != 0 {
			f.t.Errorf("%s: %d requests through %s failed; first: %s", phase, res.Errors(), s.URL, res.FirstError())
		}
	}
	f.shadow.WaitCount(f.ctx, 2*n, 100*time.Millisecond)
	for _, policy := range []string{"entrance-to-staging", "checkout-to-staging"} {
		got := f.shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-shadowplane-copy") == f.ns+"/"+policy })
		if got != n {
			f.t.Errorf("%s: %s copied %d of %d requests", phase, policy, got, n)
		}
	}
}

// statusRow is one proxy of the `shadowplane status` table.
type statusRow struct {
	group, mode string
	types       map[string]string // by column: LDS, RDS, ...
	nack        string            // its "NACK:" line, if any
}

func (r statusRow) all(status string) bool {
	for _, typ := range statusTypes {
		if r.types[typ] != status {
			return false
		}
	}
	return true
}

// runStatus runs the built `shadowplane status` against the control plane
// and parses its table, by node ID.
func (f *mirrorFixture) runStatus() (map[string]statusRow, string) {
	f.t.Helper()
	out, err := exec.CommandContext(f.ctx, env(f.t).shadowplane, "status", "--address", "http://"+f.cp.DebugAddr.String()).CombinedOutput()
	if err != nil {
		f.t.Fatalf("shadowplane status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if want := []string{"NAME", "GROUP", "MODE", "LDS", "RDS", "CDS", "EDS", "RTDS"}; strings.Join(strings.Fields(lines[0]), " ") != strings.Join(want, " ") {
		f.t.Fatalf("status header %q, want columns %v", lines[0], want)
	}
	rows := map[string]statusRow{}
	for _, line := range lines[1:] {
		if rest, ok := strings.CutPrefix(line, "NACK: "); ok {
			id, _, _ := strings.Cut(rest, " ")
			r := rows[id]
			r.nack = rest
			rows[id] = r
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3+len(statusTypes) {
			f.t.Fatalf("status row %q: want %d columns\n%s", line, 3+len(statusTypes), out)
		}
		r := statusRow{group: fields[1], mode: fields[2], types: map[string]string{}}
		for i, typ := range statusTypes {
			r.types[typ] = fields[3+i]
		}
		rows[fields[0]] = r
	}
	return rows, string(out)
}

// waitStatus runs `shadowplane status` until cond holds and logs the table
// it settled on.
func (f *mirrorFixture) waitStatus(cond func(map[string]statusRow) bool) map[string]statusRow {
	f.t.Helper()
	var rows map[string]statusRow
	var out string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		rows, out = f.runStatus()
		return cond(rows), nil
	})
	if err != nil {
		f.t.Fatalf("shadowplane status never showed the expected state: %v\n%s", err, out)
	}
	f.t.Logf("shadowplane status:\n%s", out)
	return rows
}

// scrapeMetrics fetches /metrics and returns every sample by its series,
// e.g. `shadowplane_xds_nacks_total{type="route"}`.
func scrapeMetrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	body, err := harness.GetJSON(context.Background(), base+"/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// logShadowplaneMetrics logs shadowplane's own series (not histogram
// buckets), sorted, to show what the test saw.
func logShadowplaneMetrics(t *testing.T, metrics map[string]float64) {
	t.Helper()
	var lines []string
	for series, v := range metrics {
		if strings.HasPrefix(series, "shadowplane_") && !strings.Contains(series, "_bucket{") {
			lines = append(lines, fmt.Sprintf("%s %v", series, v))
		}
	}
	sort.Strings(lines)
	t.Logf("metrics after the NACKs:\n%s", strings.Join(lines, "\n"))
}

func expectMetric(t *testing.T, metrics map[string]float64, series string, ok func(float64) bool, want string) {
	t.Helper()
	v, found := metrics[series]
	if !found {
		t.Errorf("metric %s is missing", series)
		return
	}
	if !ok(v) {
		t.Errorf("metric %s = %v, want %s", series, v, want)
	}
}
