package xds

import (
	"context"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/time/rate"
)

// Per-type sync states in ProxyStatus.
const (
	// StatusSynced: the proxy acknowledged the group's current version.
	StatusSynced = "SYNCED"
	// StatusStale: the proxy has not yet been sent, or not yet
	// acknowledged, the group's current version.
	StatusStale = "STALE"
	// StatusNacked: the proxy rejected the last response of this type.
	StatusNacked = "NACKED"
)

// ProxyStatus is the xDS state of one connected proxy stream.
type ProxyStatus struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	Address   string    `json:"address,omitempty"`
	Connected time.Time `json:"connected"`
	Delta     bool      `json:"delta"`
	// Types by short type name (listener, route, cluster, endpoint,
	// runtime), for the types the proxy has requested.
	Types map[string]TypeStatus `json:"types"`
}

// TypeStatus is one xDS type's state on one proxy stream.
type TypeStatus struct {
	Sent     string `json:"sent"`
	Acked    string `json:"acked"`
	Current  string `json:"current"`
	Status   string `json:"status"`
	LastNack *Nack  `json:"lastNack,omitempty"`
}

// Nack is a response the proxy rejected.
type Nack struct {
	// Version is the rejected version, when the NACK names the last response.
	Version string    `json:"version"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// streamKey identifies a stream: go-control-plane numbers SotW and delta
// streams separately, so the IDs alone collide.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is what the callbacks learned about one stream.
type streamState struct {
	opened  time.Time
	address string
	// nodeID and groupKey are set by the first request; groupKey "" means
	// the stream has not identified itself yet.
	nodeID   string
	groupKey string
	// node is the first node the stream named; a stream may not name
	// another later (go-control-plane would adopt it unverified).
	node *corev3.Node
	// firstNode is the request's node that identified the stream, as
	// received; go-control-plane passes it again with later requests.
	firstNode *corev3.Node
	ctx       context.Context
	// limiter bounds the stream's request rate.
	limiter *rate.Limiter
	types   map[string]*typeState // by type URL
	// group is the group the stream joined (nil before); synced says
	// whether it counts in group.synced (see resyncLocked).
	group  *groupState
	synced bool
}

// typeState tracks one type on one stream. go-control-plane sends a type's
// next response only after the proxy answers the previous one, so one
// outstanding nonce per type is enough.
type typeState struct {
	sent      string
	sentNonce string
	acked     string
	lastNack  *Nack
	// nackNonce is the nonce of the response the last NACK rejected.
	nackNonce string
	// unanswered is true from a response until the first request naming
	// its nonce: that one answer (ACK or NACK) is not counted against the
	// stream's request rate, so pushes as fast as changes come never cut a
	// proxy off, while requests beyond one per response still are.
	unanswered bool
}

func (st *streamState) typeState(typeURL string) *typeState {
	t := st.types[typeURL]
	if t == nil {
		t = &typeState{}
		st.types[typeURL] = t
	}
	return t
}

// status classifies a type against the group's current version.
func (t *typeState) status(current string) string {
	switch {
	case t.nackNonce != "" && t.nackNonce == t.sentNonce:
		return StatusNacked
	case t.sent != "" && t.acked == t.sent && t.sent == current:
		return StatusSynced
	default:
		return StatusStale
	}
}

// Proxies returns the state of every identified proxy stream, sorted by node
// ID (then by connection time).
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()

	out := make([]ProxyStatus, 0, len(s.streams))
	for key, st := range s.streams {
		if st.groupKey == "" {
			continue
		}
		var current map[string]string
		if g := s.groups[st.groupKey]; g != nil && g.snapshot != nil {
			current = g.snapshot.versions
		}
		p := ProxyStatus{
			ID:        st.nodeID,
			Group:     st.groupKey,
			Address:   st.address,
			Connected: st.opened,
			Delta:     key.delta,
			Types:     make(map[string]TypeStatus, len(st.types)),
		}
		for typeURL, t := range st.types {
			ts := TypeStatus{
				Sent:    t.sent,
				Acked:   t.acked,
				Current: current[typeURL],
				Status:  t.status(current[typeURL]),
			}
			if t.lastNack != nil {
				nack := *t.lastNack
				ts.LastNack = &nack
			}
			p.Types[typeKey(typeURL)] = ts
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Connected.Before(out[j].Connected)
	})
	return out
}

// SyncedProxies counts, by "namespace/name" of the Service they front, the
// connected proxy streams that have acknowledged their group's current
// version of every type they requested: the sidecars that run the
// configuration in force. The counts are kept per group as streams ACK
// and snapshots change (resyncLocked), so this costs one pass over the
// groups: the leader asks every second, and with 10,000 streams a pass
// over the streams held mu, which every stream's requests wait for, for
// milliseconds each time.
func (s *Server) SyncedProxies() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, g := range s.groups {
		if g.synced > 0 {
			out[g.group.Namespace+"/"+g.group.Service] += g.synced
		}
	}
	return out
}

// resyncLocked works out again whether st runs its group's current version
// of every type it requested, and keeps its group's count of such streams.
// Call it whenever the stream's type states or its group's snapshot
// change. Callers hold mu.
func (s *Server) resyncLocked(st *streamState) {
	g := st.group
	if g == nil {
		return
	}
	synced := g.snapshot != nil && len(st.types) > 0
	if synced {
		for typeURL, t := range st.types {
			if t.status(g.snapshot.versions[typeURL]) != StatusSynced {
				synced = false
				break
			}
		}
	}
	if synced != st.synced {
		st.synced = synced
		if synced {
			g.synced++
		} else {
			g.synced--
		}
	}
}
