// Package statnames owns the contract between the names the translator
// gives Envoy resources and the copy metrics the control plane aggregates
// from sidecars' stats. The translator names each mirror's shadow cluster
// and each copying route's stat prefix here; the metrics sink parses Envoy
// stat names back here; the bootstrap's stats matcher comes from here. One
// place, so a rename can never leave a stat that maps to nothing.
//
// The names:
//
//	copy|<namespace>|<policy>|<mirror>      the cluster of one mirror of one
//	                                         policy: its upstream_rq_* are
//	                                         the copies of that mirror
//	copy|<namespace>|<policy>[,<policy>…]   the stat_prefix of a route, whose
//	                                         vhost.<vhost>.route.<prefix>.
//	                                         upstream_rq_total counts the
//	                                         requests that route matched, for
//	                                         every policy it copies for
//
// Namespaces and policy names are DNS labels (no '.', '|' or ','); mirror
// names may hold dots, so a stat name is split at the known stat suffix,
// never at a dot.
package statnames

import (
	"sort"
	"strings"
)

// prefix starts every shadowplane copy name.
const prefix = "copy|"

// Mirror identifies one mirror of one policy.
type Mirror struct {
	Namespace string
	Policy    string
	Mirror    string
}

// ShadowCluster names the cluster that carries the copies of one mirror.
func ShadowCluster(m Mirror) string {
	return prefix + m.Namespace + "|" + m.Policy + "|" + m.Mirror
}

// ShadowClusterPrefix is what the names of a namespace's shadow clusters
// start with.
func ShadowClusterPrefix(namespace string) string {
	return prefix + namespace + "|"
}

// ParseShadowCluster reverses ShadowCluster.
func ParseShadowCluster(name string) (Mirror, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return Mirror{}, false
	}
	parts := strings.Split(rest, "|")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Mirror{}, false
	}
	return Mirror{Namespace: parts[0], Policy: parts[1], Mirror: parts[2]}, true
}

// RouteStatPrefix is the stat_prefix of a route that copies for the given
// policies of one namespace. Policies are sorted and deduplicated, so the
// prefix depends only on the set.
func RouteStatPrefix(namespace string, policies []string) string {
	sorted := append([]string(nil), policies...)
	sort.Strings(sorted)
	var distinct []string
	for i, p := range sorted {
		if i == 0 || p != sorted[i-1] {
			distinct = append(distinct, p)
		}
	}
	return prefix + namespace + "|" + strings.Join(distinct, ",")
}

// ParseRouteStatPrefix reverses RouteStatPrefix.
func ParseRouteStatPrefix(statPrefix string) (namespace string, policies []string, ok bool) {
	rest, ok := strings.CutPrefix(statPrefix, prefix)
	if !ok {
		return "", nil, false
	}
	namespace, list, ok := strings.Cut(rest, "|")
	if !ok || namespace == "" || list == "" || strings.Contains(list, "|") {
		return "", nil, false
	}
	policies = strings.Split(list, ",")
	for _, p := range policies {
		if p == "" {
			return "", nil, false
		}
	}
	return namespace, policies, true
}

// Envoy stat names (counters unless said otherwise) that the copy metrics
// read from a mirror's cluster, cluster.<ShadowCluster>.<stat>. Verified
// against Envoy 1.40's behaviour in integration/copymetrics_test.go.
const (
	// StatRequests counts copies that reached a connection to the target
	// (a copy dropped by a circuit breaker or for lack of a healthy host
	// never does).
	StatRequests = "upstream_rq_total"
	Stat2xx      = "upstream_rq_2xx"
	Stat3xx      = "upstream_rq_3xx"
	Stat4xx      = "upstream_rq_4xx"
	Stat5xx      = "upstream_rq_5xx"
	// StatPendingOverflow: dropped by the pending-requests or requests
	// circuit breaker.
	StatPendingOverflow = "upstream_rq_pending_overflow"
	// StatNoHealthy: dropped because the target had no healthy endpoint.
	StatNoHealthy = "upstream_cx_none_healthy"
	// StatConnectFail: copies failed because the connection to the target
	// failed (per request; upstream_cx_connect_fail counts connections).
	StatConnectFail = "upstream_rq_pending_failure_eject"
	// StatResetRx and StatResetTx: the copy's stream was reset by the
	// target or by Envoy.
	StatResetRx = "upstream_rq_rx_reset"
	StatResetTx = "upstream_rq_tx_reset"
	// StatTimeout: per-try or route timeout; StatMaxDuration: the
	// cluster's max_stream_duration reset the copy.
	StatTimeout     = "upstream_rq_timeout"
	StatMaxDuration = "upstream_rq_max_duration_reached"
	// A copy whose body exceeds the guard's maxBodyBytes is abandoned by
	// the shadow cluster's buffer filter, with no response charged
	// (checked against Envoy 1.40): a copy already on a connection ends it
	// (StatDestroyedWithRequest; over HTTP/1 one connection carries one
	// copy at a time), one still waiting for a connection is cancelled
	// (StatCancelled).
	StatDestroyedWithRequest = "upstream_cx_destroy_local_with_active_rq"
	StatCancelled            = "upstream_rq_cancelled"
	// StatLatency is the histogram of copy response times in milliseconds.
	StatLatency = "upstream_rq_time"
	// The upstream TLS stats of a mirror's cluster, by connection:
	// StatTLSVerifyFail counts the target certificates Envoy refused (not
	// signed by the mirror's CA, or not for its SNI); StatTLSConnectionError
	// the TLS failures it could not put down to verification, among them
	// the target refusing the handshake (e.g. it requires a client
	// certificate the mirror does not send). Envoy counts a failure in one
	// or the other, never both. StatTLSHandshake counts the handshakes that
	// succeeded.
	StatTLSVerifyFail      = "ssl.fail_verify_error"
	StatTLSConnectionError = "ssl.connection_error"
	StatTLSHandshake       = "ssl.handshake"
)

// ClusterStats are the cluster stats the sink reads, in a fixed order.
var ClusterStats = []string{
	StatRequests, Stat2xx, Stat3xx, Stat4xx, Stat5xx, StatPendingOverflow, StatNoHealthy,
	StatConnectFail, StatResetRx, StatResetTx, StatTimeout, StatMaxDuration, StatDestroyedWithRequest, StatCancelled,
	StatLatency, StatTLSVerifyFail, StatTLSConnectionError, StatTLSHandshake,
}

// StatMatched is the route stat that counts the requests a route matched.
const StatMatched = "upstream_rq_total"

// StatUptime is Envoy's gauge of seconds since it started: the sink tells
// a restarted Envoy (whose counters started again from zero) from one that
// only reconnected.
const StatUptime = "server.uptime"

// Stat is one parsed copy stat.
type Stat struct {
	// Kind is KindCluster or KindRoute.
	Kind Kind
	// Mirror is set for KindCluster.
	Mirror Mirror
	// Namespace and Policies are set for KindRoute.
	Namespace string
	Policies  []string
	// Name is the stat within the cluster or route, e.g. upstream_rq_total.
	Name string
}

// Kind says what a Stat belongs to.
type Kind int

const (
	KindCluster Kind = iota + 1
	KindRoute
)

// Parse reads a full Envoy stat name. It accepts only the copy stats the
// sink uses: cluster.<ShadowCluster>.<one of ClusterStats> and
// vhost.<vhost>.route.<RouteStatPrefix>.<StatMatched>.
func Parse(full string) (Stat, bool) {
	if rest, ok := strings.CutPrefix(full, "cluster."+prefix); ok {
		for _, s := range ClusterStats {
			if name, ok := strings.CutSuffix(rest, "."+s); ok {
				m, ok := ParseShadowCluster(prefix + name)
				return Stat{Kind: KindCluster, Mirror: m, Name: s}, ok
			}
		}
		return Stat{}, false
	}
	if rest, ok := strings.CutPrefix(full, "vhost."); ok {
		head, ok := strings.CutSuffix(rest, "."+StatMatched)
		if !ok {
			return Stat{}, false
		}
		_, statPrefix, ok := strings.Cut(head, ".route."+prefix)
		if !ok {
			return Stat{}, false
		}
		ns, policies, ok := ParseRouteStatPrefix(prefix + statPrefix)
		return Stat{Kind: KindRoute, Namespace: ns, Policies: policies, Name: StatMatched}, ok
	}
	return Stat{}, false
}

// EnvoyStatsInclusion are the regular expressions of Envoy's stats matcher
// in the sidecar bootstrap: Envoy creates (and so keeps in memory, shows on
// its admin /stats and reports to the control plane) only the stats that
// match. The copy stats above, plus the few families operators and the
// tests read to see the sidecar's own health: the xDS connection, config
// updates, runtime, the server, the inbound listeners' HTTP stats (route
// updates, drains, resets, 5xx) and the request counters of the
// application and routeTo clusters.
//
// Envoy's safe_regex must match the whole stat name, hence the ".*".
var EnvoyStatsInclusion = []string{
	`cluster\.copy\|.*`,
	`vhost\.[^.]+\.route\.copy\|.*`,
	`cluster\.shadowplane_xds\..*`,
	`(server|listener_manager|cluster_manager|runtime|control_plane)\..*`,
	`http\.inbound_[^.]+\..*`,
	// The request and connection counters of the application and of the
	// routeTo backends, which a release is judged by (5xx, resets, no
	// healthy host), without the other hundred stats of each cluster.
	`cluster\.(app|route)\|[^.]*\.(upstream_rq_[^.]*|upstream_cx_[^.]*|membership_[^.]*)`,
}
