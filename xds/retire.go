package xds

import (
	"sort"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/translator"
)

// routeClusterGrace is how long a routeTo cluster outlives the routes and
// weights that sent real requests to it.
//
// Why: ADS delivers clusters before routes and runtime, so when a routing
// rule (or one of its backends) goes away, Envoy would drop the backend's
// cluster while the old route still sends requests to it, and answer those
// with 503 until the new route arrives. Likewise when a backend loses its
// last ready endpoint: the emptied cluster would arrive before the weight 0
// that moves its share to the stable version. Kept as it was for this long,
// the cluster stays usable until Envoy has long applied the routes and
// weights that no longer use it. (Copies to a removed shadow cluster are
// only dropped, so shadow clusters need no grace.)
const routeClusterGrace = 2 * time.Second

// retiringCluster is a routeTo cluster that the latest translation no
// longer has, kept in the group's snapshot until its deadline.
type retiringCluster struct {
	cluster  *clusterv3.Cluster
	deadline time.Time
}

// retainRouteClusters keeps in the output to serve, for routeClusterGrace,
// each routeTo cluster that the previous translation had with endpoints and
// out lacks or has without any, as the previous translation had it. It
// updates the group's retiring set and returns the output to serve and,
// when it keeps any cluster, when to translate again to let them go.
func (g *groupState) retainRouteClusters(out *translator.Output, now time.Time) (*translator.Output, time.Time) {
	usable := map[string]bool{}
	for _, c := range out.Clusters {
		usable[c.GetName()] = hasEndpoints(c)
	}
	if g.retiring == nil {
		g.retiring = map[string]retiringCluster{}
	}
	if g.lastTranslated != nil {
		for _, c := range g.lastTranslated.Clusters {
			name := c.GetName()
			if strings.HasPrefix(name, translator.RouteClusterPrefix) && hasEndpoints(c) && !usable[name] {
				if _, already := g.retiring[name]; !already {
					g.retiring[name] = retiringCluster{cluster: c, deadline: now.Add(routeClusterGrace)}
				}
			}
		}
	}
	g.lastTranslated = out

	kept := map[string]*clusterv3.Cluster{}
	var next time.Time
	for name, r := range g.retiring {
		if usable[name] || !now.Before(r.deadline) {
			delete(g.retiring, name)
			continue
		}
		kept[name] = r.cluster
		if next.IsZero() || r.deadline.Before(next) {
			next = r.deadline
		}
	}
	if len(kept) == 0 {
		return out, time.Time{}
	}
	served := *out
	served.Clusters = nil
	for _, c := range out.Clusters {
		if _, replaced := kept[c.GetName()]; !replaced {
			served.Clusters = append(served.Clusters, c)
		}
	}
	for _, c := range kept {
		served.Clusters = append(served.Clusters, c)
	}
	sort.Slice(served.Clusters, func(i, j int) bool { return served.Clusters[i].GetName() < served.Clusters[j].GetName() })
	served.Versions = make(map[string]string, len(out.Versions))
	for url, v := range out.Versions {
		served.Versions[url] = v
	}
	served.Versions[resourcev3.ClusterType] = contenthash.Messages(served.Resources(resourcev3.ClusterType))
	return &served, next
}

// refreshGroupAt translates the group again at t, from the World then in
// force, so retired routeTo clusters leave its snapshot.
func (s *Server) refreshGroupAt(key string, t time.Time) {
	time.AfterFunc(time.Until(t)+10*time.Millisecond, func() {
		if s.ctx.Err() != nil {
			return
		}
		s.translateMu.Lock()
		defer s.translateMu.Unlock()
		s.mu.Lock()
		g, w := s.groups[key], s.world
		s.mu.Unlock()
		if g != nil && w != nil && s.byService != nil {
			// Translated again even though its inputs did not change: the
			// retiring clusters are what changes.
			s.refreshGroup(w, g.group, false, groupInputs(w, g.group, s.byService, &s.inputs))
		}
	})
}

// hasEndpoints reports whether a cluster's inline endpoints hold a host.
func hasEndpoints(c *clusterv3.Cluster) bool {
	for _, l := range c.GetLoadAssignment().GetEndpoints() {
		if len(l.GetLbEndpoints()) > 0 {
			return true
		}
	}
	return false
}
