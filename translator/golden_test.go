package translator

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

type goldenScenario struct {
	name  string
	world func() *World
	group NodeGroup
}

func goldenScenarios() []goldenScenario {
	httpURL := func(raw, host string, port uint32) *policy.URLTarget {
		return &policy.URLTarget{Raw: raw, Scheme: "http", Host: host, Port: port}
	}
	return []goldenScenario{
		{name: "no-policy", group: entranceGroup, world: func() *World { return nil }},
		{name: "one-policy-service-100", group: entranceGroup, world: baseWorld},
		{name: "percent-25-and-http-url", group: entranceGroup, world: func() *World {
			p := toStaging()
			p.Mirrors[0].PartsPerMillion = 250000
			p.Mirrors = append(p.Mirrors, policy.Mirror{Name: "10.16.0.147",
				URL: httpURL("http://10.16.0.147/entrance/", "10.16.0.147", 80), PartsPerMillion: 15000})
			return newWorld([]*Service{entranceService(), stagingService()}, p)
		}},
		{name: "match-path-methods-headers", group: entranceGroup, world: func() *World {
			p := toStaging()
			p.Match = policy.Match{
				PathPrefix: "/entrance/",
				Methods:    []string{"GET", "POST"},
				Headers: []policy.HeaderMatch{
					{Name: "x-debug", Present: true},
					{Name: "x-tenant", Exact: "beta"},
					{Name: "x-user", Regex: "u-[0-9]+"},
					{Name: "x-zone", Prefix: "eu-"},
				},
			}
			return newWorld([]*Service{entranceService(), stagingService()}, p)
		}},
		{name: "two-overlapping-policies", group: entranceGroup, world: func() *World {
			all := toStaging()
			all.Name = "all-to-staging"
			all.Mirrors[0].PartsPerMillion = 10000
			api := toStaging()
			api.Name = "api-to-qa"
			api.Match = policy.Match{PathPrefix: "/api/", Methods: []string{"POST"}}
			api.Mirrors = []policy.Mirror{{Name: "qa.entrance.http", Service: "entrance", Namespace: "qa",
				Port: policy.PortRef{Name: "http"}, PartsPerMillion: 500000}}
			qa := &Service{Namespace: "qa", Name: "entrance",
				Ports:     []ServicePort{{Name: "http", Port: 80, TargetPortName: "web"}},
				Endpoints: []Endpoint{{Address: "10.2.0.1", Ports: map[string]int32{"http": 8000}}}}
			return newWorld([]*Service{entranceService(), stagingService(), qa}, all, api)
		}},
		{name: "copy-headers-no-mark-host-suffix", group: entranceGroup, world: func() *World {
			p := toStaging()
			p.CopyHeaders = policy.CopyHeaders{
				Remove: []string{"authorization", "cookie"},
				Set:    []policy.HeaderValue{{Name: "x-env", Value: "staging"}, {Name: "x-sample", Value: "25%"}},
			}
			p.MarkCopies = false
			p.HostSuffix = true
			return newWorld([]*Service{entranceService(), stagingService()}, p)
		}},
		{name: "https-url", group: entranceGroup, world: func() *World {
			p := toStaging()
			p.Mirrors = []policy.Mirror{
				{Name: "shadow.example.com", URL: &policy.URLTarget{Raw: "https://shadow.example.com", Scheme: "https",
					Host: "shadow.example.com", Port: 443}, PartsPerMillion: 1},
				{Name: "shadow.example.com_8443", URL: &policy.URLTarget{Raw: "https://shadow.example.com:8443/", Scheme: "https",
					Host: "shadow.example.com", Port: 8443}, PartsPerMillion: 123456},
			}
			return newWorld([]*Service{entranceService()}, p)
		}},
		{name: "missing-target-service", group: entranceGroup, world: func() *World {
			return newWorld([]*Service{entranceService()}, toStaging())
		}},
		{name: "multi-port-sidecar", world: func() *World {
			svc := entranceService()
			svc.Ports = append(svc.Ports, ServicePort{Name: "grpc", Port: 9090, TargetPort: 15002, Protocol: "TCP"})
			web := toStaging()
			grpc := toStaging()
			grpc.Name = "grpc-to-staging"
			grpc.Port = policy.PortRef{Name: "grpc"}
			grpc.Match = policy.Match{PathPrefix: "/shop.Cart/"}
			grpc.Mirrors[0].Port = policy.PortRef{Name: "grpc"}
			grpc.Mirrors[0].Name = "staging.entrance.grpc"
			staging := stagingService()
			staging.Ports = append(staging.Ports, ServicePort{Name: "grpc", Port: 9090, TargetPort: 9090, Protocol: "TCP"})
			for i := range staging.Endpoints {
				staging.Endpoints[i].Ports["grpc"] = 9090
			}
			return newWorld([]*Service{svc, staging}, web, grpc)
		}, group: NodeGroup{Namespace: "default", Service: "entrance", ListenAddress: "0.0.0.0",
			Ports: []PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}}},
		{name: "guard-overrides", group: entranceGroup, world: func() *World {
			a := toStaging()
			a.Guard = policy.Guard{ConnectTimeout: time.Second, MaxConnections: 8, MaxPendingRequests: 4, MaxRequests: 16, MaxBodyBytes: 1 << 20}
			b := toStaging()
			b.Name = "tighter"
			b.Match.PathPrefix = "/checkout/"
			b.Guard = policy.Guard{MaxConnections: 2}
			return newWorld([]*Service{entranceService(), stagingService()}, a, b)
		}},
	}
}

// TestGolden pins the full output of each scenario; rewrite the files with
// `go test ./translator -run Golden -update` and review the diff.
func TestGolden(t *testing.T) {
	for _, sc := range goldenScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got := goldenJSON(t, translateValid(t, sc.world(), sc.group))
			path := filepath.Join("testdata", "golden", sc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run `go test ./translator -run Golden -update` to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestGoldenEnvoyValidate has the real Envoy accept every golden scenario,
// and reject broken ones, so the validation is known to bite.
func TestGoldenEnvoyValidate(t *testing.T) {
	testtools.Require(t, "envoy")
	for _, sc := range goldenScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			bs, err := staticBootstrap(Translate(sc.world(), sc.group))
			if err != nil {
				t.Fatal(err)
			}
			if err := envoyValidate(t, bs); err != nil {
				t.Error(err)
			}
		})
	}

	broken := []struct {
		name  string
		world func() *World
		edit  func(out *Output)
	}{
		{name: "mirror to a missing cluster", world: baseWorld, edit: func(out *Output) {
			var kept []*clusterv3.Cluster
			for _, c := range out.Clusters {
				if !strings.HasPrefix(c.Name, "shadow") {
					kept = append(kept, c)
				}
			}
			out.Clusters, out.Endpoints = kept, nil
		}},
		{name: "invalid header regex", world: func() *World {
			p := toStaging()
			p.Match.Headers = []policy.HeaderMatch{{Name: "x-user", Regex: "u-[0-9"}}
			return newWorld([]*Service{entranceService(), stagingService()}, p)
		}},
		{name: "percent sign in a header value", world: baseWorld, edit: func(out *Output) {
			// What the translator escapes; unescaped, Envoy refuses it.
			for _, r := range out.Routes[0].GetVirtualHosts()[0].GetRoutes() {
				for _, m := range r.GetRoute().GetRequestMirrorPolicies() {
					for _, hm := range m.GetRequestHeadersMutations() {
						if a := hm.GetAppend(); a != nil {
							a.Header.Value = "100%"
						}
					}
				}
			}
		}},
		{name: "deprecated field", world: baseWorld, edit: func(out *Output) {
			// Deprecated on purpose: Envoy warns, and the check must catch it.
			out.Clusters[0].DnsRefreshRate = durationpb.New(5 * time.Second)
		}},
	}
	for _, tt := range broken {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			out := Translate(tt.world(), entranceGroup)
			if tt.edit != nil {
				tt.edit(out)
			}
			bs, err := staticBootstrap(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := envoyValidate(t, bs); err == nil {
				t.Error("Envoy accepted a broken configuration")
			}
		})
	}
}

// goldenJSON renders an Output as one stable JSON document: protojson for
// each resource, then re-indented by encoding/json (protojson's own
// whitespace is deliberately unstable across builds).
func goldenJSON(t *testing.T, out *Output) []byte {
	t.Helper()
	encode := func(msgs []proto.Message) []json.RawMessage {
		list := make([]json.RawMessage, 0, len(msgs))
		for _, m := range msgs {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				t.Fatalf("encoding %T: %v", m, err)
			}
			list = append(list, b)
		}
		return list
	}
	warnings := out.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	doc := struct {
		Versions  map[string]string `json:"versions"`
		Warnings  []string          `json:"warnings"`
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
		Runtimes  []json.RawMessage `json:"runtimes"`
	}{
		Versions:  out.Versions,
		Warnings:  warnings,
		Listeners: encode(messages(out.Listeners)),
		Routes:    encode(messages(out.Routes)),
		Clusters:  encode(messages(out.Clusters)),
		Endpoints: encode(messages(out.Endpoints)),
		Runtimes:  encode(messages(out.Runtimes)),
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatalf("encoding the golden document: %v", err)
	}
	return buf.Bytes()
}
