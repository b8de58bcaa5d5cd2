package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/xds"
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
	intruder := newOtherClient(t, f, "payments")
	other, intruderToken := intruder.ns, intruder.token
	otherAudience, err := kube.MintToken(f.ctx, other, "payments", "payments-0", intruder.identity.PodUID, "https://kubernetes.default.svc")
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
		{"namespace A's identity claiming namespace B", intruderToken, node("payments-0", f.ns, "entrance"), codes.PermissionDenied},
		{"namespace A's identity claiming B's pod name", intruderToken, node("entrance-"+f.ns, f.ns, "entrance"), codes.PermissionDenied},
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
	conn, err := harness.DialXDS(f.cp.XDSAddr.String(), caPEM, intruderToken)
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

// TestTrustBoundsWhileEnvoyUpdates: a client with a valid identity trips
// every xDS bound over and over, and each time gets its status, while the
// real Envoy beside it keeps receiving percent changes. The propagation
// times with and without the abuser are logged side by side.
func TestTrustBoundsWhileEnvoyUpdates(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	f.applyPolicy(policyYAML("1", ""))
	f.waitApplied(10_000)
	caPEM, err := os.ReadFile(f.cp.Certs.CAFile)
	must(t, err)

	abuser := newOtherClient(t, f, "abuser")
	token, node := abuser.token, abuser.node

	propagate := func(percents []string) []time.Duration {
		var took []time.Duration
		for _, p := range percents {
			start := time.Now()
			f.applyPolicy(policyYAML(p, ""))
			f.waitRuntime(f.runtimeKey(), percentPPM(t, p))
			took = append(took, time.Since(start))
		}
		return took
	}
	quiet := propagate([]string{"2", "3", "4", "5", "6", "7", "8", "9", "10", "11"})

	// The abuser, on its own goroutine until the changes are done.
	abuse := []struct {
		bound string
		code  codes.Code
		req   func() *discoveryv3.DiscoveryRequest
	}{
		{"node_size", codes.InvalidArgument, func() *discoveryv3.DiscoveryRequest {
			big := node.Node()
			big.Metadata.Fields["padding"] = structpb.NewStringValue(strings.Repeat("x", 20<<10))
			return &discoveryv3.DiscoveryRequest{Node: big, TypeUrl: resourcev3.ClusterType}
		}},
		{"port_pairs", codes.InvalidArgument, func() *discoveryv3.DiscoveryRequest {
			many := node.Node()
			pairs := make([]string, 65)
			for i := range pairs {
				pairs[i] = fmt.Sprintf("%d:%d", 20000+i, 30000+i)
			}
			many.Metadata.Fields[nodemeta.KeyPorts] = structpb.NewStringValue(strings.Join(pairs, ","))
			return &discoveryv3.DiscoveryRequest{Node: many, TypeUrl: resourcev3.ClusterType}
		}},
		{"resource_names", codes.InvalidArgument, func() *discoveryv3.DiscoveryRequest {
			return &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: make([]string, 1001)}
		}},
		{"type_url", codes.InvalidArgument, func() *discoveryv3.DiscoveryRequest {
			return &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/google.protobuf.Empty"}
		}},
		{"message_size", codes.ResourceExhausted, func() *discoveryv3.DiscoveryRequest {
			return &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RuntimeType, VersionInfo: strings.Repeat("v", 2<<20)}
		}},
	}
	abuseCtx, stopAbuse := context.WithCancel(f.ctx)
	var rounds int
	var wrong []string
	abuseDone := make(chan struct{})
	go func() {
		defer close(abuseDone)
		for abuseCtx.Err() == nil {
			rounds++
			for _, a := range abuse {
				if got := abuseOnce(f.cp.XDSAddr.String(), caPEM, token, node, a.req()); got != a.code {
					wrong = append(wrong, a.bound+": "+got.String())
				}
			}
			// A request flood on one stream.
			if got := floodOnce(f.cp.XDSAddr.String(), caPEM, token, node); got != codes.ResourceExhausted {
				wrong = append(wrong, "request_rate: "+got.String())
			}
			// More streams on one connection than allowed.
			if got := manyStreamsOnce(f.cp.XDSAddr.String(), caPEM, token, node, xds.DefaultLimits().MaxStreamsPerConnection+1); got != codes.ResourceExhausted {
				wrong = append(wrong, "streams_per_connection: "+got.String())
			}
		}
	}()
	busy := propagate([]string{"12", "13", "14", "15", "16", "17", "18", "19", "20", "21"})
	stopAbuse()
	<-abuseDone
	if len(wrong) > 0 {
		t.Errorf("bounds answered with the wrong status %d times, e.g. %v", len(wrong), wrong[:min(5, len(wrong))])
	}
	if rounds < 2 {
		t.Errorf("the abuser ran only %d rounds", rounds)
	}
	metrics, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/metrics")
	must(t, err)
	for _, b := range []string{"node_size", "resource_names", "type_url", "message_size", "request_rate", "streams_per_connection"} {
		if !strings.Contains(string(metrics), `shadowplane_xds_bounds_exceeded_total{bound="`+b+`"}`) ||
			strings.Contains(string(metrics), `shadowplane_xds_bounds_exceeded_total{bound="`+b+`"} 0`+"\n") {
			t.Errorf("/metrics does not count the %s bound", b)
		}
	}
	// Too many port pairs is an invalid node: its own counter.
	if strings.Contains(string(metrics), "shadowplane_xds_invalid_nodes_total 0\n") {
		t.Error("/metrics does not count nodes refused for too many port pairs")
	}
	t.Logf("percent change → in force in Envoy, median of 10: %v quiet, %v while an abuser tripped every bound (%d rounds)",
		median(quiet), median(busy), rounds)
}

// withAbuserConn runs use on a connection of its own, authenticated with
// token, and returns the status use reports.
func withAbuserConn(address string, caPEM []byte, token string, use func(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) codes.Code) codes.Code {
	conn, err := harness.DialXDS(address, caPEM, token)
	if err != nil {
		return codes.Unknown
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return use(ctx, discoveryv3.NewAggregatedDiscoveryServiceClient(conn))
}

// endOf receives until the server ends the stream and returns its status.
func endOf(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) codes.Code {
	for {
		if _, err := stream.Recv(); err != nil {
			return status.Code(err)
		}
	}
}

// abuseOnce opens a stream with a valid token, sends req and returns the
// status the server ends the stream with.
func abuseOnce(address string, caPEM []byte, token string, node nodemeta.Metadata, req *discoveryv3.DiscoveryRequest) codes.Code {
	return withAbuserConn(address, caPEM, token, func(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) codes.Code {
		stream, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return status.Code(err)
		}
		if req.Node == nil {
			req.Node = node.Node()
		}
		_ = stream.Send(req)
		return endOf(stream)
	})
}

// floodOnce sends requests on one stream as fast as it can.
func floodOnce(address string, caPEM []byte, token string, node nodemeta.Metadata) codes.Code {
	return withAbuserConn(address, caPEM, token, func(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) codes.Code {
		stream, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return status.Code(err)
		}
		go func() {
			for i := 0; i < 1000 && ctx.Err() == nil; i++ {
				req := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RuntimeType}
				if i == 0 {
					req.Node = node.Node()
				}
				if stream.Send(req) != nil {
					return
				}
			}
		}()
		return endOf(stream)
	})
}

// manyStreamsOnce opens n streams on one connection, each identified, and
// returns the status of the first that the server ends.
func manyStreamsOnce(address string, caPEM []byte, token string, node nodemeta.Metadata, n int) codes.Code {
	return withAbuserConn(address, caPEM, token, func(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) codes.Code {
		ended := make(chan codes.Code, n)
		for i := 0; i < n; i++ {
			stream, err := ads.StreamAggregatedResources(ctx)
			if err != nil {
				return status.Code(err)
			}
			_ = stream.Send(&discoveryv3.DiscoveryRequest{Node: node.Node(), TypeUrl: resourcev3.ClusterType})
			go func() { ended <- endOf(stream) }()
		}
		return <-ended
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestTrustNewStreamBucket: past the shared new-stream bucket, new streams
// wait briefly and are then refused with ResourceExhausted, while the real
// Envoy's established stream keeps receiving changes.
func TestTrustNewStreamBucket(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{limits: xds.Limits{NewStreamsPerSecond: 0.2, NewStreamBurst: 3, NewStreamWait: 100 * time.Millisecond}})
	f.applyPolicy(policyYAML("5", ""))
	f.waitApplied(50_000)
	caPEM, err := os.ReadFile(f.cp.Certs.CAFile)
	must(t, err)
	burst := newOtherClient(t, f, "burst")
	token, node := burst.token, burst.node

	refused := 0
	for i := 0; i < 6; i++ {
		if abuseOnce(f.cp.XDSAddr.String(), caPEM, token, node, &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/google.protobuf.Empty"}) == codes.ResourceExhausted {
			refused++
		}
	}
	if refused == 0 {
		t.Error("6 new streams within a second passed a bucket of 3")
	}
	f.applyPolicy(policyYAML("6", ""))
	f.waitRuntime(f.runtimeKey(), 60_000)
	metrics, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/metrics")
	must(t, err)
	if strings.Contains(string(metrics), `shadowplane_xds_bounds_exceeded_total{bound="new_stream_rate"} 0`+"\n") {
		t.Error("/metrics does not count the new_stream_rate bound")
	}
}

// otherClient is a legitimate identity in a namespace of its own, beside a
// fixture: its Service, Pod and bound token, and the node it may claim.
type otherClient struct {
	ns       string
	identity *harness.SidecarIdentity
	token    string
	node     nodemeta.Metadata
}

func newOtherClient(t *testing.T, f *mirrorFixture, service string) otherClient {
	t.Helper()
	kube := env(t).kube
	ns := newNamespace(t, f.ctx)
	must(t, kube.ApplyService(f.ctx, ns, service, harness.ServicePort{Name: "http", Port: 80, TargetPort: 15001}))
	id, err := kube.NewSidecarIdentity(f.ctx, ns, service, service, service+"-0", t.TempDir())
	must(t, err)
	token, err := os.ReadFile(id.TokenFile)
	must(t, err)
	return otherClient{ns: ns, identity: id, token: string(token), node: nodemeta.Metadata{
		NodeID: service + "-0", Namespace: ns, Service: service, Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}}
}

// TestTrustPushesFasterThanTheRequestRate: a real Envoy that answers every
// push is never cut off by the per-stream request rate, however fast the
// percent changes come: here 40 edits in about 2.5 s against a rate of 2
// requests a second with a burst of 10. (While ACKs counted against the
// rate, the stream was cut off within the first second of edits.)
func TestTrustPushesFasterThanTheRequestRate(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta, limits: xds.Limits{RequestsPerSecond: 2, RequestBurst: 10}})
			f.applyPolicy(policyYAML("50", ""))
			f.waitApplied(500_000)
			pushesBefore := f.cp.XDS.Pushes()["runtime"]

			const edits = 40
			for i := range edits {
				f.applyPolicy(policyYAML(fmt.Sprint(i%9+1), ""))
				time.Sleep(60 * time.Millisecond)
			}
			f.applyPolicy(policyYAML("42", ""))
			f.waitRuntime(f.runtimeKey(), 420_000)

			if pushes := f.cp.XDS.Pushes()["runtime"] - pushesBefore; pushes < edits/2 {
				t.Fatalf("%d runtime pushes for %d edits: too few to exceed the request rate", pushes, edits+1)
			}
			metrics, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/metrics")
			must(t, err)
			if want := `shadowplane_xds_bounds_exceeded_total{bound="request_rate"} 0` + "\n"; !strings.Contains(string(metrics), want) {
				t.Errorf("a sidecar answering pushes was cut off by the request rate; /metrics lacks %q", strings.TrimSpace(want))
			}
		})
	}
}
