package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/statnames"
	"github.com/shadowplane/shadowplane/xds"
)

// mirrorFixture is one namespace with a sidecar-fronted Service "entrance"
// (primary app on 127.0.0.1) and a shadow Service "entrance-shadow" whose
// EndpointSlice points at the shadow backend, served by a fresh control plane
// and a real Envoy.
type mirrorFixture struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	kube    *harness.Kube
	cp      *harness.ControlPlane
	primary *harness.Backend
	shadow  *harness.Backend
	sidecar *harness.Sidecar
	client  *http.Client
	delta   bool
}

type fixtureOptions struct {
	delta           bool
	allowedURLHosts []string
	listenAddress   string // sidecar listeners' bind address (default 127.0.0.1)
	// maxConnectionAge makes the sidecar reconnect this often (rotation
	// tests); 0 keeps the 30-minute default.
	maxConnectionAge time.Duration
	limits           xds.Limits // xDS bounds; zero fields keep the defaults
	dnsResolver      string     // the sidecar's only DNS server, host:port (default: the system's)
	// kube is the API server to use (default: the one the package shares),
	// for tests that stop it.
	kube *harness.Kube
	// logger receives the control plane's log (default: the test log).
	logger hclog.Logger
	// statsFlushInterval is how often the sidecar streams its copy stats
	// (default: the bootstrap's).
	statsFlushInterval time.Duration
}

func newMirrorFixture(t *testing.T, o fixtureOptions) *mirrorFixture {
	t.Helper()
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	f := &mirrorFixture{t: t, ctx: ctx, delta: o.delta, client: harness.NewKeepAliveClient(32)}
	f.kube = o.kube
	if f.kube == nil {
		f.kube = e.kube
		f.ns = newNamespace(t, ctx)
	} else {
		f.ns = fmt.Sprintf("it-own-%d", namespaceSeq.Add(1))
		must(t, f.kube.EnsureNamespace(ctx, f.ns))
	}

	listenPort := f.startBackends()
	logger := o.logger
	if logger == nil {
		logger = testLogger(t)
	}
	var err error
	if f.cp, err = harness.StartControlPlane(ctx, f.kube, harness.ControlPlaneOptions{
		Namespaces:       []string{f.ns},
		AllowedURLHosts:  o.allowedURLHosts,
		Logger:           logger,
		MaxConnectionAge: o.maxConnectionAge,
		Limits:           o.limits,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.cp.Stop(); err != nil {
			t.Errorf("control plane: %v", err)
		}
	})

	f.sidecar, err = f.cp.StartSidecar(ctx, f.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: t.TempDir(),
		NodeID: "entrance-" + f.ns, Namespace: f.ns, Service: "entrance",
		ListenPort: listenPort, AppPort: uint32(f.primary.Port),
		Delta: o.delta, ListenAddress: o.listenAddress, DNSResolver: o.dnsResolver,
		StatsFlushInterval: o.statsFlushInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			stats, _ := f.sidecar.Stats(context.Background(), `^cluster\.copy\|.*\.(upstream_rq_total|upstream_rq_completed|upstream_cx_connect_fail|upstream_rq_pending_overflow|upstream_rq_timeout|upstream_cx_total|upstream_rq_2xx|membership_healthy|upstream_cx_none_healthy)$`)
			t.Logf("shadow cluster stats: %v", stats)
			t.Logf("envoy log tail:\n%s", f.sidecar.LogTail(40))
		}
		f.sidecar.Stop()
	})
	return f
}

// startBackends starts the primary app (on loopback) and the shadow
// backend, and applies the Services "entrance" (targetPort: the sidecar
// listen port it returns) and "entrance-shadow" with the shadow's
// EndpointSlice.
func (f *mirrorFixture) startBackends() uint32 {
	t, e := f.t, env(f.t)
	var err error
	if f.primary, err = harness.StartBackend("primary", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.primary.Stop)
	if f.shadow, err = harness.StartBackend("shadow", e.endpointHost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.shadow.Stop)
	listenPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	must(t, f.kube.ApplyService(f.ctx, f.ns, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	must(t, f.kube.ApplyService(f.ctx, f.ns, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: f.shadow.Port}))
	must(t, f.kube.ApplyEndpointSlice(f.ctx, f.ns, "entrance-shadow", "http", f.shadow.Port, harness.SliceEndpoint{Address: e.endpointHost, Ready: true}))
	return listenPort
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// policyYAML renders the standard test policy: copy percent of entrance:http
// to entrance-shadow, with an optional match block (YAML, indented 2).
func policyYAML(percent string, match string) string {
	var b strings.Builder
	b.WriteString("policies:\n- name: entrance-to-staging\n  service: entrance\n  port: http\n")
	if match != "" {
		b.WriteString("  match:\n")
		for _, line := range strings.Split(strings.TrimRight(match, "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	fmt.Fprintf(&b, "  mirrors:\n  - service: entrance-shadow\n    port: http\n    name: staging\n    percent: %s\n", percent)
	return b.String()
}

// runtimeKey is the key of the standard policy's only mirror.
func (f *mirrorFixture) runtimeKey() string {
	return "shadowplane." + f.ns + ".entrance-to-staging.staging"
}

// applyPolicy writes the policy ConfigMap.
func (f *mirrorFixture) applyPolicy(yaml string) {
	f.t.Helper()
	must(f.t, f.kube.ApplyPolicyConfigMap(f.ctx, f.ns, "mirror-policies", "policies.yaml", yaml))
}

// waitRuntime waits until Envoy's /runtime holds the share ppm (parts per
// million) for key, and returns when it first saw it.
func (f *mirrorFixture) waitRuntime(key string, ppm uint32) time.Time {
	f.t.Helper()
	var last string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		v, ok, err := f.sidecar.RuntimeValue(f.ctx, key)
		last = v
		return ok && harness.RuntimeShareIs(v, ppm), err
	})
	if err != nil {
		f.t.Fatalf("envoy runtime %s never became %d ppm (last %q): %v", key, ppm, last, err)
	}
	return time.Now()
}

// shadowCluster is the Envoy cluster of the standard shadow Service.
func (f *mirrorFixture) shadowCluster() string {
	return f.mirrorCluster("entrance-to-staging")
}

// mirrorCluster is the Envoy cluster of the mirror "staging" of the named
// policy: every mirror has a cluster of its own.
func (f *mirrorFixture) mirrorCluster(policy string) string {
	return statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: policy, Mirror: "staging"})
}

// waitApplied waits until Envoy runs the standard policy at ppm: the runtime
// value is in and the shadow cluster has its endpoint. (A new shadow cluster
// warms while its EDS arrives; copies sent before that find no cluster and
// are dropped, so tests that count copies wait for it.)
func (f *mirrorFixture) waitApplied(ppm uint32) {
	f.t.Helper()
	f.waitRuntime(f.runtimeKey(), ppm)
	f.waitClusterHosts(f.shadowCluster(), 1)
}

// waitClusterHosts waits until Envoy has n hosts in cluster.
func (f *mirrorFixture) waitClusterHosts(cluster string, n int) {
	f.t.Helper()
	var last []string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		hosts, err := f.sidecar.ClusterHosts(f.ctx, cluster)
		last = hosts
		return len(hosts) == n, err
	})
	if err != nil {
		f.t.Fatalf("envoy cluster %s never had %d hosts (last %v): %v", cluster, n, last, err)
	}
}

// waitRouteMirrors waits until Envoy's active route config has n mirror
// policies in total, i.e. the routes the control plane sent are in force.
func (f *mirrorFixture) waitRouteMirrors(n int) {
	f.t.Helper()
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		dump, err := f.sidecar.ConfigDump(f.ctx, "dynamic_route_configs")
		if err != nil {
			return false, err
		}
		return strings.Count(string(dump), `"runtime_key"`) == n, nil
	})
	if err != nil {
		f.t.Fatalf("route config never had %d mirror policies: %v", n, err)
	}
}

func (f *mirrorFixture) get(ctx context.Context, path string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.sidecar.URL+path, nil)
	return req
}

// steadyTraffic is GET requests through the sidecar at a fixed rate, one
// second at a time, until Stop.
type steadyTraffic struct {
	stop         chan struct{}
	done         chan struct{}
	sent, failed atomic.Int64
	firstFailure atomic.Value
	Stop         func() // idempotent; waits for the last second to end
}

// startTraffic sends rate requests per second to /<prefix>/<second>/<i>.
func (f *mirrorFixture) startTraffic(rate int, prefix string) *steadyTraffic {
	s := &steadyTraffic{stop: make(chan struct{}), done: make(chan struct{})}
	s.Stop = sync.OnceFunc(func() { close(s.stop); <-s.done })
	f.t.Cleanup(s.Stop)
	go func() {
		defer close(s.done)
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			default:
			}
			res := harness.RunAtRate(f.ctx, f.client, rate, time.Second, func(ctx context.Context, j int) *http.Request {
				return f.get(ctx, fmt.Sprintf("/%s/%d/%d", prefix, i, j))
			})
			s.sent.Add(int64(len(res.All)))
			if n := res.Errors(); n > 0 {
				s.failed.Add(int64(n))
				s.firstFailure.CompareAndSwap(nil, res.FirstError())
			}
		}
	}()
	return s
}
