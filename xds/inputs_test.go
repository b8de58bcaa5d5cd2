package xds

import (
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
