package xds

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// sotwClient is a hand-written state-of-the-world ADS client that behaves
// like Envoy: node on the first request, ACK/NACK by version and nonce.
type sotwClient struct {
	t         *testing.T
	stream    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node      *corev3.Node
	names     map[string][]string // subscribed names by short type name
	sentNode  bool
	responses chan *discoveryv3.DiscoveryResponse
	done      chan error
	cancel    context.CancelFunc
}

// sotw opens a SotW ADS stream subscribing to fakeTranslate's names.
func (h *harness) sotw(node *corev3.Node) *sotwClient {
	h.t.Helper()
	return h.sotwWithNames(node, subscribedNames)
}

// sotwWithNames opens a SotW ADS stream subscribing to the given names by
// short type name (absent: wildcard).
func (h *harness) sotwWithNames(node *corev3.Node, names map[string][]string) *sotwClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		h.t.Fatalf("open ADS stream: %v", err)
	}
	c := &sotwClient{t: h.t, stream: stream, node: node, names: names, cancel: cancel,
		responses: make(chan *discoveryv3.DiscoveryResponse, 64), done: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				c.done <- err
				return
			}
			c.responses <- resp
		}
	}()
	return c
}

func (c *sotwClient) send(typeName, version, nonce string, errorDetail *rpcstatus.Status) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURLOf[typeName],
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: c.names[typeName],
		ErrorDetail:   errorDetail,
	}
	if !c.sentNode {
		req.Node, c.sentNode = c.node, true
	}
	c.sendRequest(req)
}

// sendRequest sends a request. io.EOF means the server has ended the
// stream, which a test may expect: the reason is for Recv to tell (closed,
// next), so it is not a failure here.
func (c *sotwClient) sendRequest(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		c.t.Fatalf("send %s request: %v", typeLabel(req.GetTypeUrl()), err)
	}
}

// subscribeAll sends the first request of every type.
func (c *sotwClient) subscribeAll() {
	c.t.Helper()
	for _, name := range allTypeNames {
		c.send(name, "", "", nil)
	}
}

// next waits for the next response.
func (c *sotwClient) next() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case resp := <-c.responses:
		return resp
	case err := <-c.done:
		c.t.Fatalf("stream ended while waiting for a response: %v", err)
	case <-time.After(waitTimeout):
		c.t.Fatal("timed out waiting for a response")
	}
	return nil
}

// collect waits for one response of each named type, failing on any other.
func (c *sotwClient) collect(typeNames ...string) map[string]*discoveryv3.DiscoveryResponse {
	c.t.Helper()
	want := map[string]bool{}
	for _, n := range typeNames {
		want[n] = true
	}
	got := map[string]*discoveryv3.DiscoveryResponse{}
	for len(got) < len(want) {
		resp := c.next()
		name := typeLabel(resp.GetTypeUrl())
		if !want[name] || got[name] != nil {
			c.t.Fatalf("unexpected %s response (version %s); waiting for %v", name, resp.GetVersionInfo(), typeNames)
		}
		got[name] = resp
	}
	return got
}

// ackAll acknowledges each response.
func (c *sotwClient) ackAll(resps map[string]*discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	for _, r := range resps {
		c.sendRequest(c.ackFor(r))
	}
}

// expectQuiet fails if any response arrives within quietPeriod.
func (c *sotwClient) expectQuiet() {
	c.t.Helper()
	select {
	case resp := <-c.responses:
		c.t.Fatalf("unexpected %s response, version %s", typeLabel(resp.GetTypeUrl()), resp.GetVersionInfo())
	case err := <-c.done:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(quietPeriod):
	}
}

// closed waits for the server to end the stream and returns its error.
func (c *sotwClient) closed() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	case resp := <-c.responses:
		c.t.Fatalf("got a %s response, want the stream closed", typeLabel(resp.GetTypeUrl()))
	case <-time.After(waitTimeout):
		c.t.Fatal("timed out waiting for the stream to close")
	}
	return nil
}

// ackFor is the request that acknowledges a SotW response.
func (c *sotwClient) ackFor(resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		TypeUrl:       resp.GetTypeUrl(),
		VersionInfo:   resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce(),
		ResourceNames: c.names[typeLabel(resp.GetTypeUrl())],
	}
}
