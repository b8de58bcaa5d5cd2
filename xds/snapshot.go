package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/translator"
)

// builtSnapshot is a snapshot ready for the cache, with what status and
// debug output need to know about it.
type builtSnapshot struct {
	snapshot *cachev3.Snapshot
	// versions and names by type URL; names are sorted.
	versions map[string]string
	names    map[string][]string
	// unversioned lists the types the translator gave no version for.
	unversioned []string
}

// buildSnapshot turns translator output into a snapshot with one version
// per xDS type, so a change re-sends only the types it touches. It refuses
// output that would leave Envoy warming: resources that reference missing
// routes or endpoints, or two resources of one type with the same name.
func buildSnapshot(out *translator.Output) (*builtSnapshot, error) {
	if out == nil {
		return nil, errors.New("translator returned no output")
	}
	b := &builtSnapshot{
		snapshot: &cachev3.Snapshot{},
		versions: map[string]string{},
		names:    map[string][]string{},
	}
	for _, t := range servedTypes {
		resources := outputResources(out, t.URL)
		version := out.Versions[t.URL]
		if version == "" {
			// An empty version would equal a first request's empty
			// version_info, and the cache would never answer it.
			v, err := contentVersion(resources)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.Short, err)
			}
			version = v
			b.unversioned = append(b.unversioned, t.Short)
		}
		group := cachev3.NewResources(version, resources)
		if len(group.Items) != len(resources) {
			return nil, fmt.Errorf("%s: %d resources but only %d distinct names", t.Short, len(resources), len(group.Items))
		}
		b.snapshot.Resources[cachev3.GetResponseType(t.URL)] = group
		b.versions[t.URL] = version
		names := make([]string, 0, len(group.Items))
		for name := range group.Items {
			names = append(names, name)
		}
		sort.Strings(names)
		b.names[t.URL] = names
	}
	if err := b.snapshot.Consistent(); err != nil {
		return nil, fmt.Errorf("inconsistent snapshot: %w", err)
	}
	return b, nil
}

// outputResources returns the translator's resources of one type.
func outputResources(out *translator.Output, typeURL string) []types.Resource {
	switch typeURL {
	case resourcev3.ClusterType:
		return asResources(out.Clusters)
	case resourcev3.EndpointType:
		return asResources(out.Endpoints)
	case resourcev3.ListenerType:
		return asResources(out.Listeners)
	case resourcev3.RouteType:
		return asResources(out.Routes)
	case resourcev3.RuntimeType:
		return asResources(out.Runtimes)
	}
	return nil
}

// asResources converts a typed slice to the cache's resource slice.
func asResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}

// contentVersion hashes resources' deterministic encoding: the fallback
// version of a type the translator left unversioned.
func contentVersion(resources []types.Resource) (string, error) {
	h := sha256.New()
	marshal := proto.MarshalOptions{Deterministic: true}
	for _, r := range resources {
		data, err := marshal.Marshal(r)
		if err != nil {
			return "", fmt.Errorf("hashing %s: %w", cachev3.GetResourceName(r), err)
		}
		// Length-prefix each resource so boundaries are part of the hash.
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
