package xds

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

// waitTimeout bounds every wait for something the server should do.
const waitTimeout = adsclient.DefaultTimeout

// harness runs a Server behind go-control-plane's real gRPC server on a
// loopback port, with a client connection to it.
type harness struct {
	t    *testing.T
	srv  *Server
	reg  *prometheus.Registry
	conn *grpc.ClientConn
	// stopRun ends the server's Run and waits for it to return.
	stopRun func()
	addr    string
}

type harnessOption func(*Options)

// newHarness starts a Server translating with translate (fakeTranslate
// when nil).
func newHarness(t *testing.T, translate func(*translator.World, nodemeta.NodeGroup) *translator.Output, opts ...harnessOption) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := Options{
		Logger:   hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: newTestWriter(t)}),
		Registry: reg,
	}
	for _, opt := range opts {
		opt(&o)
	}
	srv := New(o)
	if translate == nil {
		translate = fakeTranslate
	}
	srv.translate = translate

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := srv.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		<-runDone
		gs.Stop()
	})
	stopRun := func() {
		cancel()
		<-runDone
	}
	return &harness{t: t, srv: srv, reg: reg, conn: conn, stopRun: stopRun, addr: lis.Addr().String()}
}

// connWithToken is a new client connection whose streams carry
// "authorization: Bearer <token>", as Envoy's credential injector sends it.
func (h *harness) connWithToken(token string) *grpc.ClientConn {
	h.t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	h.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// bearer is per-RPC credentials that send a bearer token in plain text
// (the test server has no TLS).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// testWriter sends server logs to the test log, shown on failure, and
// drops those written after the test ends (a late stream goroutine must not
// log to a finished test).
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxy returns the status of the proxy with the given node ID.
func (h *harness) proxy(id string) (ProxyStatus, bool) {
	for _, p := range h.srv.Proxies() {
		if p.ID == id {
			return p, true
		}
	}
	return ProxyStatus{}, false
}

// waitStatus waits until every listed type of proxy id has the status.
func (h *harness) waitStatus(id, status string, typeNames ...string) ProxyStatus {
	h.t.Helper()
	var last ProxyStatus
	eventually(h.t, id+" "+status+" for "+strings.Join(typeNames, ","), func() bool {
		p, ok := h.proxy(id)
		if !ok {
			return false
		}
		last = p
		for _, name := range typeNames {
			if p.Types[name].Status != status {
				return false
			}
		}
		return true
	})
	return last
}

// allTypeNames are the short names of every served type, in ADS order.
var allTypeNames = adsclient.TypeNames()

// groupVersions returns the current snapshot versions of testGroup by
// short type name.
func (h *harness) groupVersions() map[string]string {
	h.t.Helper()
	g, ok := h.srv.Snapshots()[testGroup.Key()]
	if !ok {
		h.t.Fatalf("no snapshot for %s", testGroup.Key())
	}
	out := map[string]string{}
	for name, st := range g.Types {
		out[name] = st.Version
	}
	return out
}

// counterValue reads one labelled series of a counter from the registry.
func (h *harness) counterValue(name, label, value string) float64 {
	h.t.Helper()
	for _, m := range h.gather(name) {
		if label == "" || labelIs(m, label, value) {
			return m.GetCounter().GetValue()
		}
	}
	h.t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

func (h *harness) gaugeValue(name string) float64 {
	h.t.Helper()
	ms := h.gather(name)
	if len(ms) != 1 {
		h.t.Fatalf("%s: %d series, want 1", name, len(ms))
	}
	return ms[0].GetGauge().GetValue()
}

func (h *harness) histogramCount(name string) uint64 {
	h.t.Helper()
	ms := h.gather(name)
	if len(ms) != 1 {
		h.t.Fatalf("%s: %d series, want 1", name, len(ms))
	}
	return ms[0].GetHistogram().GetSampleCount()
}

func (h *harness) gather(name string) []*dto.Metric {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	h.t.Fatalf("metric %s not registered", name)
	return nil
}

func labelIs(m *dto.Metric, label, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == label && l.GetValue() == value {
			return true
		}
	}
	return false
}

// subscribedNames are the resource names an Envoy sidecar of testGroup
// subscribes to (nil: wildcard).
var subscribedNames = map[string][]string{
	"endpoint": {testShadowName},
	"route":    {testListenerName},
	"runtime":  {translator.RuntimeLayerName},
}

// sotw opens a SotW ADS stream subscribing to fakeTranslate's names.
func (h *harness) sotw(node *corev3.Node) *adsclient.SotW {
	h.t.Helper()
	return adsclient.NewSotW(h.t, h.conn, node, subscribedNames)
}

// delta opens a delta ADS stream subscribing to fakeTranslate's names.
func (h *harness) delta(node *corev3.Node) *adsclient.Delta {
	h.t.Helper()
	return adsclient.NewDelta(h.t, h.conn, node, subscribedNames)
}
