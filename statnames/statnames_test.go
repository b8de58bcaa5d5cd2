package statnames

import (
	"reflect"
	"regexp"
	"testing"
)

func TestShadowClusterRoundTrip(t *testing.T) {
	m := Mirror{Namespace: "shop", Policy: "to-staging", Mirror: "staging.entrance.8080"}
	name := ShadowCluster(m)
	if name != "copy|shop|to-staging|staging.entrance.8080" {
		t.Errorf("ShadowCluster = %q", name)
	}
	got, ok := ParseShadowCluster(name)
	if !ok || got != m {
		t.Errorf("ParseShadowCluster(%q) = %v, %t", name, got, ok)
	}
	for _, bad := range []string{"shadow|shop|entrance|8080", "copy|shop|p", "copy|shop||m", "copy|a|b|c|d", "app|8080"} {
		if _, ok := ParseShadowCluster(bad); ok {
			t.Errorf("ParseShadowCluster(%q) accepted", bad)
		}
	}
}

func TestRouteStatPrefix(t *testing.T) {
	p := RouteStatPrefix("shop", []string{"b", "a", "b"})
	if p != "copy|shop|a,b" {
		t.Errorf("RouteStatPrefix = %q, want the set sorted", p)
	}
	ns, policies, ok := ParseRouteStatPrefix(p)
	if !ok || ns != "shop" || !reflect.DeepEqual(policies, []string{"a", "b"}) {
		t.Errorf("ParseRouteStatPrefix = %q %q %t", ns, policies, ok)
	}
	for _, bad := range []string{"copy|shop|", "copy|shop|a,,b", "copy||a", "shop|a", "copy|shop|a|b"} {
		if _, _, ok := ParseRouteStatPrefix(bad); ok {
			t.Errorf("ParseRouteStatPrefix(%q) accepted", bad)
		}
	}
}

func TestParse(t *testing.T) {
	mirror := Mirror{Namespace: "shop", Policy: "p", Mirror: "staging.entrance.8080"}
	tests := []struct {
		full string
		want Stat
		ok   bool
	}{
		{full: "cluster.copy|shop|p|staging.entrance.8080.upstream_rq_total",
			want: Stat{Kind: KindCluster, Mirror: mirror, Name: StatRequests}, ok: true},
		{full: "cluster.copy|shop|p|staging.entrance.8080.upstream_rq_5xx",
			want: Stat{Kind: KindCluster, Mirror: mirror, Name: Stat5xx}, ok: true},
		{full: "cluster.copy|shop|p|staging.entrance.8080.upstream_rq_time",
			want: Stat{Kind: KindCluster, Mirror: mirror, Name: StatLatency}, ok: true},
		// The TLS stats hold a dot of their own: the mirror name ends
		// before "ssl.", not at the last dot.
		{full: "cluster.copy|shop|p|staging.entrance.8080.ssl.fail_verify_error",
			want: Stat{Kind: KindCluster, Mirror: mirror, Name: StatTLSVerifyFail}, ok: true},
		{full: "cluster.copy|shop|p|gw.ssl.connection_error",
			want: Stat{Kind: KindCluster, Mirror: Mirror{Namespace: "shop", Policy: "p", Mirror: "gw"}, Name: StatTLSConnectionError}, ok: true},
		{full: "cluster.copy|shop|p|gw.ssl.handshake",
			want: Stat{Kind: KindCluster, Mirror: Mirror{Namespace: "shop", Policy: "p", Mirror: "gw"}, Name: StatTLSHandshake}, ok: true},
		{full: "vhost.inbound|15001.route.copy|shop|a,b.upstream_rq_total",
			want: Stat{Kind: KindRoute, Namespace: "shop", Policies: []string{"a", "b"}, Name: StatMatched}, ok: true},
		// Stats the sink does not use, and names that are not shadowplane's.
		{full: "cluster.copy|shop|p|m.upstream_cx_active"},
		{full: "cluster.copy|shop|p|m.ssl.fail_verify_san"},
		{full: "cluster.app|8080.upstream_rq_total"},
		{full: "cluster.shadowplane_xds.upstream_rq_total"},
		{full: "vhost.inbound|15001.route.copy|shop|a.upstream_rq_2xx"},
		{full: "vhost.inbound|15001.route.forward.upstream_rq_total"},
		{full: "server.uptime"},
	}
	for _, tt := range tests {
		got, ok := Parse(tt.full)
		if ok != tt.ok || (ok && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("Parse(%q) = %+v, %t; want %+v, %t", tt.full, got, ok, tt.want, tt.ok)
		}
	}
}

// TestInclusionCoversParsedStats: every stat Parse accepts, and the uptime
// the sink needs, passes the stats matcher the bootstrap gives Envoy;
// per-route stats of routes that only forward, and the rarer cluster
// stats, do not.
func TestInclusionCoversParsedStats(t *testing.T) {
	var res []*regexp.Regexp
	for _, expr := range EnvoyStatsInclusion {
		res = append(res, regexp.MustCompile(`^(?:`+expr+`)$`)) // Envoy's full-match semantics
	}
	included := func(name string) bool {
		for _, re := range res {
			if re.MatchString(name) {
				return true
			}
		}
		return false
	}
	for _, name := range []string{
		"cluster.copy|shop|p|staging.entrance.8080.upstream_rq_total",
		"cluster.copy|shop|p|gw.ssl.fail_verify_error",
		"vhost.inbound|15001.route.copy|shop|a,b.upstream_rq_total",
		StatUptime,
		"cluster.shadowplane_xds.ssl.handshake",
		"listener_manager.listener_modified",
		"http.inbound_15001.rds.inbound|15001.update_success",
		"http.inbound_15001.downstream_cx_drain_close",
		"http.inbound_15001.downstream_rq_5xx",
		"cluster.app|8080.upstream_rq_5xx",
		"cluster.route|shop|entrance-v2|8080.upstream_cx_none_healthy",
	} {
		if !included(name) {
			t.Errorf("%s is not included", name)
		}
	}
	for _, name := range []string{"cluster.app|8080.lb_healthy_panic", "vhost.inbound|15001.route.forward.upstream_rq_total"} {
		if included(name) {
			t.Errorf("%s is included", name)
		}
	}
}
