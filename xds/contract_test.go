package xds

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// TestBootstrapAndServerAgreeOnNodes is the node-metadata contract end to
// end: a bootstrap that `shadowplane bootstrap` renders is one whose node
// this server accepts, a sidecar it refuses to render is one this server
// would close the stream of, and both say the same thing.
func TestBootstrapAndServerAgreeOnNodes(t *testing.T) {
	pairs := func(n int) []nodemeta.PortPair {
		out := make([]nodemeta.PortPair, n)
		for i := range out {
			out[i] = nodemeta.PortPair{Listen: uint32(20000 + i), App: uint32(30000 + i)}
		}
		return out
	}
	tests := []struct {
		name string
		edit func(*nodemeta.Metadata)
	}{
		{"valid", func(*nodemeta.Metadata) {}},
		{"IPv6 listen address", func(m *nodemeta.Metadata) { m.ListenAddress = "::" }},
		{"non-canonical IPv6 listen address", func(m *nodemeta.Metadata) { m.ListenAddress = "::0" }},
		{"63-character names", func(m *nodemeta.Metadata) {
			m.Namespace, m.Service = strings.Repeat("n", 63), strings.Repeat("s", 63)
		}},
		{"namespace starting with a digit", func(m *nodemeta.Metadata) { m.Namespace = "1shop" }},
		{"64 port pairs", func(m *nodemeta.Metadata) { m.Ports = pairs(64) }},
		{"unsorted port pairs", func(m *nodemeta.Metadata) {
			m.Ports = []nodemeta.PortPair{{Listen: 15002, App: 9090}, {Listen: 15001, App: 8080}}
		}},
		{"no node id", func(m *nodemeta.Metadata) { m.NodeID = "" }},
		{"namespace in upper case", func(m *nodemeta.Metadata) { m.Namespace = "Shop" }},
		{"no namespace", func(m *nodemeta.Metadata) { m.Namespace = "" }},
		{"namespace with a space", func(m *nodemeta.Metadata) { m.Namespace = "shop " }},
		{"namespace of 64 characters", func(m *nodemeta.Metadata) { m.Namespace = strings.Repeat("n", 64) }},
		{"service starting with a digit", func(m *nodemeta.Metadata) { m.Service = "1entrance" }},
		{"service ending in a dash", func(m *nodemeta.Metadata) { m.Service = "entrance-" }},
		{"no service", func(m *nodemeta.Metadata) { m.Service = "" }},
		{"no port pairs", func(m *nodemeta.Metadata) { m.Ports = nil }},
		{"65 port pairs", func(m *nodemeta.Metadata) { m.Ports = pairs(65) }},
		{"listen port twice", func(m *nodemeta.Metadata) {
			m.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15001, App: 9090}}
		}},
		{"app port zero", func(m *nodemeta.Metadata) { m.Ports = []nodemeta.PortPair{{Listen: 15001}} }},
		{"listen port above 65535", func(m *nodemeta.Metadata) { m.Ports = []nodemeta.PortPair{{Listen: 70000, App: 8080}} }},
		{"listen address a host name", func(m *nodemeta.Metadata) { m.ListenAddress = "localhost" }},
		{"listen address with a zone", func(m *nodemeta.Metadata) { m.ListenAddress = "fe80::1%eth0" }},
		{"bad namespace and duplicate ports", func(m *nodemeta.Metadata) {
			m.Namespace = "Shop"
			m.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15001, App: 8080}}
		}},
	}

	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	accepted, rejected := 0, 0
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := bootstrap.Options{
				Node: nodemeta.Metadata{
					NodeID:    fmt.Sprintf("sidecar-%d", i),
					Namespace: "shop",
					Service:   "entrance",
					Ports:     []nodemeta.PortPair{{Listen: 15001, App: 8080}},
				},
				XDSAddress: "127.0.0.1:18000",
			}
			tt.edit(&o.Node)

			var node *corev3.Node
			b, renderErr := bootstrap.Render(o)
			if renderErr == nil {
				node = renderedNode(t, b)
				// Render embeds exactly nodemeta's encoding, so the refused
				// cases below may use that encoding in its place.
				if !proto.Equal(node, o.Node.Node()) {
					t.Fatalf("rendered node %v differs from nodemeta's encoding %v", node, o.Node.Node())
				}
			} else {
				var nerr *nodemeta.Error
				if !errors.As(renderErr, &nerr) {
					t.Fatalf("Render refused with %v, not a node metadata error", renderErr)
				}
				node = o.Node.Node()
			}

			serverErr := serverVerdict(t, h, node)
			switch {
			case renderErr == nil && serverErr == nil:
				accepted++
			case renderErr != nil && serverErr != nil:
				rejected++
				if status.Code(serverErr) != codes.InvalidArgument {
					t.Errorf("server closed the stream with %v, want InvalidArgument", serverErr)
				}
				if got, want := status.Convert(serverErr).Message(), "shadowplane: "+renderErr.Error(); got != want {
					t.Errorf("messages differ:\nserver:    %s\nbootstrap: %s", got, want)
				}
			case renderErr == nil:
				t.Errorf("bootstrap rendered a sidecar the server refuses: %v", serverErr)
			default:
				t.Errorf("bootstrap refused (%v) a sidecar the server accepts", renderErr)
			}
		})
	}
	// Both verdicts must have been exercised for the agreement to mean
	// anything.
	if accepted < 5 || rejected < 10 {
		t.Errorf("%d cases accepted, %d refused; the table lost its balance", accepted, rejected)
	}
}

// renderedNode reads the node back from the bootstrap as Envoy would: from
// its YAML.
func renderedNode(t *testing.T, b *bootstrapv3.Bootstrap) *corev3.Node {
	t.Helper()
	data, err := bootstrap.Marshal(b, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var back bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &back); err != nil {
		t.Fatalf("the rendered bootstrap does not read back: %v", err)
	}
	return back.GetNode()
}

// serverVerdict opens an ADS stream as the node and returns nil when the
// server answers its first request, or the error it closed the stream with.
func serverVerdict(t *testing.T, h *harness, node *corev3.Node) error {
	t.Helper()
	c := adsclient.NewSotW(t, h.conn, node, nil)
	c.Send("cluster", "", "", nil)
	if _, err := c.Await(); err != nil {
		return err
	}
	c.Close()
	return nil
}
