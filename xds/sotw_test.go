package xds

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// syncedSotw connects a SotW proxy, receives every type and ACKs it.
func syncedSotw(h *harness, id string) *adsclient.SotW {
	h.t.Helper()
	c := h.sotw(sidecarNode(id))
	c.SubscribeAll()
	c.ACKAll(c.Collect(allTypeNames...))
	h.waitStatus(id, StatusSynced, allTypeNames...)
	return c
}

// nackedSotw connects a SotW proxy that ACKs every type but runtime and
// NACKs runtime with message, carrying the last version it accepted (none
// yet) as Envoy does. It returns the client, the rejected response and the
// proxy's status once the NACK is recorded.
func nackedSotw(h *harness, id, message string) (*adsclient.SotW, *discoveryv3.DiscoveryResponse, ProxyStatus) {
	h.t.Helper()
	c := h.sotw(sidecarNode(id))
	c.SubscribeAll()
	resps := c.Collect(allTypeNames...)
	rejected := resps["runtime"]
	delete(resps, "runtime")
	c.ACKAll(resps)
	c.Send("runtime", "", rejected.GetNonce(), &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: message})
	return c, rejected, h.waitStatus(id, StatusNacked, "runtime")
}

func TestSotwFirstRequestGetsEveryType(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1", "10.1.0.2"))

	c := h.sotw(sidecarNode("entrance-1"))
	c.SubscribeAll()
	resps := c.Collect(allTypeNames...)

	versions := h.groupVersions()
	wantCounts := map[string]int{"cluster": 2, "endpoint": 1, "listener": 1, "route": 1, "runtime": 1}
	for name, resp := range resps {
		if resp.GetVersionInfo() != versions[name] {
			t.Errorf("%s: version %q, want the snapshot's %q", name, resp.GetVersionInfo(), versions[name])
		}
		if got := len(resp.GetResources()); got != wantCounts[name] {
			t.Errorf("%s: %d resources, want %d", name, got, wantCounts[name])
		}
	}
	// The group was unknown before this proxy: its first snapshot counts
	// as a push of every type.
	for _, name := range allTypeNames {
		if got := h.srv.Pushes()[name]; got != 1 {
			t.Errorf("Pushes()[%s] = %d, want 1", name, got)
		}
		if got := h.counterValue("shadowplane_xds_responses_total", "type", name); got != 1 {
			t.Errorf("responses_total{type=%s} = %v, want 1", name, got)
		}
	}
	if got := h.gaugeValue("shadowplane_xds_connected_proxies"); got != 1 {
		t.Errorf("connected proxies = %v, want 1", got)
	}
	if got := h.gaugeValue("shadowplane_snapshot_groups"); got != 1 {
		t.Errorf("snapshot groups = %v, want 1", got)
	}
}

func TestSotwAckFlowReachesSynced(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.sotw(sidecarNode("entrance-1"))
	c.SubscribeAll()
	resps := c.Collect(allTypeNames...)

	// Before any ACK every type is STALE: sent, not acknowledged.
	p := h.waitStatus("entrance-1", StatusStale, allTypeNames...)
	if p.Group != testGroup.Key() || p.Delta {
		t.Errorf("proxy group %q delta %v, want %q and SotW", p.Group, p.Delta, testGroup.Key())
	}

	c.ACKAll(resps)
	p = h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
	versions := h.groupVersions()
	for _, name := range allTypeNames {
		ts := p.Types[name]
		if ts.Sent != versions[name] || ts.Acked != versions[name] || ts.Current != versions[name] {
			t.Errorf("%s: sent %q acked %q current %q, want all %q", name, ts.Sent, ts.Acked, ts.Current, versions[name])
		}
		if ts.LastNack != nil {
			t.Errorf("%s: unexpected NACK %+v", name, ts.LastNack)
		}
	}
	c.ExpectQuiet()
}

func TestSotwNackIsRecordedAndNotResentUntilChange(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c, rejected, p := nackedSotw(h, "entrance-1", "runtime layer: bad value")
	nack := p.Types["runtime"].LastNack
	if nack == nil || nack.Message != "runtime layer: bad value" || nack.Version != rejected.GetVersionInfo() || nack.Time.IsZero() {
		t.Fatalf("LastNack = %+v, want the message and rejected version %q", nack, rejected.GetVersionInfo())
	}
	if got := h.counterValue("shadowplane_xds_nacks_total", "type", "runtime"); got != 1 {
		t.Errorf("nacks_total{type=runtime} = %v, want 1", got)
	}
	if got := h.counterValue("shadowplane_xds_nacks_total", "type", "listener"); got != 0 {
		t.Errorf("nacks_total{type=listener} = %v, want 0", got)
	}
	h.waitStatus("entrance-1", StatusSynced, "cluster", "endpoint", "listener", "route")

	// The rejected config is not re-sent in a loop...
	c.ExpectQuiet()

	// ...but the next change is sent, and accepted.
	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))
	fixed := c.Collect("runtime")["runtime"]
	if fixed.GetVersionInfo() == rejected.GetVersionInfo() {
		t.Fatalf("re-sent the rejected version %q", fixed.GetVersionInfo())
	}
	c.Send("runtime", fixed.GetVersionInfo(), fixed.GetNonce(), nil)
	p = h.waitStatus("entrance-1", StatusSynced, "runtime")
	if p.Types["runtime"].LastNack == nil {
		t.Error("LastNack was forgotten after the next ACK; it should stay for operators")
	}
}

func TestSotwPercentChangeResendsOnlyRuntime(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	before := h.srv.Pushes()
	versionsBefore := h.groupVersions()

	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))

	resp := c.Collect("runtime")["runtime"]
	c.ExpectQuiet()
	if resp.GetVersionInfo() == versionsBefore["runtime"] {
		t.Fatalf("runtime re-sent with the old version %q", resp.GetVersionInfo())
	}
	after := h.srv.Pushes()
	for _, name := range allTypeNames {
		want := before[name]
		if name == "runtime" {
			want++
		}
		if after[name] != want {
			t.Errorf("Pushes()[%s] = %d, want %d", name, after[name], want)
		}
		if got := h.counterValue("shadowplane_xds_pushes_total", "type", name); got != float64(want) {
			t.Errorf("pushes_total{type=%s} = %v, want %d", name, got, want)
		}
	}

	p := h.waitStatus("entrance-1", StatusStale, "runtime")
	if p.Types["runtime"].Acked != versionsBefore["runtime"] || p.Types["runtime"].Sent != resp.GetVersionInfo() {
		t.Errorf("runtime status %+v, want sent %q acked %q", p.Types["runtime"], resp.GetVersionInfo(), versionsBefore["runtime"])
	}
	c.Send("runtime", resp.GetVersionInfo(), resp.GetNonce(), nil)
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
}

func TestSotwEndpointChangeResendsOnlyEndpoints(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")

	h.srv.SetWorld(testWorld(250000, "10.1.0.1", "10.1.0.2"))
	resp := c.Collect("endpoint")["endpoint"]
	c.ExpectQuiet()
	c.Send("endpoint", resp.GetVersionInfo(), resp.GetNonce(), nil)
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
}

func TestSotwUnchangedWorldSendsNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	before := h.srv.Pushes()

	// An equal World built afresh, as the watcher does on unrelated changes.
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c.ExpectQuiet()
	if after := h.srv.Pushes(); !equalCounts(before, after) {
		t.Errorf("Pushes changed from %v to %v for an equal World", before, after)
	}
}

func TestSotwProxiesOfOneGroupShareASnapshot(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	a := syncedSotw(h, "entrance-a")
	b := syncedSotw(h, "entrance-b")

	snaps := h.srv.Snapshots()
	if len(snaps) != 1 || snaps[testGroup.Key()].Proxies != 2 {
		t.Fatalf("Snapshots() = %+v, want one group with 2 proxies", snaps)
	}
	if got := h.srv.Pushes()["runtime"]; got != 1 {
		t.Errorf("the second proxy caused a push: Pushes()[runtime] = %d, want 1", got)
	}
	proxies := h.srv.Proxies()
	if len(proxies) != 2 || proxies[0].ID != "entrance-a" || proxies[1].ID != "entrance-b" {
		t.Fatalf("Proxies() = %+v, want entrance-a then entrance-b", proxies)
	}
	if got := h.srv.SyncedProxies(); len(got) != 1 || got[testGroup.Namespace+"/"+testGroup.Service] != 2 {
		t.Errorf("SyncedProxies = %v, want 2 for %s/%s only", got, testGroup.Namespace, testGroup.Service)
	}

	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))
	ra := a.Collect("runtime")
	rb := b.Collect("runtime")
	if got := h.srv.Pushes()["runtime"]; got != 2 {
		t.Errorf("Pushes()[runtime] = %d, want 2: one per group, not per proxy", got)
	}
	// The kept counts follow the ACKs: both were sent the new version
	// and acknowledged none, then one, then both; then one leaves.
	key := testGroup.Namespace + "/" + testGroup.Service
	h.waitSyncedProxies(key, 0)
	a.ACKAll(ra)
	h.waitSyncedProxies(key, 1)
	b.ACKAll(rb)
	h.waitSyncedProxies(key, 2)
	a.Close()
	h.waitSyncedProxies(key, 1)
}

// waitSyncedProxies waits until SyncedProxies counts want for key and
// agrees with the per-stream states Proxies reports.
func (h *harness) waitSyncedProxies(key string, want int) {
	h.t.Helper()
	var got, fromStreams int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got, fromStreams = h.srv.SyncedProxies()[key], 0
		for _, p := range h.srv.Proxies() {
			synced := len(p.Types) > 0
			for _, ts := range p.Types {
				synced = synced && ts.Status == StatusSynced
			}
			if synced {
				fromStreams++
			}
		}
		if got == want && fromStreams == want {
			return
		}
	}
	h.t.Fatalf("SyncedProxies()[%s] = %d and %d streams synced by Proxies(), want %d", key, got, fromStreams, want)
}

func TestSotwFirstProxyWaitsForFirstWorld(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sotw(sidecarNode("entrance-1"))
	c.SubscribeAll()
	// A control plane that just started must not serve a forward-only
	// config before it knows the policies: the proxy keeps what it has.
	c.ExpectQuiet()
	snaps := h.srv.Snapshots()
	if g, ok := snaps[testGroup.Key()]; !ok || len(g.Types) != 0 || g.SetAt != nil {
		t.Fatalf("Snapshots() = %+v, want the group known without a snapshot", snaps)
	}

	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c.ACKAll(c.Collect(allTypeNames...))
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
}

func TestSotwInvalidNodeClosesStream(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))

	c := h.sotw(metadataNode("broken-1", map[string]any{
		nodemeta.KeyNamespace: "shop",
		nodemeta.KeyPorts:     "15001:8080",
	}))
	// One request: the server ends the stream on it, so any further send
	// would race the close.
	c.Send("cluster", "", "", nil)
	h.expectRefused(c.Closed(), "broken-1", nodemeta.KeyService)
}

// expectRefused checks how the server turned a node away: the stream closed
// with InvalidArgument and a message naming each of want, the node counted
// as invalid, and no proxy or group left behind.
func (h *harness) expectRefused(err error, want ...string) {
	h.t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		h.t.Fatalf("stream ended with %v, want InvalidArgument", err)
	}
	for _, w := range want {
		if !strings.Contains(status.Convert(err).Message(), w) {
			h.t.Errorf("error %q does not name %q", status.Convert(err).Message(), w)
		}
	}
	if got := h.counterValue("shadowplane_xds_invalid_nodes_total", "", ""); got != 1 {
		h.t.Errorf("invalid_nodes_total = %v, want 1", got)
	}
	if len(h.srv.Proxies()) != 0 || len(h.srv.Snapshots()) != 0 {
		h.t.Errorf("an invalid node left state: proxies %+v snapshots %+v", h.srv.Proxies(), h.srv.Snapshots())
	}
}

func equalCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
