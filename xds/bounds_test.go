package xds

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
)

func withLimits(l Limits) harnessOption { return func(o *Options) { o.Limits = l } }

// TestBoundsRefuseWithClearStatus: each bound ends the offending stream
// with its status and counts once, and a well-behaved stream beside it is
// served throughout.
func TestBoundsRefuseWithClearStatus(t *testing.T) {
	h := newHarness(t, nil, withLimits(Limits{RequestsPerSecond: 5, RequestBurst: 20}))
	h.srv.SetWorld(testWorld(250000))
	good := adsclient.NewSotW(t, h.conn, sidecarNode("good"), nil)
	good.SubscribeAll()
	good.ACKAll(good.Collect(adsclient.TypeNames()...))

	bigNode := sidecarNode("big")
	bigNode.Metadata.Fields["padding"] = structpb.NewStringValue(strings.Repeat("x", 17<<10))
	names := make([]string, 1001)
	for i := range names {
		names[i] = "r"
	}
	tests := []struct {
		name  string
		bound string
		code  codes.Code
		send  func(c *adsclient.SotW)
	}{
		{"node over 16 KiB", boundNodeSize, codes.InvalidArgument, func(c *adsclient.SotW) {
			c.SendRaw(&discoveryv3.DiscoveryRequest{Node: bigNode, TypeUrl: resourcev3.ClusterType})
		}},
		{"1,001 resource names", boundNames, codes.InvalidArgument, func(c *adsclient.SotW) {
			c.SendRaw(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names})
		}},
		{"a type not served", boundTypeURL, codes.InvalidArgument, func(c *adsclient.SotW) {
			c.SendRaw(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"})
		}},
		{"a request flood", boundRequestRate, codes.ResourceExhausted, func(c *adsclient.SotW) {
			for i := 0; i < 40; i++ {
				c.SendRaw(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RuntimeType})
			}
		}},
		{"a message over 1 MiB", boundMessageSize, codes.ResourceExhausted, func(c *adsclient.SotW) {
			c.SendRaw(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.RuntimeType, VersionInfo: strings.Repeat("v", 1<<20+1)})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := adsclient.NewSotW(t, h.conn, sidecarNode("abuser-"+tc.bound), nil)
			tc.send(c)
			if err := endOf(c); codeOf(err) != tc.code {
				t.Fatalf("stream ended with %v, want %v", err, tc.code)
			}
			if got := h.counterValue("shadowplane_xds_bounds_exceeded_total", "bound", tc.bound); got != 1 {
				t.Errorf("bounds exceeded (%s) = %v, want 1", tc.bound, got)
			}
		})
	}

	// The well-behaved stream still gets every change.
	h.srv.SetWorld(testWorld(500000))
	good.ACK(good.Next())
}

func TestBoundsStreamsPerConnection(t *testing.T) {
	h := newHarness(t, nil, withLimits(Limits{MaxStreamsPerConnection: 3}))
	h.srv.SetWorld(testWorld(250000))
	for i := 0; i < 3; i++ {
		c := adsclient.NewSotW(t, h.conn, sidecarNode("s"), nil)
		c.SubscribeAll()
		c.Collect(adsclient.TypeNames()...)
	}
	extra := adsclient.NewSotW(t, h.conn, sidecarNode("s"), nil)
	extra.SubscribeAll()
	if err := extra.Closed(); codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("4th stream on one connection ended with %v, want ResourceExhausted", err)
	}
	if got := h.counterValue("shadowplane_xds_bounds_exceeded_total", "bound", boundConnStreams); got != 1 {
		t.Errorf("bounds exceeded (streams per connection) = %v, want 1", got)
	}
	// Another connection is not affected.
	other := adsclient.NewSotW(t, h.connWithToken("unused"), sidecarNode("t"), nil)
	other.SubscribeAll()
	other.Collect(adsclient.TypeNames()...)
}

func TestBoundsNewStreamBucket(t *testing.T) {
	h := newHarness(t, nil, withLimits(Limits{NewStreamsPerSecond: 0.001, NewStreamBurst: 2, NewStreamWait: 50 * time.Millisecond}))
	h.srv.SetWorld(testWorld(250000))
	for i := 0; i < 2; i++ {
		c := adsclient.NewSotW(t, h.connWithToken("x"), sidecarNode("n"), nil)
		c.SubscribeAll()
		c.Collect(adsclient.TypeNames()...)
	}
	c := adsclient.NewSotW(t, h.connWithToken("x"), sidecarNode("n"), nil)
	c.SubscribeAll()
	if err := c.Closed(); codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("stream past the bucket ended with %v, want ResourceExhausted", err)
	}
}

func TestNackDetailIsCut(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000))
	c := adsclient.NewSotW(t, h.conn, sidecarNode("nacker"), nil)
	c.SubscribeAll()
	resps := c.Collect(adsclient.TypeNames()...)
	rt := resps["runtime"]
	c.Send("runtime", "", rt.GetNonce(), &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: strings.Repeat("e", 512<<10)})
	p := h.waitStatus("nacker", StatusNacked, "runtime")
	if n := len(p.Types["runtime"].LastNack.Message); n > 1100 {
		t.Errorf("stored NACK message is %d bytes, want about 1 KiB", n)
	}
}

// endOf waits for the stream to end, passing over responses the server
// sent before it refused the stream, and returns how it ended.
func endOf(c *adsclient.SotW) error {
	for {
		if _, err := c.Await(); err != nil {
			return err
		}
	}
}

// TestBoundsAnswersToPushesAreFree: a proxy that answers every push is
// never cut off by the request rate, however fast the changes come (here
// 60 pushes against a rate of 5 per second and a burst of 20); answering
// one response many times still is.
func TestBoundsAnswersToPushesAreFree(t *testing.T) {
	h := newHarness(t, nil, withLimits(Limits{RequestsPerSecond: 5, RequestBurst: 20}))
	h.srv.SetWorld(testWorld(100000))
	c := adsclient.NewSotW(t, h.conn, sidecarNode("busy"), nil)
	c.SubscribeAll()
	c.ACKAll(c.Collect(adsclient.TypeNames()...))
	var last *discoveryv3.DiscoveryResponse
	for i := range 60 {
		h.srv.SetWorld(testWorld(uint32(200000 + i)))
		last = c.Next()
		if last.GetTypeUrl() != resourcev3.RuntimeType {
			t.Fatalf("push %d: got %s, want the runtime layer", i, last.GetTypeUrl())
		}
		c.ACK(last)
	}
	if got := h.counterValue("shadowplane_xds_bounds_exceeded_total", "bound", boundRequestRate); got != 0 {
		t.Fatalf("a proxy answering each push was cut off %v times", got)
	}

	// Replaying the last answer is not an answer.
	for range 40 {
		c.ACK(last)
	}
	if err := endOf(c); codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("stream replaying an ACK ended with %v, want %v", err, codes.ResourceExhausted)
	}
}
