package xds

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// servedType is one of the xDS resource types shadowplane serves.
type servedType struct {
	URL   string // type URL, as in requests and responses
	Short string // metric label and JSON key
}

// servedTypes lists every type a snapshot holds, in the order ADS delivers
// them (clusters before endpoints, listeners before routes).
var servedTypes = []servedType{
	{URL: resourcev3.ClusterType, Short: "cluster"},
	{URL: resourcev3.EndpointType, Short: "endpoint"},
	{URL: resourcev3.ListenerType, Short: "listener"},
	{URL: resourcev3.RouteType, Short: "route"},
	{URL: resourcev3.RuntimeType, Short: "runtime"},
}

// otherTypeLabel is the metric label of any type URL shadowplane does not
// serve; client-supplied strings never become label values, so a client
// cannot blow up the metric's cardinality.
const otherTypeLabel = "other"

// typeLabel returns the short metric label of a type URL.
func typeLabel(typeURL string) string {
	for _, t := range servedTypes {
		if t.URL == typeURL {
			return t.Short
		}
	}
	return otherTypeLabel
}

// typeKey returns the JSON key of a type URL in proxy status: the short name
// for served types and the type URL itself for anything else, so two unknown
// types never collide.
func typeKey(typeURL string) string {
	if l := typeLabel(typeURL); l != otherTypeLabel {
		return l
	}
	return typeURL
}
