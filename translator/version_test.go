package translator

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/contenthash"
)

// TestResourceTypesReachEveryResource: the one type list reaches each of
// Output's resources, and versions are its content hashes.
func TestResourceTypesReachEveryResource(t *testing.T) {
	out := translateValid(t, tlsWorld(), entranceGroup)
	var want []proto.Message
	want = append(want, messages(out.Clusters)...)
	want = append(want, messages(out.Endpoints)...)
	want = append(want, messages(out.Secrets)...)
	want = append(want, messages(out.Listeners)...)
	want = append(want, messages(out.Routes)...)
	want = append(want, messages(out.Runtimes)...)

	var got []proto.Message
	for _, typ := range ResourceTypes {
		resources := out.Resources(typ.URL)
		if len(resources) == 0 {
			t.Errorf("%s: no resources", typ.Name)
		}
		if v := out.Versions[typ.URL]; v != contenthash.Messages(resources) {
			t.Errorf("%s: version %q is not the content hash of its resources", typ.Name, v)
		}
		if found, ok := ResourceTypeOf(typ.URL); !ok || found.Name != typ.Name {
			t.Errorf("ResourceTypeOf(%s) = %+v, %v", typ.URL, found, ok)
		}
		got = append(got, resources...)
	}
	if len(got) != len(want) {
		t.Fatalf("the types reach %d resources, Output holds %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("resource %d: the types reach %v, want %v", i, got[i], want[i])
		}
	}
	if len(out.Versions) != len(ResourceTypes) {
		t.Errorf("%d versions for %d types", len(out.Versions), len(ResourceTypes))
	}
	if r := out.Resources("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"); r != nil {
		t.Errorf("Resources of an unserved type = %v, want nil", r)
	}
}
