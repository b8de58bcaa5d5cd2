// Package translator turns a World (the Services, their ready endpoints and
// the policies in force) and one node group into Envoy xDS resources. It owns
// its input model (World, Service, ServicePort, Endpoint) but not the policy
// schema: policies arrive already parsed and validated by package policy.
// It is pure and deterministic: it imports nothing from Kubernetes or gRPC
// servers, parses no YAML, never mutates its input, and the same input
// always yields byte-identical resources and versions.
package translator
