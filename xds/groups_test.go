package xds

import (
	"sync"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

func TestIdleGroupsAreSweptAfterTTL(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	key := testGroup.Key()

	// Connected groups are never swept.
	h.srv.sweepIdleGroups(time.Now().Add(24 * time.Hour))
	if !h.srv.cache.hasSnapshot(key) {
		t.Fatal("a connected group lost its snapshot")
	}

	c.Close()
	eventually(t, "the proxy to disconnect", func() bool { return len(h.srv.Proxies()) == 0 })
	g := h.srv.Snapshots()[key]
	if g.Proxies != 0 || g.IdleSince == nil {
		t.Fatalf("group after disconnect = %+v, want 0 proxies and an idle time", g)
	}
	if got := h.gaugeValue("shadowplane_xds_connected_proxies"); got != 0 {
		t.Errorf("connected proxies = %v, want 0", got)
	}

	// Within the TTL the snapshot stays, so a restarting pod is served at once.
	h.srv.sweepIdleGroups(g.IdleSince.Add(DefaultIdleGroupTTL - time.Second))
	if !h.srv.cache.hasSnapshot(key) {
		t.Fatal("swept before the TTL")
	}

	h.srv.sweepIdleGroups(g.IdleSince.Add(DefaultIdleGroupTTL))
	if h.srv.cache.hasSnapshot(key) {
		t.Fatal("the idle group still has a snapshot in the cache")
	}
	if len(h.srv.Snapshots()) != 0 {
		t.Errorf("Snapshots() = %+v, want none", h.srv.Snapshots())
	}
	if got := h.gaugeValue("shadowplane_snapshot_groups"); got != 0 {
		t.Errorf("snapshot groups = %v, want 0", got)
	}

	// A proxy of the swept group is served afresh.
	c2 := h.sotw(sidecarNode("entrance-2"))
	c2.SubscribeAll()
	c2.ACKAll(c2.Collect(allTypeNames...))
	h.waitStatus("entrance-2", StatusSynced, allTypeNames...)
}

func TestRunSweepsIdleGroups(t *testing.T) {
	h := newHarness(t, nil, func(o *Options) {
		o.IdleGroupTTL = 50 * time.Millisecond
		o.SweepInterval = 10 * time.Millisecond
	})
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	c.Close()
	eventually(t, "Run to sweep the idle group", func() bool { return len(h.srv.Snapshots()) == 0 })
	if h.srv.cache.hasSnapshot(testGroup.Key()) {
		t.Error("the swept group still has a snapshot in the cache")
	}
}

func TestRunEndingClosesStreams(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	d := h.delta(sidecarNode("entrance-delta"))
	d.SubscribeAll()
	d.Collect(allTypeNames...)

	// Streams end cleanly, so a graceful gRPC stop completes and proxies
	// reconnect to another replica.
	h.stopRun()
	if err := c.Closed(); err != nil {
		t.Errorf("SotW stream ended with %v, want a clean end", err)
	}
	if err := d.Closed(); err != nil {
		t.Errorf("delta stream ended with %v, want a clean end", err)
	}
	eventually(t, "proxies to be forgotten", func() bool { return len(h.srv.Proxies()) == 0 })
}

func TestTranslatorPanicKeepsPreviousSnapshot(t *testing.T) {
	panicking := func(w *translator.World, g nodemeta.NodeGroup) *translator.Output {
		if w.Policies[0].Mirrors[0].PartsPerMillion == 666 {
			panic("translator bug")
		}
		return fakeTranslate(w, g)
	}
	h := newHarness(t, panicking)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	before := h.groupVersions()

	h.srv.SetWorld(testWorld(666, "10.1.0.1"))
	c.ExpectQuiet()
	if got := h.counterValue("shadowplane_xds_snapshot_errors_total", "reason", reasonTranslatePanic); got != 1 {
		t.Errorf("snapshot_errors_total{reason=translate_panic} = %v, want 1", got)
	}
	if after := h.groupVersions(); after["runtime"] != before["runtime"] {
		t.Errorf("runtime version changed from %q to %q after a panic", before["runtime"], after["runtime"])
	}
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
}

func TestInconsistentSnapshotIsNotSet(t *testing.T) {
	broken := func(w *translator.World, g nodemeta.NodeGroup) *translator.Output {
		out := fakeTranslate(w, g)
		if len(w.Service("staging", "entrance").Endpoints) > 1 {
			out.Endpoints = nil // the shadow cluster's endpoints go missing
		}
		return out
	}
	h := newHarness(t, broken)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	before := h.srv.Pushes()

	h.srv.SetWorld(testWorld(250000, "10.1.0.1", "10.1.0.2"))
	c.ExpectQuiet()
	if got := h.counterValue("shadowplane_xds_snapshot_errors_total", "reason", reasonInvalid); got != 1 {
		t.Errorf("snapshot_errors_total{reason=invalid} = %v, want 1", got)
	}
	if after := h.srv.Pushes(); !equalCounts(before, after) {
		t.Errorf("Pushes changed from %v to %v for a refused snapshot", before, after)
	}
}

func TestEventToSnapshotLatencyIsObserved(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	syncedSotw(h, "entrance-1")
	// The first snapshot came from a proxy joining, not from an event.
	if got := h.histogramCount("shadowplane_event_to_snapshot_seconds"); got != 0 {
		t.Fatalf("event_to_snapshot count = %d before any dated change, want 0", got)
	}

	w := testWorld(15000, "10.1.0.1")
	w.ObservedAt = time.Now().Add(-50 * time.Millisecond)
	h.srv.SetWorld(w)
	if got := h.histogramCount("shadowplane_event_to_snapshot_seconds"); got != 1 {
		t.Errorf("event_to_snapshot count = %d, want 1", got)
	}
	if got := h.histogramCount("shadowplane_translation_duration_seconds"); got < 2 {
		t.Errorf("translation_duration count = %d, want at least 2", got)
	}

	// An undated World (ObservedAt zero) is not observed.
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	if got := h.histogramCount("shadowplane_event_to_snapshot_seconds"); got != 1 {
		t.Errorf("event_to_snapshot count = %d after an undated World, want 1", got)
	}
}

func TestNilWorldIsIgnored(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	h.srv.SetWorld(nil)
	c.ExpectQuiet()
	if !h.srv.hasWorld() {
		t.Error("a nil World replaced the last good one")
	}
}

// TestConcurrentWorldsAndStreams runs SetWorld from several goroutines while
// proxies connect and ACK; run with -race. Whatever the interleaving, every
// proxy ends SYNCED on the last World set.
func TestConcurrentWorldsAndStreams(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(1, "10.1.0.1"))

	ids := []string{"entrance-1", "entrance-2"}
	stop := make(chan struct{})
	var ackers sync.WaitGroup
	for _, id := range ids {
		c := h.sotw(sidecarNode(id))
		c.SubscribeAll()
		// ACK everything that arrives, as Envoy does, until the end.
		ackers.Add(1)
		go func() {
			defer ackers.Done()
			for {
				select {
				case resp := <-c.Responses():
					if err := c.TryACK(resp); err != nil {
						return
					}
				case <-stop:
					return
				}
			}
		}()
	}

	var writers sync.WaitGroup
	for g := range 3 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 20 {
				h.srv.SetWorld(testWorld(uint32(1000*(g*20+i)+2), "10.1.0.1"))
				_ = h.srv.Proxies()
				_ = h.srv.Snapshots()
			}
		}()
	}
	writers.Wait()

	final := testWorld(424242, "10.1.0.1")
	h.srv.SetWorld(final)
	want := fakeTranslate(final, testGroup).Versions
	for _, id := range ids {
		eventually(t, id+" synced on the final World", func() bool {
			p, ok := h.proxy(id)
			if !ok {
				return false
			}
			for _, st := range translator.ResourceTypes {
				ts := p.Types[st.Name]
				if ts.Status != StatusSynced || ts.Acked != want[st.URL] {
					return false
				}
			}
			return true
		})
	}
	close(stop)
	ackers.Wait()
}
