// Package xds serves translated configuration to Envoy sidecars over gRPC
// ADS, state-of-the-world and delta, using go-control-plane.
//
// All sidecars of one node group (the Service they front and their port
// pairs) share one snapshot, keyed by nodemeta.NodeGroup.Key. Each xDS type
// carries its own content version, so a change re-sends only the types it
// touches: a percent change is an RTDS update alone. Callbacks record, per
// proxy stream, what was sent, what Envoy acknowledged and what it rejected;
// the HTTP handler exposes that state together with health, readiness and
// Prometheus metrics.
package xds
