package translator

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/contenthash"
)

// ResourceType is one xDS resource type of an Output.
type ResourceType struct {
	URL  string // type URL, as in xDS requests and responses
	Name string // short name: metric label, status and debug key
	// of returns the output's resources of this type.
	of func(*Output) []proto.Message
}

// ResourceTypes is the one list of the xDS types shadowplane serves: every
// type an Output holds, in the order ADS delivers them (clusters before
// their endpoints and secrets, listeners before routes). Do not modify it.
var ResourceTypes = []ResourceType{
	{URL: resourcev3.ClusterType, Name: "cluster", of: func(o *Output) []proto.Message { return messages(o.Clusters) }},
	{URL: resourcev3.EndpointType, Name: "endpoint", of: func(o *Output) []proto.Message { return messages(o.Endpoints) }},
	{URL: resourcev3.SecretType, Name: "secret", of: func(o *Output) []proto.Message { return messages(o.Secrets) }},
	{URL: resourcev3.ListenerType, Name: "listener", of: func(o *Output) []proto.Message { return messages(o.Listeners) }},
	{URL: resourcev3.RouteType, Name: "route", of: func(o *Output) []proto.Message { return messages(o.Routes) }},
	{URL: resourcev3.RuntimeType, Name: "runtime", of: func(o *Output) []proto.Message { return messages(o.Runtimes) }},
}

// ResourceTypeOf finds a served type by its URL.
func ResourceTypeOf(typeURL string) (ResourceType, bool) {
	for _, t := range ResourceTypes {
		if t.URL == typeURL {
			return t, true
		}
	}
	return ResourceType{}, false
}

// Resources returns the output's resources of one type, in order; nil for
// a type the translator does not produce.
func (o *Output) Resources(typeURL string) []proto.Message {
	if t, ok := ResourceTypeOf(typeURL); ok {
		return t.of(o)
	}
	return nil
}

func messages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// versions hashes each type's resources on their own, so a change re-sends
// only the types whose content changed: a percent change only RTDS, an
// endpoint change only EDS, a match change only RDS.
func versions(out *Output) map[string]string {
	v := make(map[string]string, len(ResourceTypes))
	for _, t := range ResourceTypes {
		v[t.URL] = contenthash.Messages(t.of(out))
	}
	return v
}
