package xds

import "time"

// Observer is told of each step of a change on its way to the proxies, so a
// benchmark can break propagation time into parts. Each function is called
// synchronously on the hot path and must return at once; a nil Observer or
// nil field costs one check. Types are short names (listener, route,
// cluster, endpoint, runtime).
type Observer struct {
	// SnapshotSet: a node group's snapshot was set at `at`, changing the
	// given types. observedAt is when the watcher saw the first Kubernetes
	// change the snapshot reflects (zero when a proxy merely joined).
	SnapshotSet func(group string, changed []string, observedAt, at time.Time)
	// ResponseSent: a response of one type is about to be sent on a
	// proxy's stream.
	ResponseSent func(node, typ, version string, at time.Time)
	// Acked: a proxy acknowledged the last response of one type.
	Acked func(node, typ, version string, at time.Time)
}
