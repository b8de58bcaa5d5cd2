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

// routeClusterGrace is how long a routeTo cluster outlives the routes that
// sent real requests to it.
//
// Why: ADS delivers clusters before routes, so when a routing rule (or one
// of its backends) goes away, Envoy would drop the backend's cluster while
// the old route still sends requests to it, and answer those with 503 until
// the new route arrives. Kept for this long, the cluster stays until Envoy
// has long applied the routes and weights that no longer use it. (Copies to
// a removed shadow cluster are only dropped, so shadow clusters need no
// grace.)
const routeClusterGrace = 2 * time.Second

// retiringCluster is a routeTo cluster that the latest translation no
// longer has, kept in the group's snapshot until its deadline.
type retiringCluster struct {
	cluster  *clusterv3.Cluster
	deadline time.Time
}

// retainRouteClusters adds to out the routeTo clusters that the previous
// translation had and out lacks, for routeClusterGrace. It updates the
// group's retiring set and returns the output to serve and, when it keeps
// any cluster, when to translate again to let them go.
func (g *groupState) retainRouteClusters(out *translator.Output, now time.Time) (*translator.Output, time.Time) {
	have := map[string]bool{}
	for _, c := range out.Clusters {
		have[c.GetName()] = true
	}
	if g.retiring == nil {
		g.retiring = map[string]retiringCluster{}
	}
	if g.lastTranslated != nil {
		for _, c := range g.lastTranslated.Clusters {
			if strings.HasPrefix(c.GetName(), translator.RouteClusterPrefix) && !have[c.GetName()] {
				if _, already := g.retiring[c.GetName()]; !already {
					g.retiring[c.GetName()] = retiringCluster{cluster: c, deadline: now.Add(routeClusterGrace)}
				}
			}
		}
	}
	g.lastTranslated = out

	var kept []*clusterv3.Cluster
	var next time.Time
	for name, r := range g.retiring {
		if have[name] || !now.Before(r.deadline) {
			delete(g.retiring, name)
			continue
		}
		kept = append(kept, r.cluster)
		if next.IsZero() || r.deadline.Before(next) {
			next = r.deadline
		}
	}
	if len(kept) == 0 {
		return out, time.Time{}
	}
	served := *out
	served.Clusters = append(append([]*clusterv3.Cluster(nil), out.Clusters...), kept...)
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
		if g != nil && w != nil {
			s.refreshGroup(w, g.group, false)
		}
	})
}
