package xds

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// observed is one Observer call.
type observed struct {
	step, who, typ, version string
	observedAt, at          time.Time
}

type observerLog struct {
	mu     sync.Mutex
	events []observed
}

func (l *observerLog) add(e observed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *observerLog) observer() *Observer {
	return &Observer{
		SnapshotSet: func(group string, changed map[string]string, observedAt, at time.Time) {
			for typ, version := range changed {
				l.add(observed{step: "snapshot", who: group, typ: typ, version: version, observedAt: observedAt, at: at})
			}
		},
		ResponseSent: func(node, typ, version string, at time.Time) {
			l.add(observed{step: "response", who: node, typ: typ, version: version, at: at})
		},
		Acked: func(node, typ, version string, at time.Time) {
			l.add(observed{step: "ack", who: node, typ: typ, version: version, at: at})
		},
	}
}

// since returns the events after mark, of one type.
func (l *observerLog) since(mark int, typ string) []observed {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []observed
	for _, e := range l.events[mark:] {
		if e.typ == typ {
			out = append(out, e)
		}
	}
	return out
}

func (l *observerLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// TestObserverSeesEachStepOfAChange: a percent change is reported as the
// runtime snapshot set (with the World's ObservedAt), the runtime response
// sent to the proxy and its ACK, in that order, with the sent version.
func TestObserverSeesEachStepOfAChange(t *testing.T) {
	log := &observerLog{}
	h := newHarness(t, nil, func(o *Options) { o.Observer = log.observer() })
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	c := syncedSotw(h, "entrance-1")
	mark := log.len()

	w := testWorld(15000, "10.1.0.1")
	w.ObservedAt = time.Now()
	h.srv.SetWorld(w)
	resp := c.Collect("runtime")["runtime"]
	c.Send("runtime", resp.GetVersionInfo(), resp.GetNonce(), nil)
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)

	got := log.since(mark, "runtime")
	steps := make([]string, len(got))
	for i, e := range got {
		steps[i] = e.step
	}
	if !slices.Equal(steps, []string{"snapshot", "response", "ack"}) {
		t.Fatalf("runtime steps %v, want snapshot, response, ack", steps)
	}
	snapshot, response, ack := got[0], got[1], got[2]
	if !snapshot.observedAt.Equal(w.ObservedAt) {
		t.Errorf("snapshot observedAt %v, want the World's %v", snapshot.observedAt, w.ObservedAt)
	}
	if response.who != "entrance-1" || ack.who != "entrance-1" {
		t.Errorf("response to %q, ack from %q; want entrance-1", response.who, ack.who)
	}
	if snapshot.version != resp.GetVersionInfo() || response.version != resp.GetVersionInfo() || ack.version != resp.GetVersionInfo() {
		t.Errorf("snapshot version %q, response version %q, ack version %q; want %q", snapshot.version, response.version, ack.version, resp.GetVersionInfo())
	}
	if snapshot.at.After(response.at) || response.at.After(ack.at) {
		t.Errorf("steps out of order: snapshot %v, response %v, ack %v", snapshot.at, response.at, ack.at)
	}
	for _, other := range []string{"listener", "route", "cluster", "endpoint"} {
		if e := log.since(mark, other); len(e) != 0 {
			t.Errorf("a percent change reported %s steps: %+v", other, e)
		}
	}
}
