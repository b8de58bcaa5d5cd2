package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/kubeauth"
	"github.com/shadowplane/shadowplane/internal/logging"
	"google.golang.org/grpc/status"

	"github.com/shadowplane/shadowplane/nodemeta"
)

// openStream starts tracking a stream; it counts as a proxy once its first
// request identifies the node.
func (s *Server) openStream(ctx context.Context, key streamKey) {
	st := &streamState{opened: time.Now(), types: map[string]*typeState{}, ctx: ctx, address: peerAddress(ctx)}
	s.mu.Lock()
	s.streams[key] = st
	s.mu.Unlock()
}

// closeStream forgets a stream and, when it was its group's last, starts
// the group's idle clock.
func (s *Server) closeStream(key streamKey) {
	s.mu.Lock()
	st := s.streams[key]
	delete(s.streams, key)
	identified := st != nil && st.groupKey != ""
	if identified {
		if g := st.group; g != nil {
			delete(g.members, st)
			if st.synced {
				g.synced--
			}
		}
		if g := s.groups[st.groupKey]; g != nil {
			g.streams--
			if g.streams == 0 {
				g.idleSince = time.Now()
			}
		}
		s.metrics.connected.Dec()
	}
	s.mu.Unlock()

	if identified {
		s.log.Info("proxy disconnected", "node", st.nodeID, "group", st.groupKey, "delta", key.delta)
	}
}

// identifyStream reads the node group from a stream's first request and
// makes sure the group has a snapshot before the request is watched. A node
// whose metadata names no valid group gets an InvalidArgument error, which
// closes its stream.
func (s *Server) identifyStream(key streamKey, node *corev3.Node) error {
	s.mu.Lock()
	st := s.streams[key]
	if st == nil {
		// go-control-plane always opens a stream before its requests;
		// track it anyway rather than lose the proxy.
		st = &streamState{opened: time.Now(), types: map[string]*typeState{}, ctx: context.Background()}
		s.streams[key] = st
	}
	if st.groupKey != "" {
		first := st.node
		s.mu.Unlock()
		// go-control-plane adopts the node of any later request, so a
		// stream that passed the checks must not swap in another node.
		// go-control-plane hands later requests that name no node the
		// first request's node: the same pointer needs no comparison.
		if node != nil && node != st.firstNode && !proto.Equal(claimedNode(node), first) {
			return s.refuse(st.address, node.GetId(), errNodeChanged)
		}
		return nil
	}
	ctx, address := st.ctx, st.address
	s.mu.Unlock()

	group, err := nodemeta.GroupFromNode(node)
	if err != nil {
		s.metrics.invalidNodes.Inc()
		s.log.Warn("closing xDS stream: the node names no valid node group",
			"node", logging.Cut(node.GetId(), 256), "address", address, "error", logging.Cut(err.Error(), 1024))
		return status.Errorf(codes.InvalidArgument, "shadowplane: %v", err)
	}
	// The claim is checked before any snapshot is looked up or made, so a
	// refused client learns nothing of the group it named.
	if err := s.verifyClaim(ctx, address, kubeauth.Claim{NodeID: node.GetId(), Namespace: group.Namespace, Service: group.Service}); err != nil {
		return err
	}

	s.mu.Lock()
	if st.groupKey != "" {
		// Requests of one stream arrive one at a time, so this is only a guard.
		s.mu.Unlock()
		return nil
	}
	st.node = proto.Clone(claimedNode(node)).(*corev3.Node)
	st.firstNode = node
	groupKey := group.Key()
	st.nodeID, st.groupKey = node.GetId(), groupKey
	g := s.groups[groupKey]
	if g == nil {
		g = &groupState{group: group, members: map[*streamState]struct{}{}}
		s.groups[groupKey] = g
	}
	g.members[st] = struct{}{}
	st.group = g
	s.resyncLocked(st)
	g.streams++
	g.idleSince = time.Time{}
	needSnapshot := g.snapshot == nil
	s.metrics.connected.Inc()
	s.mu.Unlock()

	s.log.Info("proxy connected", "node", st.nodeID, "group", groupKey, "delta", key.delta, "address", st.address)
	if needSnapshot {
		s.ensureGroupSnapshot(groupKey)
	}
	return nil
}

// recordRequest notes the ACK or NACK a request carries. ackedVersion is the
// SotW request's version_info, or "" for delta, where the acknowledged
// version is the one sent with the nonce. When the request NACKs the last
// response of its type, it returns that response's version and true.
func (s *Server) recordRequest(key streamKey, typeURL, nonce, ackedVersion string, errorDetail *rpcstatus.Status) (rejected string, nacked bool) {
	s.mu.Lock()
	st := s.streams[key]
	if st == nil {
		s.mu.Unlock()
		return "", false
	}
	// Every request marks its type as requested, so status lists it even
	// before the first response.
	t := st.typeState(typeURL)
	if nonce == "" {
		// A first request (or a reconnect): it answers no response, but
		// a newly requested type makes the stream unsynced until ACKed.
		s.resyncLocked(st)
		s.mu.Unlock()
		return "", false
	}
	answersLast := nonce == t.sentNonce
	if errorDetail == nil {
		if answersLast {
			if key.delta {
				ackedVersion = t.sent
			}
			t.acked = ackedVersion
		}
		s.resyncLocked(st)
		nodeID := st.nodeID
		s.mu.Unlock()
		if answersLast && s.observer.Acked != nil {
			s.observer.Acked(nodeID, typeLabel(typeURL), ackedVersion, time.Now())
		}
		return "", false
	}

	// Envoy's messages are short; a client's may be megabytes: keep and
	// log only the start.
	nack := &Nack{Message: logging.Cut(errorDetail.GetMessage(), s.limits.MaxNackDetailBytes), Time: time.Now()}
	if answersLast {
		nack.Version = t.sent
		t.nackNonce = nonce
	}
	t.lastNack = nack
	s.resyncLocked(st)
	nodeID, groupKey := st.nodeID, st.groupKey
	s.mu.Unlock()

	s.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
	s.log.Warn("proxy rejected configuration", "node", nodeID, "group", groupKey,
		"type", typeKey(typeURL), "version", nack.Version, "error", nack.Message)
	return nack.Version, answersLast
}

// recordResponse notes a response about to be sent on a stream.
func (s *Server) recordResponse(key streamKey, typeURL, nonce, version string) {
	s.metrics.responses.WithLabelValues(typeLabel(typeURL)).Inc()
	s.mu.Lock()
	var nodeID string
	if st := s.streams[key]; st != nil {
		t := st.typeState(typeURL)
		t.sent, t.sentNonce, t.unanswered = version, nonce, true
		s.resyncLocked(st)
		nodeID = st.nodeID
	}
	s.mu.Unlock()
	if s.observer.ResponseSent != nil {
		s.observer.ResponseSent(nodeID, typeLabel(typeURL), version, time.Now())
	}
}
