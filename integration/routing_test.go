package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/statnames"
)

// routingFixture is the mirror fixture plus Services that routing rules
// send real requests to: entrance-edge (the gray version), entrance-v2 (the
// canary) and entrance-v3 (a second canary), each its own backend; and
// entrance-empty, a Service without any ready endpoint.
type routingFixture struct {
	*mirrorFixture
	edge, v2, v3 *harness.Backend
}

func newRoutingFixture(t *testing.T, o fixtureOptions) *routingFixture {
	t.Helper()
	f := &routingFixture{mirrorFixture: newMirrorFixture(t, o)}
	host := env(t).endpointHost
	for _, b := range []struct {
		name string
		dst  **harness.Backend
	}{{"entrance-edge", &f.edge}, {"entrance-v2", &f.v2}, {"entrance-v3", &f.v3}} {
		backend, err := harness.StartBackend(b.name, host)
		must(t, err)
		t.Cleanup(backend.Stop)
		*b.dst = backend
		must(t, f.kube.ApplyService(f.ctx, f.ns, b.name, harness.ServicePort{Name: "http", Port: 80, TargetPort: backend.Port}))
		must(t, f.kube.ApplyEndpointSlice(f.ctx, f.ns, b.name, "http", backend.Port, harness.SliceEndpoint{Address: host, Ready: true}))
	}
	port, err := harness.ClosedPort(host)
	must(t, err)
	must(t, f.kube.ApplyService(f.ctx, f.ns, "entrance-empty", harness.ServicePort{Name: "http", Port: 80, TargetPort: port}))
	must(t, f.kube.ApplyEndpointSlice(f.ctx, f.ns, "entrance-empty", "http", port, harness.SliceEndpoint{Address: host, Ready: false}))
	return f
}

// weightKey is the runtime key of one weight of a rule: the stable version
// ("app") or a routeTo Service.
func (f *routingFixture) weightKey(rule, service string) string {
	prefix := "shadowplane." + f.ns + "." + rule + ".routeTo."
	if service == "app" {
		return fmt.Sprintf("%sapp|%d", prefix, f.primary.Port)
	}
	return prefix + "route|" + f.ns + "|" + service + "|80"
}

// waitWeight waits until Envoy has the weight (parts per million) in force.
func (f *routingFixture) waitWeight(rule, service string, ppm uint32) {
	f.t.Helper()
	key := f.weightKey(rule, service)
	var last string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		v, ok, err := f.sidecar.RuntimeValue(f.ctx, key)
		last = v
		got, parseErr := strconv.ParseFloat(v, 64)
		return ok && parseErr == nil && got == float64(ppm), err
	})
	if err != nil {
		f.t.Fatalf("envoy runtime %s never became %d (last %q): %v", key, ppm, last, err)
	}
}

// waitRoutes waits until Envoy's route configuration names exactly these
// routing rules (by their runtime key prefixes).
func (f *routingFixture) waitRoutes(rules ...string) {
	f.t.Helper()
	re := regexp.MustCompile(`"runtime_key_prefix": "shadowplane\.[^.]+\.([^.]+)\.routeTo"`)
	var last []string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		dump, err := f.sidecar.ConfigDump(f.ctx, "dynamic_route_configs")
		if err != nil {
			return false, err
		}
		last = nil
		for _, m := range re.FindAllStringSubmatch(string(dump), -1) {
			if !slices.Contains(last, m[1]) {
				last = append(last, m[1])
			}
		}
		slices.Sort(last)
		want := slices.Sorted(slices.Values(rules))
		return slices.Equal(last, want), nil
	})
	if err != nil {
		f.t.Fatalf("route config never routed by exactly %v (last %v): %v", rules, last, err)
	}
}

func (f *routingFixture) resetBackends() {
	for _, b := range []*harness.Backend{f.primary, f.shadow, f.edge, f.v2, f.v3} {
		b.Reset()
	}
}

const grayPolicies = `policies:
- name: gray-header
  service: entrance
  match:
    headers: [{name: x-gray, exact: "1"}]
  routeTo: [{service: entrance-edge}]
- name: gray-cookie
  service: entrance
  match:
    cookies: [{name: gray, exact: "1"}]
  routeTo: [{service: entrance-edge}]
- name: gray-ticket
  service: entrance
  match:
    query: [{name: ticket, present: true}]
  routeTo: [{service: entrance-edge}]
`

// TestRoutingMarkers: requests with a marker (header, cookie or query
// parameter) reach the edge Service, every other request the stable
// version, near misses included.
func TestRoutingMarkers(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newRoutingFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(grayPolicies)
			f.waitRoutes("gray-cookie", "gray-header", "gray-ticket")
			f.waitWeight("gray-ticket", "entrance-edge", 1_000_000)

			type variant struct {
				path    string
				headers map[string]string
				edge    bool
			}
			variants := []variant{
				{"/a", map[string]string{"x-gray": "1"}, true},
				{"/a", map[string]string{"cookie": "session=x; gray=1"}, true},
				{"/a?ticket=T-1", nil, true},
				{"/a?x=1&ticket", nil, true},
				{"/a", nil, false},
				{"/a", map[string]string{"x-gray": "0"}, false},
				{"/a", map[string]string{"x-gray": "11"}, false},
				{"/a", map[string]string{"cookie": "gray=10; x=1"}, false},
				{"/a", map[string]string{"cookie": "xgray=1"}, false},
				{"/a?tickets=1", nil, false},
				{"/a?x=ticket", nil, false},
			}
			const rounds = 20
			n := rounds * len(variants)
			res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
				v := variants[i%len(variants)]
				req := f.get(ctx, v.path)
				for k, val := range v.headers {
					req.Header.Set(k, val)
				}
				req.Header.Set("x-variant", fmt.Sprint(i%len(variants)))
				return req
			})
			if res.Errors() != 0 {
				t.Fatalf("%d of %d requests failed; first: %s", res.Errors(), n, res.FirstError())
			}
			for i, v := range variants {
				tag := fmt.Sprint(i)
				onEdge := f.edge.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-variant") == tag })
				onStable := f.primary.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-variant") == tag })
				wantEdge, wantStable := 0, rounds
				if v.edge {
					wantEdge, wantStable = rounds, 0
				}
				if onEdge != wantEdge || onStable != wantStable {
					t.Errorf("%s %v: %d on edge, %d on stable; want %d and %d", v.path, v.headers, onEdge, onStable, wantEdge, wantStable)
				}
			}
		})
	}
}

func canaryPolicy(weight string) string {
	return "policies:\n- name: canary\n  service: entrance\n  routeTo:\n  - {service: entrance-v2, name: canary, weight: " + weight + "}\n"
}

// TestRoutingCanaryShare: a 5 % canary gets a share of 4,000 requests
// within the binomial interval of harness.ShareAlpha; the rest reach the stable version.
func TestRoutingCanaryShare(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	f.applyPolicy(canaryPolicy("5"))
	f.waitRoutes("canary")
	f.waitWeight("canary", "entrance-v2", 50_000)
	f.waitWeight("canary", "app", 950_000)

	const n = 4000
	f.sendCounting(n, 0, "", "")
	got := f.v2.Count()
	checkShare(t, "canary at 5 %", got, n, 0.05)
	if stable := f.primary.Count(); stable+got != n {
		t.Errorf("stable %d + canary %d = %d, want %d", stable, got, stable+got, n)
	}
}

// resetStats are Envoy's counters of reset or broken downstream and
// upstream streams; a zero-loss change leaves them all unchanged.
const resetStats = `^(http\.inbound_[0-9]+\.downstream_(rq_rx_reset|rq_tx_reset|cx_destroy_remote_active_rq|cx_destroy_local_active_rq|rq_5xx)|cluster\.(app|route)\|.*\.(upstream_rq_5xx|upstream_cx_none_healthy|upstream_rq_tx_reset|upstream_rq_rx_reset|upstream_cx_destroy_with_active_rq))$`

// checkNoResets fails when any of Envoy's resetStats moved since before,
// and when the listener's counters are missing (the check would prove
// nothing).
func (f *routingFixture) checkNoResets(before map[string]uint64) {
	f.t.Helper()
	after, err := f.sidecar.Stats(f.ctx, resetStats)
	must(f.t, err)
	for name, n := range after {
		if n != before[name] {
			f.t.Errorf("Envoy %s went from %d to %d", name, before[name], n)
		}
	}
	if _, ok := after[fmt.Sprintf("http.inbound_%d.downstream_rq_5xx", f.sidecar.ListenPort)]; !ok {
		f.t.Errorf("Envoy lacks the listener's reset and 5xx stats (%s): the check proves nothing; got %v", resetStats, after)
	}
}

// TestRoutingZeroLoss: under 200 requests/s on keep-alive connections,
// stepping a canary 5 → 25 → 100 → 0, a blue-green flip and back, and
// adding and removing a marker rule fail no request and reset no
// connection, in the client or in Envoy; weight steps are RTDS updates
// alone.
func TestRoutingZeroLoss(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newRoutingFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(canaryPolicy("0"))
			f.waitRoutes("canary")
			f.waitWeight("canary", "app", 1_000_000)
			resetsBefore, err := f.sidecar.Stats(f.ctx, resetStats)
			must(t, err)
			pushesBefore := f.cp.XDS.Pushes()

			steps := []struct {
				what   string
				policy string
				wait   func()
			}{}
			for _, w := range []string{"5", "25", "100", "0"} {
				steps = append(steps, struct {
					what   string
					policy string
					wait   func()
				}{"weight " + w, canaryPolicy(w), func() { f.waitWeight("canary", "entrance-v2", percentPPM(t, w)) }})
			}
			blueGreen := func(green string) string {
				blue := "100"
				if green == "100" {
					blue = "0"
				}
				return "policies:\n- name: canary\n  service: entrance\n  routeTo:\n  - {service: entrance-v2, name: blue, weight: " + blue + "}\n  - {service: entrance-v3, name: green, weight: " + green + "}\n"
			}
			add := func(what, policy string, wait func()) {
				steps = append(steps, struct {
					what   string
					policy string
					wait   func()
				}{what, policy, wait})
			}
			add("blue-green: blue", blueGreen("0"), func() { f.waitWeight("canary", "entrance-v2", 1_000_000); f.waitWeight("canary", "app", 0) })
			add("blue-green: flip to green", blueGreen("100"), func() { f.waitWeight("canary", "entrance-v3", 1_000_000) })
			add("blue-green: flip back", blueGreen("0"), func() { f.waitWeight("canary", "entrance-v2", 1_000_000) })
			withMarker := blueGreen("0") + strings.TrimPrefix(grayPolicies, "policies:\n")
			add("add marker rules", withMarker, func() { f.waitRoutes("canary", "gray-cookie", "gray-header", "gray-ticket") })
			add("remove marker rules", blueGreen("0"), func() { f.waitRoutes("canary") })
			add("back to stable", canaryPolicy("0"), func() { f.waitWeight("canary", "app", 1_000_000) })

			stepTime := 1500 * time.Millisecond
			load := make(chan harness.Results, 1)
			start := time.Now()
			go func() {
				load <- harness.RunAtRate(f.ctx, f.client, liveRate, time.Duration(len(steps)+1)*stepTime,
					func(ctx context.Context, i int) *http.Request {
						req := f.get(ctx, fmt.Sprintf("/zero-loss/%d", i))
						if i%4 == 0 {
							req.Header.Set("x-gray", "1")
						}
						return req
					})
			}()
			for i, s := range steps {
				time.Sleep(time.Until(start.Add(time.Duration(i+1) * stepTime)))
				f.applyPolicy(s.policy)
				s.wait()
				t.Logf("%s: in force after %v", s.what, time.Since(start.Add(time.Duration(i+1)*stepTime)).Round(time.Millisecond))
			}
			res := <-load
			if res.Errors() != 0 {
				t.Errorf("%d of %d requests failed; first: %s", res.Errors(), len(res.All), res.FirstError())
			}
			served := f.primary.Count() + f.v2.Count() + f.v3.Count() + f.edge.Count()
			if served != len(res.All) {
				t.Errorf("backends served %d requests, the client sent %d", served, len(res.All))
			}
			if f.v2.Count() == 0 || f.v3.Count() == 0 || f.edge.Count() == 0 {
				t.Errorf("every version must have served: v2 %d, v3 %d, edge %d", f.v2.Count(), f.v3.Count(), f.edge.Count())
			}
			t.Logf("%d requests: stable %d, v2 %d, v3 %d, edge %d", len(res.All), f.primary.Count(), f.v2.Count(), f.v3.Count(), f.edge.Count())
			f.checkNoResets(resetsBefore)
			// The four weight steps (and the flips) changed RTDS; only adding
			// and removing rules, and changing backends, touched routes and
			// clusters.
			pushes := f.cp.XDS.Pushes()
			if got := pushes["runtime"] - pushesBefore["runtime"]; got < 8 {
				t.Errorf("runtime pushed %d times, want one per weight change (at least 8)", got)
			}
		})
	}
}

// TestRoutingWeightIsRTDSOnly: a weight change re-sends RTDS alone: no
// listener, route, cluster or endpoint is pushed or rebuilt. An invalid
// weight is rejected with an Event naming the field, and the last valid
// weight stays in force.
func TestRoutingWeightIsRTDSOnly(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	f.applyPolicy(canaryPolicy("5"))
	f.waitRoutes("canary")
	f.waitWeight("canary", "entrance-v2", 50_000)
	envoyBefore := configCounters(t, f.mirrorFixture)
	pushesBefore := f.cp.XDS.Pushes()
	for _, w := range []string{"25", "100", "0", "12.5"} {
		f.applyPolicy(canaryPolicy(w))
		f.waitWeight("canary", "entrance-v2", percentPPM(t, w))
	}
	f.applyPolicy(canaryPolicy("101"))
	t.Logf("event: %s", f.waitWarningEvent("PolicyRejected", "routeTo[0].weight: must be a number from 0 to 100"))
	f.waitWeight("canary", "entrance-v2", 125_000)
	checkCounterDeltas(t, "control-plane pushes", pushesBefore, f.cp.XDS.Pushes(), map[string]uint64{"runtime": 4})
	checkOnlyChanged(t, envoyBefore, configCounters(t, f.mirrorFixture), regexp.MustCompile(`^runtime\.(update_attempt|update_success|load_success|override_dir_not_exists)$`))
}

// TestRoutingBackendWithoutEndpoints: a canary whose Service has no ready
// endpoint gets no request and causes no error: its share stays on the
// stable version, and the condition shows as a BackendNotReady Event on
// the ConfigMap and as shadowplane_route_backends_unready. When an endpoint
// turns ready, the canary gets its share and the metric drops to 0.
func TestRoutingBackendWithoutEndpoints(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	f.applyPolicy("policies:\n- name: canary\n  service: entrance\n  routeTo:\n  - {service: entrance-empty, weight: 50}\n")
	f.waitRoutes("canary")
	f.waitWeight("canary", "entrance-empty", 0)
	f.waitWeight("canary", "app", 1_000_000)

	const n = 400
	f.sendCounting(n, 0, "", "")
	if got := f.primary.Count(); got != n {
		t.Errorf("stable got %d of %d requests", got, n)
	}
	stats, err := f.sidecar.Stats(f.ctx, `^cluster\.route\|.*\.(upstream_rq_total|upstream_cx_none_healthy)$`)
	must(t, err)
	for name, v := range stats {
		if v != 0 {
			t.Errorf("Envoy %s = %d, want 0", name, v)
		}
	}
	if len(stats) == 0 {
		t.Error("Envoy has no stats of the routeTo cluster: the check proves nothing")
	}
	msg := f.waitWarningEvent("BackendNotReady", "entrance-empty")
	t.Logf("event: %s", msg)
	unready := `shadowplane_route_backends_unready`
	if got := scrapeMetrics(t, f.cp.HTTPURL())[unready]; got != 1 {
		t.Errorf("%s = %v, want 1", unready, got)
	}

	// The endpoint turns ready: the backend gets its share.
	backend, err := harness.StartBackend("entrance-empty", env(t).endpointHost)
	must(t, err)
	t.Cleanup(backend.Stop)
	must(t, f.kube.ApplyService(f.ctx, f.ns, "entrance-empty", harness.ServicePort{Name: "http", Port: 80, TargetPort: backend.Port}))
	must(t, f.kube.ApplyEndpointSlice(f.ctx, f.ns, "entrance-empty", "http", backend.Port, harness.SliceEndpoint{Address: env(t).endpointHost, Ready: true}))
	f.waitWeight("canary", "entrance-empty", 500_000)
	f.sendCounting(n, 0, "", "")
	checkShare(t, "the backend once ready, at 50 %", backend.Count(), n, 0.5)
	err = harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) {
		return scrapeMetrics(t, f.cp.HTTPURL())[unready] == 0, nil
	})
	if err != nil {
		t.Errorf("%s never dropped to 0 once the endpoint was ready", unready)
	}
}

// TestRoutingPartialOverlaps: the request table of the golden case
// routing-partial-overlaps, on the real Envoy: each request is copied by
// exactly the policies whose matches it satisfies (told apart by the copy
// marker each policy sets) and routed by the most specific rule.
func TestRoutingPartialOverlaps(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	f.applyPolicy(`policies:
- name: api
  service: entrance
  match: {pathPrefix: /api/}
  mirrors: [{service: entrance-shadow, percent: 100}]
- name: tenant-beta
  service: entrance
  match:
    headers: [{name: tenant, exact: beta}]
  mirrors: [{service: entrance-shadow, percent: 100}]
- name: get
  service: entrance
  match: {methods: [GET]}
  mirrors: [{service: entrance-shadow, percent: 100}]
- name: beta-to-v2
  service: entrance
  match:
    headers: [{name: tenant, exact: beta}]
  routeTo: [{service: entrance-v2}]
- name: api-canary
  service: entrance
  match: {pathPrefix: /api/}
  routeTo: [{service: entrance-v3, weight: 100}]
`)
	f.waitRoutes("api-canary", "beta-to-v2")
	f.waitWeight("api-canary", "entrance-v3", 1_000_000)
	for _, copier := range []string{"api", "tenant-beta", "get"} {
		f.waitClusterHosts(statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: copier, Mirror: f.ns + ".entrance-shadow"}), 1)
	}

	data, err := os.ReadFile(filepath.Join(testtools.RepoRoot(), "translator", "testdata", "routing-partial-overlaps", "requests.yaml"))
	must(t, err)
	var rows []struct {
		Request struct {
			Method  string            `json:"method"`
			Path    string            `json:"path"`
			Headers map[string]string `json:"headers"`
		} `json:"request"`
		CopiedBy []string `json:"copiedBy"`
		RoutedBy string   `json:"routedBy"`
	}
	must(t, yaml.UnmarshalStrict(data, &rows))
	backendOf := map[string]*harness.Backend{"": f.primary, "beta-to-v2": f.v2, "api-canary": f.v3}
	for i, row := range rows {
		req, _ := http.NewRequestWithContext(f.ctx, row.Request.Method, f.sidecar.URL+row.Request.Path, nil)
		for k, v := range row.Request.Headers {
			req.Header.Set(k, v)
		}
		seq := fmt.Sprint(i)
		req.Header.Set("x-request-seq", seq)
		if r := harness.Do(f.client, req); r.Err != nil || r.Status != http.StatusOK {
			t.Fatalf("%s %s: %v %d", row.Request.Method, row.Request.Path, r.Err, r.Status)
		}
		for rule, b := range backendOf {
			got := b.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-request-seq") == seq })
			want := 0
			if rule == row.RoutedBy {
				want = 1
			}
			if got != want {
				t.Errorf("%s %s %v: %d at the backend of %q, want %d", row.Request.Method, row.Request.Path, row.Request.Headers, got, rule, want)
			}
		}
	}
	f.shadow.WaitCount(f.ctx, 1<<30, 500*time.Millisecond)
	for i, row := range rows {
		seq := fmt.Sprint(i)
		var copiedBy []string
		for _, c := range f.shadow.Requests() {
			if c.Header.Get("x-request-seq") == seq {
				copiedBy = append(copiedBy, strings.TrimPrefix(c.Header.Get("x-shadowplane-copy"), f.ns+"/"))
			}
		}
		slices.Sort(copiedBy)
		want := slices.Sorted(slices.Values(row.CopiedBy))
		if !slices.Equal(copiedBy, want) {
			t.Errorf("%s %s %v: copied by %v, want %v", row.Request.Method, row.Request.Path, row.Request.Headers, copiedBy, want)
		}
	}
}

// TestRoutingBackendLosesEndpointsUnderLoad: under 200 requests/s, the
// canary's only endpoint turning unready and ready again fails no request:
// its share moves to the stable version and back.
func TestRoutingBackendLosesEndpointsUnderLoad(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newRoutingFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(canaryPolicy("50"))
			f.waitRoutes("canary")
			f.waitWeight("canary", "entrance-v2", 500_000)
			resetsBefore, err := f.sidecar.Stats(f.ctx, resetStats)
			must(t, err)
			host := env(t).endpointHost
			setReady := func(ready bool) {
				must(t, f.kube.ApplyEndpointSlice(f.ctx, f.ns, "entrance-v2", "http", f.v2.Port, harness.SliceEndpoint{Address: host, Ready: ready}))
			}

			load := make(chan harness.Results, 1)
			start := time.Now()
			go func() {
				load <- harness.RunAtRate(f.ctx, f.client, liveRate, 4*time.Second, func(ctx context.Context, i int) *http.Request {
					return f.get(ctx, fmt.Sprintf("/unready/%d", i))
				})
			}()
			time.Sleep(time.Until(start.Add(time.Second)))
			setReady(false)
			f.waitWeight("canary", "entrance-v2", 0)
			f.waitWeight("canary", "app", 1_000_000)
			time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
			setReady(true)
			f.waitWeight("canary", "entrance-v2", 500_000)
			res := <-load
			if res.Errors() != 0 {
				t.Errorf("%d of %d requests failed; first: %s", res.Errors(), len(res.All), res.FirstError())
			}
			if served := f.primary.Count() + f.v2.Count(); served != len(res.All) {
				t.Errorf("backends served %d, the client sent %d", served, len(res.All))
			}
			f.checkNoResets(resetsBefore)
			t.Logf("%d requests: stable %d, canary %d", len(res.All), f.primary.Count(), f.v2.Count())
		})
	}
}

// TestRoutingRouteCap: eight copy policies whose matches all overlap would
// need 255 routes; the eighth by name is left out of Envoy's routes and
// named in a RouteCapExceeded Event, and the other seven copy.
func TestRoutingRouteCap(t *testing.T) {
	f := newRoutingFixture(t, fixtureOptions{})
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "- name: p%d\n  service: entrance\n  match: {headers: [{name: x-%d, present: true}]}\n  mirrors: [{service: entrance-shadow, name: m, percent: 100}]\n", i, i)
	}
	f.applyPolicy(b.String())
	t.Logf("event: %s", f.waitWarningEvent("RouteCapExceeded", `policy "p7": match: with this policy, the policies of Service `+f.ns+`/entrance port "" would need 255 routes`))
	f.waitRouteMirrors(7 * 64) // each of p0..p6 is on the 64 of the 127 routes that contain its match
	dump, err := f.sidecar.ConfigDump(f.ctx, "dynamic_route_configs")
	must(t, err)
	if strings.Contains(string(dump), "shadowplane."+f.ns+".p7.") {
		t.Error("p7 is in Envoy's routes although it is over the cap")
	}
	for i := 0; i < 7; i++ {
		f.waitClusterHosts(statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: fmt.Sprintf("p%d", i), Mirror: "m"}), 1)
	}
	req := f.get(f.ctx, "/capped")
	for i := 0; i < 8; i++ {
		req.Header.Set(fmt.Sprintf("x-%d", i), "1")
	}
	if r := harness.Do(f.client, req); r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("request: %v %d", r.Err, r.Status)
	}
	if got := f.shadow.WaitCount(f.ctx, 7, 500*time.Millisecond); got != 7 {
		t.Errorf("a request matching all eight was copied %d times, want 7 (p0..p6)", got)
	}
}
