// Package adsclient is the ADS test client: it speaks state-of-the-world
// (SotW) and incremental (Delta) xDS to a control plane the way Envoy does,
// with the node on the first request only and ACKs and NACKs by nonce.
// Types are named by their short names in translator.ResourceTypes
// ("cluster", "runtime", ...).
//
// Methods fail the test they were made with, so call them from that test's
// goroutine.
package adsclient

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/shadowplane/shadowplane/translator"
)

// Defaults of a client's Timeout and Quiet.
const (
	DefaultTimeout = 10 * time.Second
	DefaultQuiet   = 300 * time.Millisecond
)

// response is what both kinds of stream receive.
type response interface {
	*discoveryv3.DiscoveryResponse | *discoveryv3.DeltaDiscoveryResponse
	GetTypeUrl() string
	GetNonce() string
}

// client is what SotW and Delta share: the stream's identity, what it
// subscribes to, and the responses a goroutine receives.
type client[R response] struct {
	t     testing.TB
	node  *corev3.Node
	names map[string][]string
	// sentNode records that the node went out on the first request.
	sentNode bool

	responses chan R
	done      chan error
	cancel    context.CancelFunc

	// Timeout bounds every wait for the server; Quiet is how long
	// ExpectQuiet listens.
	Timeout time.Duration
	Quiet   time.Duration
}

// open opens a stream of either kind on conn: it ends with the test, and a
// goroutine hands its responses on.
func open[R response, S interface{ Recv() (R, error) }](t testing.TB, conn grpc.ClientConnInterface, node *corev3.Node, names map[string][]string,
	start func(discoveryv3.AggregatedDiscoveryServiceClient, context.Context, ...grpc.CallOption) (S, error),
) (*client[R], S) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := start(discoveryv3.NewAggregatedDiscoveryServiceClient(conn), ctx)
	if err != nil {
		t.Fatalf("open ADS stream: %v", err)
	}
	c := &client[R]{
		t: t, node: node, names: names, cancel: cancel,
		responses: make(chan R, 64), done: make(chan error, 1),
		Timeout: DefaultTimeout, Quiet: DefaultQuiet,
	}
	go c.receive(ctx, stream.Recv)
	return c, stream
}

// receive hands every response on until the stream ends, then its error.
func (c *client[R]) receive(ctx context.Context, recv func() (R, error)) {
	for {
		resp, err := recv()
		if err != nil {
			c.done <- err
			return
		}
		select {
		case c.responses <- resp:
		case <-ctx.Done():
			return
		}
	}
}

// identify puts the node on the stream's first request only, as Envoy does
// with set_node_on_first_message_only.
func (c *client[R]) identify(setNode func(*corev3.Node)) {
	if !c.sentNode {
		setNode(c.node)
		c.sentNode = true
	}
}

// sent checks the error of a Send. io.EOF only means the server has ended
// the stream, which a test may expect: why is for Recv to tell (Closed,
// Next), so it is not a failure here.
func (c *client[R]) sent(err error, typeURL string) {
	c.t.Helper()
	if err != nil && !errors.Is(err, io.EOF) {
		c.t.Fatalf("send %s request: %v", TypeName(typeURL), err)
	}
}

// typeURL returns the URL of a short type name.
func (c *client[R]) typeURL(name string) string {
	c.t.Helper()
	if t, ok := typeNamed(name); ok {
		return t.URL
	}
	c.t.Fatalf("no xDS type is named %q", name)
	return ""
}

// Await waits for the next response or for the end of the stream, and
// returns the response or the error the stream ended with (io.EOF for a
// clean end).
func (c *client[R]) Await() (R, error) {
	c.t.Helper()
	var none R
	select {
	case resp := <-c.responses:
		return resp, nil
	case err := <-c.done:
		// Responses received before the end come first.
		select {
		case resp := <-c.responses:
			c.done <- err // the end, for the next wait
			return resp, nil
		default:
		}
		return none, err
	case <-time.After(c.Timeout):
		c.t.Fatal("timed out waiting for the server")
	}
	return none, nil
}

// Next waits for the next response.
func (c *client[R]) Next() R {
	c.t.Helper()
	resp, err := c.Await()
	if err != nil {
		c.t.Fatalf("stream ended while waiting for a response: %v", err)
	}
	return resp
}

// Collect waits for one response of each named type, failing on any other.
func (c *client[R]) Collect(typeNames ...string) map[string]R {
	c.t.Helper()
	want := map[string]bool{}
	for _, n := range typeNames {
		want[n] = true
	}
	got := map[string]R{}
	for len(got) < len(want) {
		resp := c.Next()
		name := TypeName(resp.GetTypeUrl())
		if _, dup := got[name]; !want[name] || dup {
			c.t.Fatalf("unexpected %s response (version %s); waiting for %v", name, version(resp), typeNames)
		}
		got[name] = resp
	}
	return got
}

// ExpectQuiet fails if any response arrives, or the stream ends, within
// Quiet.
func (c *client[R]) ExpectQuiet() {
	c.t.Helper()
	select {
	case resp := <-c.responses:
		c.t.Fatalf("unexpected %s response, version %s", TypeName(resp.GetTypeUrl()), version(resp))
	case err := <-c.done:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(c.Quiet):
	}
}

// Closed waits for the server to end the stream and returns its error: nil
// for a clean end, the status otherwise. A response instead fails the test.
func (c *client[R]) Closed() error {
	c.t.Helper()
	resp, err := c.Await()
	if err == nil {
		c.t.Fatalf("got a %s response, want the stream closed", TypeName(resp.GetTypeUrl()))
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Responses is the channel of received responses, for a test that answers
// them from its own goroutine (with TryACK).
func (c *client[R]) Responses() <-chan R { return c.responses }

// Close ends the stream from the client side, as a proxy going away does.
func (c *client[R]) Close() { c.cancel() }

func version[R response](resp R) string {
	switch r := any(resp).(type) {
	case *discoveryv3.DiscoveryResponse:
		return r.GetVersionInfo()
	case *discoveryv3.DeltaDiscoveryResponse:
		return r.GetSystemVersionInfo()
	}
	return ""
}

// SotW is a state-of-the-world ADS stream.
type SotW struct {
	*client[*discoveryv3.DiscoveryResponse]
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

// NewSotW opens a SotW ADS stream on conn as node, subscribing to names by
// short type name (a type not in names: wildcard). The stream ends with
// the test.
func NewSotW(t testing.TB, conn grpc.ClientConnInterface, node *corev3.Node, names map[string][]string) *SotW {
	t.Helper()
	c, stream := open[*discoveryv3.DiscoveryResponse](t, conn, node, names,
		discoveryv3.AggregatedDiscoveryServiceClient.StreamAggregatedResources)
	return &SotW{client: c, stream: stream}
}

// Send sends a request for a type: a first request with no version and
// nonce, an ACK with the version and nonce of the response, or a NACK with
// the last version accepted, the nonce and the error.
func (c *SotW) Send(typeName, version, nonce string, errorDetail *rpcstatus.Status) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       c.typeURL(typeName),
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: c.names[typeName],
		ErrorDetail:   errorDetail,
	}
	c.send(req)
}

// SendRaw sends req as it is (a test of what the server refuses: a second
// node, an unknown type, too many names); the stream's first request still
// gets the client's node if req has none.
func (c *SotW) SendRaw(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	c.send(req)
}

func (c *SotW) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	c.identify(func(n *corev3.Node) {
		if req.Node == nil {
			req.Node = n
		}
	})
	c.sent(c.stream.Send(req), req.GetTypeUrl())
}

// SubscribeAll sends the first request of every type.
func (c *SotW) SubscribeAll() {
	c.t.Helper()
	for _, t := range translator.ResourceTypes {
		c.Send(t.Name, "", "", nil)
	}
}

// ACK acknowledges a response.
func (c *SotW) ACK(resp *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	c.send(c.ackFor(resp))
}

// ACKAll acknowledges each response.
func (c *SotW) ACKAll(resps map[string]*discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	for _, r := range resps {
		c.ACK(r)
	}
}

// TryACK acknowledges a response and returns the error of the send
// instead of failing the test, so any one goroutine may call it.
func (c *SotW) TryACK(resp *discoveryv3.DiscoveryResponse) error {
	return c.stream.Send(c.ackFor(resp))
}

func (c *SotW) ackFor(resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		TypeUrl:       resp.GetTypeUrl(),
		VersionInfo:   resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce(),
		ResourceNames: c.names[TypeName(resp.GetTypeUrl())],
	}
}

// Delta is an incremental ADS stream.
type Delta struct {
	*client[*discoveryv3.DeltaDiscoveryResponse]
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

// NewDelta opens a delta ADS stream on conn as node; SubscribeAll
// subscribes to names by short type name (a type not in names: wildcard).
// The stream ends with the test.
func NewDelta(t testing.TB, conn grpc.ClientConnInterface, node *corev3.Node, names map[string][]string) *Delta {
	t.Helper()
	c, stream := open[*discoveryv3.DeltaDiscoveryResponse](t, conn, node, names,
		discoveryv3.AggregatedDiscoveryServiceClient.DeltaAggregatedResources)
	return &Delta{client: c, stream: stream}
}

// Send sends a request, with the node if it is the stream's first.
func (c *Delta) Send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	c.identify(func(n *corev3.Node) { req.Node = n })
	c.sent(c.stream.Send(req), req.GetTypeUrl())
}

// Subscribe sends the first request of one type.
func (c *Delta) Subscribe(typeName string) {
	c.t.Helper()
	c.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: c.typeURL(typeName), ResourceNamesSubscribe: c.names[typeName]})
}

// SubscribeAll sends the first request of every type.
func (c *Delta) SubscribeAll() {
	c.t.Helper()
	for _, t := range translator.ResourceTypes {
		c.Subscribe(t.Name)
	}
}

// ACK acknowledges a response.
func (c *Delta) ACK(resp *discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

// ACKAll acknowledges each response.
func (c *Delta) ACKAll(resps map[string]*discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	for _, r := range resps {
		c.ACK(r)
	}
}

// TypeName returns the short name of a type URL, or the URL itself for a
// type shadowplane does not serve.
func TypeName(typeURL string) string {
	if t, ok := translator.ResourceTypeOf(typeURL); ok {
		return t.Name
	}
	return typeURL
}

// TypeNames are the short names of every served type, in ADS order.
func TypeNames() []string {
	names := make([]string, len(translator.ResourceTypes))
	for i, t := range translator.ResourceTypes {
		names[i] = t.Name
	}
	return names
}

func typeNamed(name string) (translator.ResourceType, bool) {
	for _, t := range translator.ResourceTypes {
		if t.Name == name {
			return t, true
		}
	}
	return translator.ResourceType{}, false
}
