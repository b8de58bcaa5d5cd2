package xds

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/shadowplane/shadowplane/translator"
)

func clusterOutput(names ...string) *translator.Output {
	out := &translator.Output{Versions: map[string]string{resourcev3.ClusterType: "v-" + names[0]}}
	for _, n := range names {
		out.Clusters = append(out.Clusters, &clusterv3.Cluster{Name: n})
	}
	return out
}

func clusterNames(out *translator.Output) []string {
	var names []string
	for _, c := range out.Clusters {
		names = append(names, c.GetName())
	}
	return names
}

// TestRetainRouteClusters: a routeTo cluster that a translation drops stays
// in the served output for the grace period, then goes; shadow clusters go
// at once; a cluster that comes back is no longer retiring.
func TestRetainRouteClusters(t *testing.T) {
	g := &groupState{}
	t0 := time.Unix(1000, 0)
	if out, again := g.retainRouteClusters(clusterOutput("app|1", "route|ns|v2|80", "shadow|ns|s|80"), t0); len(out.Clusters) != 3 || !again.IsZero() {
		t.Fatalf("first translation changed: %v %v", clusterNames(out), again)
	}
	out, again := g.retainRouteClusters(clusterOutput("app|1"), t0.Add(time.Second))
	if got := clusterNames(out); len(got) != 2 || got[1] != "route|ns|v2|80" {
		t.Errorf("served clusters %v, want app|1 and the retiring route|ns|v2|80 (not the shadow cluster)", got)
	}
	if want := t0.Add(time.Second + routeClusterGrace); !again.Equal(want) {
		t.Errorf("translate again at %v, want %v", again, want)
	}
	if out.Versions[resourcev3.ClusterType] == "v-app|1" {
		t.Error("the served clusters kept the version of the translation, which lacks a cluster")
	}
	if out, again := g.retainRouteClusters(clusterOutput("app|1"), again); len(out.Clusters) != 1 || !again.IsZero() {
		t.Errorf("after the grace period: %v, again %v; want only app|1", clusterNames(out), again)
	}
	g.retainRouteClusters(clusterOutput("app|1", "route|ns|v3|80"), t0.Add(5*time.Second))
	g.retainRouteClusters(clusterOutput("app|1"), t0.Add(6*time.Second))
	if out, _ := g.retainRouteClusters(clusterOutput("app|1", "route|ns|v3|80"), t0.Add(7*time.Second)); len(out.Clusters) != 2 || len(g.retiring) != 0 {
		t.Errorf("a cluster that came back: served %v, retiring %v", clusterNames(out), g.retiring)
	}
}
