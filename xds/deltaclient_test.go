package xds

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// deltaClient is a hand-written incremental ADS client.
type deltaClient struct {
	t         *testing.T
	stream    discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node      *corev3.Node
	sentNode  bool
	responses chan *discoveryv3.DeltaDiscoveryResponse
	done      chan error
}

func (h *harness) delta(node *corev3.Node) *deltaClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		h.t.Fatalf("open delta ADS stream: %v", err)
	}
	c := &deltaClient{t: h.t, stream: stream, node: node,
		responses: make(chan *discoveryv3.DeltaDiscoveryResponse, 64), done: make(chan error, 1)}
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

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sentNode {
		req.Node, c.sentNode = c.node, true
	}
	// io.EOF means the server has ended the stream; the reason is for Recv
	// to tell.
	if err := c.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		c.t.Fatalf("send delta %s request: %v", typeLabel(req.GetTypeUrl()), err)
	}
}

// subscribeAll sends the first request of every type: wildcard for
// clusters and listeners, named resources for the others.
func (c *deltaClient) subscribeAll() {
	c.t.Helper()
	for _, name := range allTypeNames {
		c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURLOf[name], ResourceNamesSubscribe: subscribedNames[name]})
	}
}

func (c *deltaClient) ack(name string, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURLOf[name], ResponseNonce: resp.GetNonce()})
}

func (c *deltaClient) collect(typeNames ...string) map[string]*discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	want := map[string]bool{}
	for _, n := range typeNames {
		want[n] = true
	}
	got := map[string]*discoveryv3.DeltaDiscoveryResponse{}
	for len(got) < len(want) {
		var resp *discoveryv3.DeltaDiscoveryResponse
		select {
		case resp = <-c.responses:
		case err := <-c.done:
			c.t.Fatalf("delta stream ended while waiting for %v: %v", typeNames, err)
		case <-time.After(waitTimeout):
			c.t.Fatalf("timed out waiting for delta responses %v", typeNames)
		}
		name := typeLabel(resp.GetTypeUrl())
		if !want[name] || got[name] != nil {
			c.t.Fatalf("unexpected delta %s response (version %s); waiting for %v", name, resp.GetSystemVersionInfo(), typeNames)
		}
		got[name] = resp
	}
	return got
}

func (c *deltaClient) expectQuiet() {
	c.t.Helper()
	select {
	case resp := <-c.responses:
		c.t.Fatalf("unexpected delta %s response, version %s", typeLabel(resp.GetTypeUrl()), resp.GetSystemVersionInfo())
	case err := <-c.done:
		c.t.Fatalf("delta stream ended: %v", err)
	case <-time.After(quietPeriod):
	}
}
