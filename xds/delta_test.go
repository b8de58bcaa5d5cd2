package xds

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shadowplane/shadowplane/nodemeta"
)

func TestDeltaStreamSyncsAndResendsOnlyRuntime(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.delta(sidecarNode("entrance-delta"))
	c.subscribeAll()
	resps := c.collect(allTypeNames...)
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

	for name, resp := range resps {
		c.ack(name, resp)
	}
	p = h.waitStatus("entrance-delta", StatusSynced, allTypeNames...)
	for _, name := range allTypeNames {
		if ts := p.Types[name]; ts.Acked != versions[name] {
			t.Errorf("%s: acked %q, want %q", name, ts.Acked, versions[name])
		}
	}

	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))
	resp := c.collect("runtime")["runtime"]
	c.expectQuiet()
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "shadowplane" {
		t.Fatalf("runtime delta response resources %v, want the shadowplane layer", resp.GetResources())
	}
	h.waitStatus("entrance-delta", StatusStale, "runtime")
	c.ack("runtime", resp)
	h.waitStatus("entrance-delta", StatusSynced, allTypeNames...)
	if got := h.counterValue("shadowplane_xds_responses_total", "type", "runtime"); got != 2 {
		t.Errorf("responses_total{type=runtime} = %v, want 2", got)
	}
}

func TestDeltaNackIsRecorded(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.delta(sidecarNode("entrance-delta"))
	c.subscribeAll()
	resps := c.collect(allTypeNames...)
	for name, resp := range resps {
		if name != "listener" {
			c.ack(name, resp)
		}
	}
	c.send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl:       typeURLOf["listener"],
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
	c.expectQuiet()
}

func TestDeltaAndSotwStreamsAreTrackedApart(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	// go-control-plane numbers both kinds of stream from 1: the first SotW
	// and the first delta stream share ID 1.
	syncedSotw(h, "entrance-sotw")
	d := h.delta(sidecarNode("entrance-delta"))
	d.subscribeAll()
	for name, resp := range d.collect(allTypeNames...) {
		d.ack(name, resp)
	}
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
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURLOf["cluster"]})
	var err error
	select {
	case err = <-c.done:
	case resp := <-c.responses:
		t.Fatalf("got a delta %s response, want the stream closed", typeLabel(resp.GetTypeUrl()))
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the delta stream to close")
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream ended with %v, want InvalidArgument", err)
	}
	for _, want := range []string{"broken-delta", nodemeta.KeyPorts, "given twice"} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("error %q does not name %q", status.Convert(err).Message(), want)
		}
	}
	if len(h.srv.Proxies()) != 0 || len(h.srv.Snapshots()) != 0 {
		t.Errorf("an invalid node left state: proxies %+v snapshots %+v", h.srv.Proxies(), h.srv.Snapshots())
	}
}
