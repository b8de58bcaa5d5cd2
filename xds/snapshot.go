package xds

import (
	"errors"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/contenthash"
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
	for _, t := range translator.ResourceTypes {
		resources := out.Resources(t.URL)
		version := out.Versions[t.URL]
		if version == "" {
			// An empty version would equal a first request's empty
			// version_info, and the cache would never answer it.
			version = contenthash.Messages(resources)
			b.unversioned = append(b.unversioned, t.Name)
		}
		group := cachev3.NewResources(version, asResources(resources))
		if len(group.Items) != len(resources) {
			return nil, fmt.Errorf("%s: %d resources but only %d distinct names", t.Name, len(resources), len(group.Items))
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

// asResources converts messages to the cache's resource slice.
func asResources(in []proto.Message) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}
