package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/shadowplane/shadowplane/nodemeta"
)

// invalidGroupPrefix starts the snapshot key of a node whose metadata names
// no valid node group. No snapshot is ever set under such a key, and the
// stream is closed on its first request.
const invalidGroupPrefix = "invalid/"

// groupHash keys the snapshot cache by node group, so all sidecars of one
// Service share one snapshot.
type groupHash struct{}

// ID returns the node group key, or "invalid/<node id>" for a node whose
// metadata names no valid group (its stream is closed by the callbacks).
func (groupHash) ID(node *corev3.Node) string {
	group, err := nodemeta.GroupFromNode(node)
	if err != nil {
		return invalidGroupPrefix + node.GetId()
	}
	return group.Key()
}
