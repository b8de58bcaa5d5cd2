package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

func validOptions() Options {
	return Options{
		Node: nodemeta.Metadata{
			NodeID:        "entrance-7d9f-abcde",
			Namespace:     "default",
			Service:       "entrance",
			Ports:         []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}},
			ListenAddress: "127.0.0.1",
		},
		XDSAddress: "127.0.0.1:18000",
	}
}

func TestRenderRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no node id", func(o *Options) { o.Node.NodeID = "" }, "node id"},
		{"no namespace", func(o *Options) { o.Node.Namespace = "" }, nodemeta.KeyNamespace},
		{"namespace in upper case", func(o *Options) { o.Node.Namespace = "Default" }, "not a Kubernetes namespace name"},
		{"no service", func(o *Options) { o.Node.Service = "" }, nodemeta.KeyService},
		{"no ports", func(o *Options) { o.Node.Ports = nil }, nodemeta.KeyPorts},
		{"xds without port", func(o *Options) { o.XDSAddress = "localhost" }, "HOST:PORT"},
		{"xds bad port", func(o *Options) { o.XDSAddress = "localhost:http" }, "not a port number"},
		{"listen address not ip", func(o *Options) { o.Node.ListenAddress = "localhost" }, "not an IP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.mutate(&o)
			_, err := Render(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRenderCarriesNodeGroupAndMode(t *testing.T) {
	for _, delta := range []bool{false, true} {
		o := validOptions()
		o.Delta = delta
		b, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		md := b.GetNode().GetMetadata().GetFields()
		if got := md[nodemeta.KeyPorts].GetStringValue(); got != "15001:8080,15002:9090" {
			t.Errorf("ports metadata = %q", got)
		}
		if got := md[nodemeta.KeyService].GetStringValue(); got != "entrance" {
			t.Errorf("service metadata = %q", got)
		}
		wantAPI := "GRPC"
		if delta {
			wantAPI = "DELTA_GRPC"
		}
		if got := b.GetDynamicResources().GetAdsConfig().GetApiType().String(); got != wantAPI {
			t.Errorf("delta=%v: api type = %s, want %s", delta, got, wantAPI)
		}
		layers := b.GetLayeredRuntime().GetLayers()
		if len(layers) != 2 || layers[0].GetRtdsLayer().GetName() != translator.RuntimeLayerName || layers[1].GetAdminLayer() == nil {
			t.Errorf("runtime layers = %v, want RTDS %q then admin", layers, translator.RuntimeLayerName)
		}
	}
}

// TestRealEnvoyAcceptsBootstrap has the pinned Envoy validate every variant.
func TestRealEnvoyAcceptsBootstrap(t *testing.T) {
	variants := map[string]func(*Options){
		"sotw-ip":      func(*Options) {},
		"delta-dns":    func(o *Options) { o.Delta = true; o.XDSAddress = "shadowplane.shadowplane-system.svc:18000" },
		"default-bind": func(o *Options) { o.Node.ListenAddress = "" },
		"custom-admin": func(o *Options) { o.AdminPort = 19000 },
	}
	for name, mutate := range variants {
		for _, format := range []string{"yaml", "json"} {
			t.Run(name+"-"+format, func(t *testing.T) {
				o := validOptions()
				mutate(&o)
				b, err := Render(o)
				if err != nil {
					t.Fatal(err)
				}
				data, err := Marshal(b, format)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "bootstrap."+format)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if out, ok := testtools.EnvoyValidate(t, path); !ok {
					t.Fatalf("envoy rejected the bootstrap:\n%s\n%s", out, data)
				}
			})
		}
	}
}

// TestRealEnvoyValidationCanFail proves the validation above is not vacuous.
func TestRealEnvoyValidationCanFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte("admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\nstatic_resources: {clusters: [{name: x, type: NO_SUCH_TYPE}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, ok := testtools.EnvoyValidate(t, path); ok {
		t.Fatalf("envoy accepted a broken config:\n%s", out)
	}
}
