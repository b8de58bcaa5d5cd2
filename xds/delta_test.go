package xds

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/shadowplane/shadowplane/nodemeta"
)

func TestDeltaStreamSyncsAndResendsOnlyRuntime(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.delta(sidecarNode("entrance-delta"))
	c.SubscribeAll()
	resps := c.Collect(allTypeNames...)
	versions := h.groupVersions()
	wantCounts := map[string]int{"cluster": 2, "endpoint": 1, "listener": 1, "route": 1, "runtime": 1}
	for name, resp := range resps {
		if resp.GetSystemVersionInfo() != versions[name] {
			t.Errorf("%s: system version %q, want the snapshot's %q", name, resp.GetSystemVersionInfo(), versions[name])
		}
		if got := len(resp.GetResources()); got != wantCounts[name] {
			t.Errorf("%s: %d resources, want %d", name, got, wantCounts[name])
		}
	}
	p := h.waitStatus("entrance-delta", StatusStale, allTypeNames...)
	if !p.Delta {
		t.Error("proxy not marked as delta")
	}

	c.ACKAll(resps)
	p = h.waitStatus("entrance-delta", StatusSynced, allTypeNames...)
	for _, name := range allTypeNames {
		if ts := p.Types[name]; ts.Acked != versions[name] {
			t.Errorf("%s: acked %q, want %q", name, ts.Acked, versions[name])
		}
	}

	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))
	resp := c.Collect("runtime")["runtime"]
	c.ExpectQuiet()
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "shadowplane" {
		t.Fatalf("runtime delta response resources %v, want the shadowplane layer", resp.GetResources())
	}
	h.waitStatus("entrance-delta", StatusStale, "runtime")
	c.ACK(resp)
	h.waitStatus("entrance-delta", StatusSynced, allTypeNames...)
	if got := h.counterValue("shadowplane_xds_responses_total", "type", "runtime"); got != 2 {
		t.Errorf("responses_total{type=runtime} = %v, want 2", got)
	}
}

func TestDeltaNackIsRecorded(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.delta(sidecarNode("entrance-delta"))
	c.SubscribeAll()
	resps := c.Collect(allTypeNames...)
	for name, resp := range resps {
		if name != "listener" {
			c.ACK(resp)
		}
	}
	c.Send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:       resps["listener"].GetTypeUrl(),
		ResponseNonce: resps["listener"].GetNonce(),
		ErrorDetail:   &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "listener inbound_15001: address in use"},
	})

	p := h.waitStatus("entrance-delta", StatusNacked, "listener")
	nack := p.Types["listener"].LastNack
	if nack == nil || nack.Message != "listener inbound_15001: address in use" || nack.Version != resps["listener"].GetSystemVersionInfo() {
		t.Fatalf("LastNack = %+v, want the message and version %q", nack, resps["listener"].GetSystemVersionInfo())
	}
	if got := h.counterValue("shadowplane_xds_nacks_total", "type", "listener"); got != 1 {
		t.Errorf("nacks_total{type=listener} = %v, want 1", got)
	}
	h.waitStatus("entrance-delta", StatusSynced, "cluster", "endpoint", "route", "runtime")
	c.ExpectQuiet()
}

func TestDeltaAndSotwStreamsAreTrackedApart(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	// go-control-plane numbers both kinds of stream from 1: the first SotW
	// and the first delta stream share ID 1.
	syncedSotw(h, "entrance-sotw")
	d := h.delta(sidecarNode("entrance-delta"))
	d.SubscribeAll()
	d.ACKAll(d.Collect(allTypeNames...))
	h.waitStatus("entrance-delta", StatusSynced, allTypeNames...)
	h.waitStatus("entrance-sotw", StatusSynced, allTypeNames...)
	if got := h.gaugeValue("shadowplane_xds_connected_proxies"); got != 2 {
		t.Errorf("connected proxies = %v, want 2", got)
	}
}

func TestDeltaInvalidNodeClosesStream(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.delta(metadataNode("broken-delta", map[string]any{
		nodemeta.KeyNamespace: "shop",
		nodemeta.KeyService:   "entrance",
		nodemeta.KeyPorts:     "15001:8080,15001:9090",
	}))
	// One request: the server ends the stream on it.
	c.Subscribe("cluster")
	h.expectRefused(c.Closed(), "broken-delta", nodemeta.KeyPorts, "given twice")
}
