package xds

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/shadowplane/shadowplane/translator"
)

func TestBuildSnapshotKeepsAVersionPerType(t *testing.T) {
	out := fakeTranslate(testWorld(250000, "10.1.0.1"), testGroup)
	built, err := buildSnapshot(out)
	if err != nil {
		t.Fatalf("buildSnapshot: %v", err)
	}
	for _, typ := range translator.ResourceTypes {
		want := out.Versions[typ.URL]
		if got := built.snapshot.Resources[cachev3.GetResponseType(typ.URL)].Version; got != want {
			t.Errorf("%s: version %q, want the translator's %q", typ.Name, got, want)
		}
		if got := built.versions[typ.URL]; got != want {
			t.Errorf("%s: recorded version %q, want %q", typ.Name, got, want)
		}
	}
	if got := built.names[resourcev3.ClusterType]; strings.Join(got, ",") != "local_8080,"+testShadowName {
		t.Errorf("cluster names %v, want sorted [local_8080 %s]", got, testShadowName)
	}
	if len(built.unversioned) != 0 {
		t.Errorf("unversioned = %v, want none", built.unversioned)
	}
}

func TestBuildSnapshotRejects(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*translator.Output) *translator.Output
		wantErr string
	}{
		{name: "nil output", edit: func(*translator.Output) *translator.Output { return nil }, wantErr: "no output"},
		{
			name: "cluster without its endpoints",
			edit: func(o *translator.Output) *translator.Output {
				o.Endpoints = nil
				return o
			},
			wantErr: "inconsistent snapshot",
		},
		{
			name: "listener without its route",
			edit: func(o *translator.Output) *translator.Output {
				o.Routes = nil
				return o
			},
			wantErr: "inconsistent snapshot",
		},
		{
			name: "duplicate cluster names",
			edit: func(o *translator.Output) *translator.Output {
				o.Clusters = append(o.Clusters, &clusterv3.Cluster{Name: o.Clusters[0].GetName()})
				return o
			},
			wantErr: "3 resources but only 2 distinct names",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.edit(fakeTranslate(testWorld(250000, "10.1.0.1"), testGroup))
			_, err := buildSnapshot(out)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("buildSnapshot error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuildSnapshotVersionsUnversionedTypesByContent(t *testing.T) {
	out := fakeTranslate(testWorld(250000, "10.1.0.1"), testGroup)
	delete(out.Versions, resourcev3.RuntimeType)
	out.Endpoints = nil
	out.Clusters = out.Clusters[1:] // keep only the static local cluster
	delete(out.Versions, resourcev3.EndpointType)

	built, err := buildSnapshot(out)
	if err != nil {
		t.Fatalf("buildSnapshot: %v", err)
	}
	if strings.Join(built.unversioned, ",") != "endpoint,runtime" {
		t.Errorf("unversioned = %v, want [endpoint runtime]", built.unversioned)
	}
	// An empty type still needs a non-empty version, or the cache would
	// never answer a first request (whose version_info is empty).
	if v := built.versions[resourcev3.EndpointType]; v == "" {
		t.Error("empty endpoint type got an empty version")
	}
	again, err := buildSnapshot(out)
	if err != nil {
		t.Fatalf("buildSnapshot again: %v", err)
	}
	if again.versions[resourcev3.RuntimeType] != built.versions[resourcev3.RuntimeType] {
		t.Error("content version is not deterministic")
	}
	changed := fakeTranslate(testWorld(15000, "10.1.0.1"), testGroup)
	changed.Endpoints, changed.Clusters = nil, changed.Clusters[1:]
	delete(changed.Versions, resourcev3.RuntimeType)
	other, err := buildSnapshot(changed)
	if err != nil {
		t.Fatalf("buildSnapshot changed: %v", err)
	}
	if other.versions[resourcev3.RuntimeType] == built.versions[resourcev3.RuntimeType] {
		t.Error("different runtime content got the same content version")
	}
}
