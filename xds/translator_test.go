package xds

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/translator"
)

// TestRealTranslatorPercentChangeResendsOnlyRuntime wires the real
// translator.Translate (New's default) and checks the design's promise end
// to end through gRPC: a percent change is an RTDS update alone.
func TestRealTranslatorPercentChangeResendsOnlyRuntime(t *testing.T) {
	h := newHarness(t, translator.Translate)
	before := testWorld(250000, "10.1.0.1")
	h.srv.SetWorld(before)

	// Subscribe as Envoy would, to the names the translator produced.
	out := translator.Translate(before, testGroup)
	names := map[string][]string{
		"endpoint": resourceNames(out.Endpoints),
		"route":    resourceNames(out.Routes),
		"runtime":  {translator.RuntimeLayerName},
	}
	if len(names["endpoint"]) == 0 || len(names["route"]) == 0 {
		t.Fatalf("the test World translates to no endpoints or routes: %v (warnings %v)", names, out.Warnings)
	}
	c := adsclient.NewSotW(t, h.conn, sidecarNode("entrance-1"), names)
	c.SubscribeAll()
	c.ACKAll(c.Collect(allTypeNames...))
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)
	pushes := h.srv.Pushes()

	h.srv.SetWorld(testWorld(15000, "10.1.0.1"))
	resp := c.Collect("runtime")["runtime"]
	c.ExpectQuiet()
	c.Send("runtime", resp.GetVersionInfo(), resp.GetNonce(), nil)
	h.waitStatus("entrance-1", StatusSynced, allTypeNames...)

	after := h.srv.Pushes()
	for _, name := range allTypeNames {
		want := pushes[name]
		if name == "runtime" {
			want++
		}
		if after[name] != want {
			t.Errorf("Pushes()[%s] = %d, want %d", name, after[name], want)
		}
	}
}

func resourceNames[T types.Resource](items []T) []string {
	out := make([]string, len(items))
	for i, r := range items {
		out[i] = cachev3.GetResourceName(r)
	}
	return out
}
