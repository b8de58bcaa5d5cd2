package xds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/shadowplane/shadowplane/translator"
)

func TestNodeGroupFromNode(t *testing.T) {
	valid := func(edit func(map[string]any)) *corev3.Node {
		md := map[string]any{
			translator.MetadataNamespace: "shop",
			translator.MetadataService:   "entrance",
			translator.MetadataPorts:     "15002:9090, 15001:8080",
		}
		edit(md)
		return metadataNode("entrance-7d9f", md)
	}
	tests := []struct {
		name    string
		node    *corev3.Node
		want    translator.NodeGroup
		wantErr []string // substrings of the error; nil means success
	}{
		{
			name: "all keys",
			node: valid(func(map[string]any) {}),
			want: translator.NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "0.0.0.0",
				Ports: []translator.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}},
		},
		{
			name: "listen address is canonicalised",
			node: valid(func(md map[string]any) { md[translator.MetadataListenAddress] = "::0" }),
			want: translator.NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "::",
				Ports: []translator.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}},
		},
		{
			name: "blank listen address takes the default",
			node: valid(func(md map[string]any) { md[translator.MetadataListenAddress] = " " }),
			want: translator.NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "0.0.0.0",
				Ports: []translator.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}},
		},
		{name: "nil node", node: nil, wantErr: []string{"no node"}},
		{name: "no metadata", node: &corev3.Node{Id: "bare"}, wantErr: []string{`"bare"`, translator.MetadataNamespace, "missing"}},
		{
			name:    "missing service",
			node:    valid(func(md map[string]any) { delete(md, translator.MetadataService) }),
			wantErr: []string{`"entrance-7d9f"`, translator.MetadataService, "missing", "shadowplane bootstrap"},
		},
		{
			name:    "missing ports",
			node:    valid(func(md map[string]any) { delete(md, translator.MetadataPorts) }),
			wantErr: []string{translator.MetadataPorts, "missing"},
		},
		{
			name:    "empty namespace",
			node:    valid(func(md map[string]any) { md[translator.MetadataNamespace] = "" }),
			wantErr: []string{translator.MetadataNamespace, "missing or empty"},
		},
		{
			name:    "service not a string",
			node:    valid(func(md map[string]any) { md[translator.MetadataService] = 42.0 }),
			wantErr: []string{translator.MetadataService, "must be a string, got a number"},
		},
		{
			name:    "namespace with a slash",
			node:    valid(func(md map[string]any) { md[translator.MetadataNamespace] = "shop/x" }),
			wantErr: []string{translator.MetadataNamespace, "not a Kubernetes namespace name"},
		},
		{
			name:    "service in upper case",
			node:    valid(func(md map[string]any) { md[translator.MetadataService] = "Entrance" }),
			wantErr: []string{translator.MetadataService, "not a Kubernetes Service name"},
		},
		{
			name:    "bad port pair",
			node:    valid(func(md map[string]any) { md[translator.MetadataPorts] = "15001" }),
			wantErr: []string{translator.MetadataPorts, "LISTEN:APP"},
		},
		{
			name:    "bad listen address",
			node:    valid(func(md map[string]any) { md[translator.MetadataListenAddress] = "localhost" }),
			wantErr: []string{translator.MetadataListenAddress, "not an IP address"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NodeGroupFromNode(tt.node)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.Key() != tt.want.Key() {
				t.Errorf("got group %s, want %s", got.Key(), tt.want.Key())
			}
		})
	}
}

func TestGroupHash(t *testing.T) {
	if got := (groupHash{}).ID(sidecarNode("a")); got != testGroup.Key() {
		t.Errorf("ID(valid node) = %q, want %q", got, testGroup.Key())
	}
	if got := (groupHash{}).ID(&corev3.Node{Id: "lost"}); got != "invalid/lost" {
		t.Errorf("ID(node without metadata) = %q, want invalid/lost", got)
	}
}
