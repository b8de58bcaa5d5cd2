// Package watcher turns Kubernetes objects into immutable translator.World
// values. It watches Services, EndpointSlices and labelled policy ConfigMaps
// with shared informers, parses and validates the policies, keeps the last
// valid version of each policy when an edit is invalid, reports every verdict
// as a Kubernetes Event on the ConfigMap, and hands a brand-new World on: at
// once for a lone change, and once per burst (after a short quiet time, at
// most a bounded delay) for changes that come in quick succession.
package watcher
