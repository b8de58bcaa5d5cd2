package nodemeta

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
)

func metadataNode(t *testing.T, id string, metadata map[string]any) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(metadata)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Metadata: md}
}

func TestGroupFromNode(t *testing.T) {
	valid := func(edit func(map[string]any)) map[string]any {
		md := map[string]any{
			KeyNamespace: "shop",
			KeyService:   "entrance",
			KeyPorts:     "15002:9090, 15001:8080",
		}
		edit(md)
		return md
	}
	twoPorts := []PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}
	tests := []struct {
		name     string
		noID     bool           // the node's id is empty, not entrance-7d9f
		metadata map[string]any // nil: a node without metadata
		nilNode  bool
		want     NodeGroup
		wantErr  []string // substrings of the error; nil means success
	}{
		{
			name:     "all keys",
			metadata: valid(func(map[string]any) {}),
			want:     NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "0.0.0.0", Ports: twoPorts},
		},
		{
			name:     "listen address is canonicalised",
			metadata: valid(func(md map[string]any) { md[KeyListenAddress] = "::0" }),
			want:     NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "::", Ports: twoPorts},
		},
		{
			name:     "empty listen address takes the default",
			metadata: valid(func(md map[string]any) { md[KeyListenAddress] = "" }),
			want:     NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "0.0.0.0", Ports: twoPorts},
		},
		{name: "nil node", nilNode: true, wantErr: []string{"no node"}},
		{name: "no id", noID: true, metadata: valid(func(map[string]any) {}), wantErr: []string{"node id is empty"}},
		{name: "no metadata", wantErr: []string{`node "entrance-7d9f"`, KeyNamespace, "missing"}},
		{
			name:     "missing service",
			metadata: valid(func(md map[string]any) { delete(md, KeyService) }),
			wantErr:  []string{`"entrance-7d9f"`, KeyService, "missing", "shadowplane bootstrap"},
		},
		{
			name:     "missing ports",
			metadata: valid(func(md map[string]any) { delete(md, KeyPorts) }),
			wantErr:  []string{KeyPorts, "missing"},
		},
		{
			name:     "ports of commas only",
			metadata: valid(func(md map[string]any) { md[KeyPorts] = " , " }),
			wantErr:  []string{KeyPorts, "missing or empty"},
		},
		{
			name:     "empty namespace",
			metadata: valid(func(md map[string]any) { md[KeyNamespace] = "" }),
			wantErr:  []string{KeyNamespace, "missing or empty"},
		},
		{
			name:     "service not a string",
			metadata: valid(func(md map[string]any) { md[KeyService] = 42.0 }),
			wantErr:  []string{KeyService, "must be a string, got a number"},
		},
		{
			name:     "namespace with a slash",
			metadata: valid(func(md map[string]any) { md[KeyNamespace] = "shop/x" }),
			wantErr:  []string{KeyNamespace, "not a Kubernetes namespace name"},
		},
		{
			name:     "namespace with spaces is not trimmed",
			metadata: valid(func(md map[string]any) { md[KeyNamespace] = " shop" }),
			wantErr:  []string{KeyNamespace, `" shop" is not a Kubernetes namespace name`},
		},
		{
			name:     "service in upper case",
			metadata: valid(func(md map[string]any) { md[KeyService] = "Entrance" }),
			wantErr:  []string{KeyService, "not a Kubernetes Service name"},
		},
		{
			name:     "service starting with a digit",
			metadata: valid(func(md map[string]any) { md[KeyService] = "1entrance" }),
			wantErr:  []string{KeyService, "not a Kubernetes Service name"},
		},
		{
			name:     "service of 64 characters",
			metadata: valid(func(md map[string]any) { md[KeyService] = strings.Repeat("a", 64) }),
			wantErr:  []string{KeyService, "at most 63"},
		},
		{
			name:     "bad port pair",
			metadata: valid(func(md map[string]any) { md[KeyPorts] = "15001" }),
			wantErr:  []string{KeyPorts, "LISTEN:APP"},
		},
		{
			name:     "listen port twice",
			metadata: valid(func(md map[string]any) { md[KeyPorts] = "15001:8080,15001:9090" }),
			wantErr:  []string{KeyPorts, `port pair "15001:9090": listen port 15001 given twice`},
		},
		{
			name:     "bad listen address",
			metadata: valid(func(md map[string]any) { md[KeyListenAddress] = "localhost" }),
			wantErr:  []string{KeyListenAddress, "not an IP address"},
		},
		{
			name:     "listen address with a zone",
			metadata: valid(func(md map[string]any) { md[KeyListenAddress] = "fe80::1%eth0" }),
			wantErr:  []string{KeyListenAddress, "not an IP address"},
		},
		{
			// Syntax is read first; among rules, the first key wins, as in
			// Validate.
			name: "bad namespace and duplicate ports",
			metadata: valid(func(md map[string]any) {
				md[KeyNamespace] = "Shop"
				md[KeyPorts] = "15001:8080,15001:8080"
			}),
			wantErr: []string{KeyNamespace, `"Shop"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var node *corev3.Node
			if !tt.nilNode {
				id := "entrance-7d9f"
				if tt.noID {
					id = ""
				}
				node = &corev3.Node{Id: id}
				if tt.metadata != nil {
					node = metadataNode(t, id, tt.metadata)
				}
			}
			got, err := GroupFromNode(node)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				var nerr *Error
				if !errors.As(err, &nerr) {
					t.Errorf("error %v is a %T, want *nodemeta.Error", err, err)
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
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("group (-want +got):\n%s", diff)
			}
		})
	}
}

func validMetadata() Metadata {
	return Metadata{
		NodeID:    "entrance-7d9f",
		Namespace: "shop",
		Service:   "entrance",
		Ports:     []PortPair{{Listen: 15002, App: 9090}, {Listen: 15001, App: 8080}},
	}
}

func TestValidate(t *testing.T) {
	tooMany := make([]PortPair, MaxPortPairs+1)
	for i := range tooMany {
		tooMany[i] = PortPair{Listen: uint32(15000 + i), App: 8080}
	}
	tests := []struct {
		name    string
		edit    func(*Metadata)
		wantErr string // the whole message; "" means valid
	}{
		{name: "valid", edit: func(*Metadata) {}},
		{name: "IPv6 listen address", edit: func(m *Metadata) { m.ListenAddress = "::" }},
		{name: "IPv4-mapped listen address", edit: func(m *Metadata) { m.ListenAddress = "::ffff:127.0.0.1" }},
		{name: "63-character names", edit: func(m *Metadata) {
			m.Namespace, m.Service = strings.Repeat("n", 63), strings.Repeat("s", 63)
		}},
		{name: "namespace starting with a digit", edit: func(m *Metadata) { m.Namespace = "1shop" }},
		{name: "MaxPortPairs pairs", edit: func(m *Metadata) { m.Ports = tooMany[:MaxPortPairs] }},
		{
			name:    "no node id",
			edit:    func(m *Metadata) { m.NodeID = "" },
			wantErr: "the node id is empty: every sidecar needs a unique id, e.g. its pod name",
		},
		{
			name:    "no namespace",
			edit:    func(m *Metadata) { m.Namespace = "" },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/namespace": missing or empty; render the sidecar's bootstrap with ` + "`shadowplane bootstrap`" + `, which sets it`,
		},
		{
			name:    "namespace in upper case",
			edit:    func(m *Metadata) { m.Namespace = "Shop" },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/namespace": "Shop" is not a Kubernetes namespace name (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63)`,
		},
		{
			name:    "service ending in a dash",
			edit:    func(m *Metadata) { m.Service = "entrance-" },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/service": "entrance-" is not a Kubernetes Service name (a lower-case letter, then lower-case letters, digits and '-', ending with a letter or digit, at most 63)`,
		},
		{
			name:    "no ports",
			edit:    func(m *Metadata) { m.Ports = nil },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/ports": missing or empty; render the sidecar's bootstrap with ` + "`shadowplane bootstrap`" + `, which sets it`,
		},
		{
			name:    "too many ports",
			edit:    func(m *Metadata) { m.Ports = tooMany },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/ports": 65 port pairs, at most 64 are allowed`,
		},
		{
			name:    "listen port zero",
			edit:    func(m *Metadata) { m.Ports = []PortPair{{Listen: 0, App: 8080}} },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/ports": port pair "0:8080": listen port "0" is not a port number (1-65535)`,
		},
		{
			name:    "app port too large",
			edit:    func(m *Metadata) { m.Ports = []PortPair{{Listen: 15001, App: 70000}} },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/ports": port pair "15001:70000": app port "70000" is not a port number (1-65535)`,
		},
		{
			name:    "listen address not an IP",
			edit:    func(m *Metadata) { m.ListenAddress = "localhost" },
			wantErr: `node "entrance-7d9f": metadata key "shadowplane.io/listen-address": "localhost" is not an IP address such as 0.0.0.0 or ::`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validMetadata()
			tt.edit(&m)
			err := m.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Validate() = %v\nwant %s", err, tt.wantErr)
			}
		})
	}
}

// TestNodeRoundTrip: what Node encodes, FromNode reads back unchanged.
func TestNodeRoundTrip(t *testing.T) {
	for _, listen := range []string{"", "127.0.0.1", "::"} {
		m := validMetadata()
		m.ListenAddress = listen
		node := m.Node()
		if node.GetCluster() != "entrance.shop" {
			t.Errorf("cluster %q, want entrance.shop", node.GetCluster())
		}
		got, err := FromNode(node)
		if err != nil {
			t.Fatalf("listen %q: FromNode: %v", listen, err)
		}
		want := m
		if listen == "" {
			want.ListenAddress = DefaultListenAddress // written explicitly
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("listen %q: round trip (-want +got):\n%s", listen, diff)
		}
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []PortPair
		wantErr string
	}{
		{in: "15001:8080", want: []PortPair{{Listen: 15001, App: 8080}}},
		{in: " 15002:9090 , 15001 : 8080 ,", want: []PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}},
		{in: "15001:8080,15002:8080", want: []PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 8080}}},
		{in: "", wantErr: "no port pairs: want LISTEN:APP[,LISTEN:APP...], e.g. 15001:8080"},
		{in: "15001", wantErr: `port pair "15001": want LISTEN:APP, e.g. 15001:8080`},
		{in: "http:8080", wantErr: `port pair "http:8080": listen port "http" is not a port number (1-65535)`},
		{in: "15001:-1", wantErr: `port pair "15001:-1": app port "-1" is not a port number (1-65535)`},
		{in: "15001:99999999999", wantErr: `port pair "15001:99999999999": app port "99999999999" is not a port number (1-65535)`},
		{in: "0:8080", wantErr: `port pair "0:8080": listen port "0" is not a port number (1-65535)`},
		{in: "15001:65536", wantErr: `port pair "15001:65536": app port "65536" is not a port number (1-65535)`},
		{in: "15001:8080,15001:9090", wantErr: `port pair "15001:9090": listen port 15001 given twice`},
		{in: manyPairs(MaxPortPairs + 1), wantErr: "65 port pairs, at most 64 are allowed"},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParsePorts(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePorts(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePorts(%q) (-want +got):\n%s", tt.in, diff)
		}
		if again, err := ParsePorts(FormatPorts(got)); err != nil || !cmp.Equal(again, got) {
			t.Errorf("FormatPorts(%v) = %q does not parse back: %v %v", got, FormatPorts(got), again, err)
		}
	}
}

func manyPairs(n int) string {
	pairs := make([]PortPair, n)
	for i := range pairs {
		pairs[i] = PortPair{Listen: uint32(20000 + i), App: 8080}
	}
	return FormatPorts(pairs)
}

func TestNodeGroupKey(t *testing.T) {
	tests := []struct {
		group NodeGroup
		want  string
	}{
		{NodeGroup{Namespace: "shop", Service: "entrance", Ports: []PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}},
			"shop/entrance@0.0.0.0|15001:8080,15002:9090"},
		{NodeGroup{Namespace: "shop", Service: "entrance", ListenAddress: "::", Ports: []PortPair{{Listen: 15001, App: 8080}}},
			"shop/entrance@::|15001:8080"},
		{NodeGroup{Namespace: "shop", Service: "entrance"}, "shop/entrance@0.0.0.0"},
	}
	for _, tt := range tests {
		if got := tt.group.Key(); got != tt.want {
			t.Errorf("Key() = %q, want %q", got, tt.want)
		}
	}
}
