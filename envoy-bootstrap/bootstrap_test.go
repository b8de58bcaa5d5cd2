package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		{"health port is a listen port", func(o *Options) { o.Health.Port = 15002 }, "health port 15002 is also in the port pair 15002:9090"},
		{"health port out of range", func(o *Options) { o.Health.Port = 70000 }, "not a port number"},
		{"health port without a drain token", func(o *Options) { o.Health = Health{Port: 15021} }, "drain token must be at least 16 characters"},
		{"short drain token", func(o *Options) { o.Health = Health{Port: 15021, DrainToken: "0123456789"} }, "at least 16"},
		{"the example's placeholder token", func(o *Options) { o.Health = Health{Port: 15021, DrainToken: "REPLACE-WITH-RANDOM-0123456789"} }, "placeholder"},
		{"drain token with a space", func(o *Options) { o.Health = Health{Port: 15021, DrainToken: "0123456789abcdef 0"} }, "only letters, digits"},
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
		"health": func(o *Options) {
			o.Health = Health{Port: 15021, DrainDelay: 3 * time.Second, DrainToken: testDrainToken}
		},
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

const testDrainToken = "0123456789abcdef0123456789abcdef"

// TestHealthListener: the kubelet's port serves the admin /ready and a
// drain route, on the listeners' address, and nothing else of the admin
// interface.
func TestHealthListener(t *testing.T) {
	o := validOptions()
	o.Health = Health{Port: 15021, DrainToken: testDrainToken}
	b, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || listeners[0].GetName() != HealthListenerName {
		t.Fatalf("static listeners = %v, want the health listener only", listeners)
	}
	addr := listeners[0].GetAddress().GetSocketAddress()
	if addr.GetAddress() != "127.0.0.1" || addr.GetPortValue() != 15021 {
		t.Errorf("health listener on %s:%d, want the listen address 127.0.0.1:15021", addr.GetAddress(), addr.GetPortValue())
	}
	data, err := Marshal(b, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"path: /ready", "path: /drain", "name: " + DrainTokenHeader, "exact: " + testDrainToken,
		"/drain_listeners?graceful", "fixedDelay: 5s", "name: " + HealthClusterName} {
		if !strings.Contains(text, want) {
			t.Errorf("bootstrap lacks %q", want)
		}
	}
	if strings.Contains(text, "prefix: /") {
		t.Error("the health listener routes a prefix: it must expose exact paths only, never the whole admin interface")
	}
	without, err := Render(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(without.GetStaticResources().GetListeners()); n != 0 {
		t.Errorf("without a health port: %d static listeners", n)
	}
}
