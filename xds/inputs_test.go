package xds

import (
	"maps"
	"sync"
	"testing"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

// countingTranslate wraps fakeTranslate and counts translations by group.
type countingTranslate struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingTranslate) translate(w *translator.World, g nodemeta.NodeGroup) *translator.Output {
	c.mu.Lock()
	c.counts[g.Key()]++
	c.mu.Unlock()
	return fakeTranslate(w, g)
}

func (c *countingTranslate) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

// TestSetWorldTranslatesOnlyAffectedGroups: a new World translates only
// the groups whose policies, or the Services those name, changed.
func TestSetWorldTranslatesOnlyAffectedGroups(t *testing.T) {
	counter := &countingTranslate{counts: map[string]int{}}
	h := newHarness(t, counter.translate)
	otherGroup := nodemeta.NodeGroup{Namespace: "shop", Service: "cart", ListenAddress: "0.0.0.0", Ports: testGroup.Ports}
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	syncedSotw(h, "entrance-1")
	other := h.sotw(nodemeta.Metadata{NodeID: "cart-1", Namespace: "shop", Service: "cart", Ports: testGroup.Ports}.Node())
	other.SubscribeAll()
	other.ACKAll(other.Collect(allTypeNames...))
	h.waitStatus("cart-1", StatusSynced, allTypeNames...)
	counter.take()

	withUnrelated := func(w *translator.World) *translator.World {
		w.Services["shop/unrelated"] = &translator.Service{Namespace: "shop", Name: "unrelated",
			Endpoints: []translator.Endpoint{{Address: "10.9.9.9"}}}
		return w
	}
	steps := []struct {
		name  string
		world *translator.World
		want  map[string]int
	}{
		{"an equal World", testWorld(250000, "10.1.0.1"), map[string]int{}},
		{"a Service no policy names", withUnrelated(testWorld(250000, "10.1.0.1")), map[string]int{}},
		{"the entrance policy's share", testWorld(15000, "10.1.0.1"), map[string]int{testGroup.Key(): 1}},
		{"an endpoint of the Service the entrance policy copies to", testWorld(15000, "10.1.0.2"), map[string]int{testGroup.Key(): 1}},
	}
	for _, step := range steps {
		h.srv.SetWorld(step.world)
		got := counter.take()
		if len(got) != len(step.want) || got[testGroup.Key()] != step.want[testGroup.Key()] || got[otherGroup.Key()] != 0 {
			t.Errorf("%s: translations %v, want %v", step.name, got, step.want)
		}
	}
}

// TestSetWorldSkipsGroupsByIdentity: a group whose World objects are the
// very ones it was translated from is skipped without reading them (the
// watcher never modifies an object it handed on, so the same object means
// the same content), and a group one of whose objects was replaced is
// translated again.
func TestSetWorldSkipsGroupsByIdentity(t *testing.T) {
	counter := &countingTranslate{counts: map[string]int{}}
	h := newHarness(t, counter.translate)
	w := testWorld(250000, "10.1.0.1")
	h.srv.SetWorld(w)
	syncedSotw(h, "entrance-1")
	counter.take()

	// The same objects, one of them changed in place against the
	// contract: the change is not even looked at.
	staging := w.Services[translator.ServiceKey("staging", "entrance")]
	staging.Endpoints[0].Address = "10.1.0.9"
	h.srv.SetWorld(w)
	if got := counter.take(); len(got) != 0 {
		t.Errorf("the same World objects: translations %v, want none", got)
	}

	// A new World sharing every object but the staging Service, which is
	// replaced by a copy: the group is translated.
	next := *w
	next.Services = maps.Clone(w.Services)
	replaced := *staging
	next.Services[translator.ServiceKey("staging", "entrance")] = &replaced
	h.srv.SetWorld(&next)
	if got := counter.take(); got[testGroup.Key()] != 1 || len(got) != 1 {
		t.Errorf("a replaced Service: translations %v, want one of %s", got, testGroup.Key())
	}
}
