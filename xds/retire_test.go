package xds

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/shadowplane/shadowplane/translator"
)

// testCluster is a cluster with one inline host, or none when empty.
func testCluster(name string, empty bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name}}
	if !empty {
		c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{}}}}
	}
	return c
}

func clusterOutput(clusters ...*clusterv3.Cluster) *translator.Output {
	return &translator.Output{Clusters: clusters, Versions: map[string]string{resourcev3.ClusterType: "translated"}}
}

func clusterNames(out *translator.Output) []string {
	var names []string
	for _, c := range out.Clusters {
		names = append(names, c.GetName())
	}
	return names
}

// TestRetainRouteClusters: a routeTo cluster that a translation drops, or
// empties, stays in the served output as it was for the grace period, then
// goes; shadow clusters go at once; a cluster that comes back usable is no
// longer retiring.
func TestRetainRouteClusters(t *testing.T) {
	app, shadow := testCluster("app|1", false), testCluster("shadow|ns|s|80", false)
	v2, v3 := testCluster("route|ns|v2|80", false), testCluster("route|ns|v3|80", false)
	g := &groupState{}
	t0 := time.Unix(1000, 0)
	if out, again := g.retainRouteClusters(clusterOutput(app, v2, shadow), t0); len(out.Clusters) != 3 || !again.IsZero() {
		t.Fatalf("first translation changed: %v %v", clusterNames(out), again)
	}
	out, again := g.retainRouteClusters(clusterOutput(app), t0.Add(time.Second))
	if got := clusterNames(out); len(got) != 2 || got[1] != "route|ns|v2|80" {
		t.Errorf("served clusters %v, want app|1 and the retiring route|ns|v2|80 (not the shadow cluster)", got)
	}
	if want := t0.Add(time.Second + routeClusterGrace); !again.Equal(want) {
		t.Errorf("translate again at %v, want %v", again, want)
	}
	if out.Versions[resourcev3.ClusterType] == "translated" {
		t.Error("the served clusters kept the version of the translation, which lacks a cluster")
	}
	if out, again := g.retainRouteClusters(clusterOutput(app), again); len(out.Clusters) != 1 || !again.IsZero() {
		t.Errorf("after the grace period: %v, again %v; want only app|1", clusterNames(out), again)
	}

	// A backend losing its last endpoint keeps its old endpoints a while.
	g.retainRouteClusters(clusterOutput(app, v3), t0.Add(5*time.Second))
	out, again = g.retainRouteClusters(clusterOutput(app, testCluster("route|ns|v3|80", true)), t0.Add(6*time.Second))
	if len(out.Clusters) != 2 || !hasEndpoints(out.Clusters[1]) || again.IsZero() {
		t.Errorf("an emptied cluster: served %v (with endpoints: %v), again %v; want the old version kept", clusterNames(out), hasEndpoints(out.Clusters[1]), again)
	}
	if out, _ := g.retainRouteClusters(clusterOutput(app, v3), t0.Add(7*time.Second)); len(out.Clusters) != 2 || len(g.retiring) != 0 {
		t.Errorf("a cluster that came back: served %v, retiring %v", clusterNames(out), g.retiring)
	}
}
