package xds

import "time"

// Observer is told of each step of a change on its way to the proxies, so a
// benchmark can break propagation time into parts. Each function is called
// synchronously on the hot path and must return at once; a nil Observer or
// nil field costs one check. Types are short names (listener, route,
// cluster, endpoint, runtime).
type Observer struct {
	// SnapshotSet: a node group's new snapshot, translated by `at`, is being
	// set; changed maps each type it changes to its new version.
	// observedAt is when the watcher saw the first Kubernetes change the
	// snapshot reflects (zero when a proxy merely joined). It is called
	// before the snapshot is handed to the cache, so it precedes the
	// ResponseSent calls the snapshot causes.
	SnapshotSet func(group string, changed map[string]string, observedAt, at time.Time)
	// ResponseSent: a response of one type is about to be sent on a
	// proxy's stream.
	ResponseSent func(node, typ, version string, at time.Time)
	// Acked: a proxy acknowledged the last response of one type.
	Acked func(node, typ, version string, at time.Time)
}
