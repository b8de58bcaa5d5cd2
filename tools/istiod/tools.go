//go:build tools

// Package tools pins istiod (pilot-discovery) so `go mod tidy` keeps its
// dependencies; the Makefile builds it with
// `go build istio.io/istio/pilot/cmd/pilot-discovery` for `make bench-peers`,
// which measures it beside shadowplane. Istio's CRDs come from the same module.
package tools

import _ "istio.io/istio/pilot/cmd/pilot-discovery"
