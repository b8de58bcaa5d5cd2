package integration

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// TestTrustRefusesUnverifiedClients: against the real API server's
// TokenReview, a client without a valid token is refused with
// Unauthenticated, and a client with a valid identity that claims another
// namespace, pod or Service is refused with PermissionDenied before it
// receives anything, while the real sidecar beside them copies on over TLS.
func TestTrustRefusesUnverifiedClients(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	f.applyPolicy(policyYAML("100", ""))
	f.waitApplied(1_000_000)
	kube := env(t).kube
	caPEM, err := os.ReadFile(f.cp.Certs.CAFile)
	must(t, err)

	// A second namespace with its own legitimate sidecar identity.
	other := newNamespace(t, f.ctx)
	must(t, kube.ApplyService(f.ctx, other, "payments", harness.ServicePort{Name: "http", Port: 80, TargetPort: 15001}))
	intruder, err := kube.NewSidecarIdentity(f.ctx, other, "payments", "payments", "payments-0", t.TempDir())
	must(t, err)
	intruderToken, err := os.ReadFile(intruder.TokenFile)
	must(t, err)
	otherAudience, err := kube.MintToken(f.ctx, other, "payments", "payments-0", intruder.PodUID, "https://kubernetes.default.svc")
	must(t, err)
	ownToken, err := os.ReadFile(f.sidecar.Identity.TokenFile)
	must(t, err)

	node := func(id, namespace, service string) nodemeta.Metadata {
		return nodemeta.Metadata{NodeID: id, Namespace: namespace, Service: service, Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}
	}
	tests := []struct {
		name  string
		token string
		node  nodemeta.Metadata
		code  codes.Code
	}{
		{"no token", "", node("payments-0", other, "payments"), codes.Unauthenticated},
		{"a forged token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", node("payments-0", other, "payments"), codes.Unauthenticated},
		{"a token for another audience", otherAudience, node("payments-0", other, "payments"), codes.Unauthenticated},
		{"namespace A's identity claiming namespace B", string(intruderToken), node("payments-0", f.ns, "entrance"), codes.PermissionDenied},
		{"namespace A's identity claiming B's pod name", string(intruderToken), node("entrance-"+f.ns, f.ns, "entrance"), codes.PermissionDenied},
		{"an identity claiming a Service that does not select it", string(ownToken), node("entrance-"+f.ns, f.ns, "entrance-shadow"), codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := harness.DialXDS(f.cp.XDSAddr.String(), caPEM, tc.token)
			must(t, err)
			defer conn.Close()
			c := adsclient.NewSotW(t, conn, tc.node.Node(), nil)
			c.SubscribeAll()
			err = c.Closed() // fails the test if any response arrives first
			if status.Code(err) != tc.code {
				t.Fatalf("stream ended with %v, want %v", err, tc.code)
			}
		})
	}
	// The identity's own claim is served.
	conn, err := harness.DialXDS(f.cp.XDSAddr.String(), caPEM, string(intruderToken))
	must(t, err)
	defer conn.Close()
	own := adsclient.NewSotW(t, conn, node("payments-0", other, "payments").Node(), nil)
	own.SubscribeAll()
	own.Collect(adsclient.TypeNames()...)

	metrics, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/metrics")
	must(t, err)
	for _, want := range []string{
		`shadowplane_xds_refused_streams_total{reason="unauthenticated"} 3`,
		`shadowplane_xds_refused_streams_total{reason="permission_denied"} 3`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A client without TLS gets nowhere.
	plain, err := http.Post("http://"+f.cp.XDSAddr.String()+"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", "application/grpc", nil)
	if err == nil {
		plain.Body.Close()
		t.Errorf("a plain-text request to the xDS port was answered: %s", plain.Status)
	}

	// Meanwhile the real sidecar copies every request over its TLS stream.
	got := harness.SendN(f.ctx, f.client, 20, 4, func(ctx context.Context, i int) *http.Request { return f.get(ctx, "/trust") })
	if got.Errors() != 0 {
		t.Fatalf("primary errors: %s", got.FirstError())
	}
	if err := harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) { return f.shadow.Count() >= 20, nil }); err != nil {
		t.Errorf("copies: %d of 20", f.shadow.Count())
	}
}

// TestTrustRotationDuringTraffic: under steady load, the serving
// certificate is re-issued, then the CA itself is rotated (both CAs
// trusted first, then a certificate from the new one), and the sidecar's
// token is refreshed. Envoy reconnects on its own (MaxConnectionAge), keeps
// receiving percent changes, never restarts, and no primary request fails.
func TestTrustRotationDuringTraffic(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{maxConnectionAge: 2 * time.Second})
	f.applyPolicy(policyYAML("10", ""))
	f.waitApplied(100_000)
	pid := f.sidecar.PID()
	kube := env(t).kube
	certsOf := f.cp.Certs
	xdsAddr := f.cp.XDSAddr.String()

	loadCtx, stopLoad := context.WithCancel(f.ctx)
	var load harness.Results
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		load = harness.RunAtRate(loadCtx, f.client, 200, time.Minute, func(ctx context.Context, i int) *http.Request { return f.get(ctx, "/rotation") })
	}()

	handshakes := func() uint64 {
		n, _ := f.sidecar.Stat(f.ctx, "cluster.shadowplane_xds.ssl.handshake")
		return n
	}
	// percentReaches changes the percent and waits for Envoy to apply it:
	// proof that a stream is up with whatever certificate is now served.
	percentReaches := func(percent string, ppm uint32) {
		t.Helper()
		f.applyPolicy(policyYAML(percent, ""))
		f.waitRuntime(f.runtimeKey(), ppm)
	}
	reconnected := func(after uint64) {
		t.Helper()
		if err := harness.WaitUntil(f.ctx, 15*time.Second, func() (bool, error) { return handshakes() > after, nil }); err != nil {
			t.Fatalf("Envoy made no new TLS handshake with the control plane (%d)", after)
		}
	}

	// 1. A new serving certificate from the same CA.
	caPEM, err := os.ReadFile(certsOf.CAFile)
	must(t, err)
	before, err := harness.ServingCertificate(xdsAddr, caPEM)
	must(t, err)
	must(t, certsOf.IssueServing(time.Now()))
	after, err := harness.ServingCertificate(xdsAddr, caPEM)
	must(t, err)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("the control plane still serves the old certificate after the files changed")
	}
	reconnected(handshakes())
	percentReaches("20", 200_000)

	// 2. A new CA: trust old and new, then serve a certificate of the new.
	newCA, err := certs.NewAuthority("shadowplane-test-ca-2", 24*time.Hour, time.Now())
	must(t, err)
	bundle := append(append([]byte{}, caPEM...), newCA.CertPEM...)
	must(t, harness.WriteProjected(certsOf.CADir, map[string][]byte{"ca.crt": bundle}))
	time.Sleep(time.Second) // Envoy's SDS watch reloads the bundle
	n := handshakes()
	must(t, certsOf.IssueServingFrom(newCA, time.Now()))
	if _, err := harness.ServingCertificate(xdsAddr, newCA.CertPEM); err != nil {
		t.Fatalf("the control plane does not serve the new CA's certificate: %v", err)
	}
	reconnected(n)
	percentReaches("30", 300_000)

	// 3. kubelet refreshes the token; the next stream presents the new one.
	must(t, kube.RefreshToken(f.ctx, f.sidecar.Identity))
	reconnected(handshakes())
	percentReaches("40", 400_000)

	stopLoad()
	wg.Wait()
	// Requests the rate schedule had not sent yet when the load stopped end
	// with context.Canceled; they were never sent, so they do not count.
	var sent harness.Results
	for _, r := range load.All {
		if !errors.Is(r.Err, context.Canceled) {
			sent.All = append(sent.All, r)
		}
	}
	load = sent
	if load.Errors() != 0 {
		t.Errorf("%d of %d primary requests failed during rotation: %s", load.Errors(), len(load.All), load.FirstError())
	}
	if len(load.All) < 500 {
		t.Errorf("only %d requests were sent during rotation", len(load.All))
	}
	if f.sidecar.PID() != pid {
		t.Error("Envoy restarted during rotation")
	}
	t.Logf("rotation under load: %d requests, %d errors, %d TLS handshakes to the control plane", len(load.All), load.Errors(), handshakes())
}
