package translator_test

// Golden cases as data: each directory testdata/<case> holds in.yaml, the
// Kubernetes objects and the sidecar node, and one expected output file per
// resource type. The objects go through the watcher's own conversion
// (watcher.BuildWorld) and the node through the xDS server's own reading of
// node metadata (nodemeta.GroupFromNode), so a case sees what production
// would. Rewrite the expected files with
// `go test ./translator -run Golden -update` and review the diff.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
	"github.com/shadowplane/shadowplane/watcher"
)

var update = flag.Bool("update", false, "rewrite the expected output files of the golden cases")

// goldenAPIVersion marks the documents of in.yaml that are not Kubernetes
// objects: the sidecar node and the control plane's settings.
const goldenAPIVersion = "golden.shadowplane.io/v1"

// goldenNode is the sidecar whose configuration a case translates: an Envoy
// node as `shadowplane bootstrap` writes it (kind: Node).
type goldenNode struct {
	metav1.TypeMeta `json:",inline"`
	ID              string            `json:"id"`
	Metadata        map[string]string `json:"metadata"`
}

// goldenControlPlane holds the control plane settings a case needs
// (kind: ControlPlane); allowURLTargets are the --allow-url-target values.
type goldenControlPlane struct {
	metav1.TypeMeta `json:",inline"`
	AllowURLTargets []string `json:"allowURLTargets"`
}

// goldenInput is what in.yaml holds.
type goldenInput struct {
	services       []*corev1.Service
	endpointSlices []*discoveryv1.EndpointSlice
	configMaps     []*corev1.ConfigMap
	// tlsSecrets and caConfigMaps carry the label policy.TLSObjectLabel.
	tlsSecrets   []*corev1.Secret
	caConfigMaps []*corev1.ConfigMap
	node         *corev3.Node
	opts         policy.ParseOptions
}

// goldenCase is a case's input run through the production path.
type goldenCase struct {
	world    *translator.World
	group    nodemeta.NodeGroup
	problems []*policy.PolicyError // warnings only: errors fail the case
}

// goldenFileNames are the expected output files of every case.
var goldenFileNames = []string{
	"listeners.json", "routes.json", "clusters.json", "endpoints.json", "runtime.json", "secrets.json", "versions.json", "warnings.json",
}

// goldenNow is when the cases' certificates are checked, so their output
// never changes with the day the tests run.
var goldenNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// goldenCaseDirs lists the case directories: those holding an in.yaml.
func goldenCaseDirs(t *testing.T) []string {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*", "in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no golden cases found (testdata/*/in.yaml)")
	}
	dirs := make([]string, len(inputs))
	for i, in := range inputs {
		dirs[i] = filepath.Dir(in)
	}
	return dirs
}

// TestGolden pins the full output of each case.
func TestGolden(t *testing.T) {
	for _, dir := range goldenCaseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadGoldenCase(t, dir)
			out := translator.Translate(c.world, c.group)
			translator.ValidateOutput(t, out)
			files := goldenFiles(t, out, c.problems)
			for _, name := range goldenFileNames {
				path := filepath.Join(dir, name)
				if *update {
					if err := os.WriteFile(path, files[name], 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("%v (run `go test ./translator -run Golden -update` to create it)", err)
					continue
				}
				if diff := cmp.Diff(string(want), string(files[name])); diff != "" {
					t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
				}
			}
			checkNoStrayFiles(t, dir)
		})
	}
}

// checkNoStrayFiles fails on files a case does not produce, such as the
// output of a resource type that no longer exists.
func checkNoStrayFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "in.yaml" && !slices.Contains(goldenFileNames, e.Name()) {
			t.Errorf("%s: unexpected file %s: a case holds in.yaml and %s", dir, e.Name(), strings.Join(goldenFileNames, ", "))
		}
	}
}

// TestGoldenEnvoyValidate has the real Envoy accept the output of every
// golden case, and reject broken ones, so the validation is known to bite.
func TestGoldenEnvoyValidate(t *testing.T) {
	testtools.Require(t, "envoy")
	for _, dir := range goldenCaseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadGoldenCase(t, dir)
			bs, err := staticBootstrap(translator.Translate(c.world, c.group))
			if err != nil {
				t.Fatal(err)
			}
			if err := envoyValidate(t, bs); err != nil {
				t.Error(err)
			}
		})
	}

	// Each broken configuration starts from a valid case and spoils either
	// the World (what the parser would never let through) or the output.
	base := filepath.Join("testdata", "one-policy-service-100")
	broken := []struct {
		name       string
		editWorld  func(w *translator.World)
		editOutput func(out *translator.Output)
	}{
		{name: "mirror to a missing cluster", editOutput: func(out *translator.Output) {
			var kept []*clusterv3.Cluster
			for _, c := range out.Clusters {
				if !strings.HasPrefix(c.Name, "shadow") {
					kept = append(kept, c)
				}
			}
			out.Clusters, out.Endpoints = kept, nil
		}},
		{name: "invalid header regex", editWorld: func(w *translator.World) {
			w.Policies[0].Match.Headers = []policy.HeaderMatch{{Name: "x-user", Regex: "u-[0-9"}}
		}},
		{name: "percent sign in a header value", editOutput: func(out *translator.Output) {
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
		{name: "deprecated field", editOutput: func(out *translator.Output) {
			// Deprecated on purpose: Envoy warns, and the check must catch it.
			out.Clusters[0].DnsRefreshRate = durationpb.New(5 * time.Second)
		}},
	}
	for _, tt := range broken {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			c := loadGoldenCase(t, base)
			if tt.editWorld != nil {
				tt.editWorld(c.world)
			}
			out := translator.Translate(c.world, c.group)
			if tt.editOutput != nil {
				tt.editOutput(out)
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

// loadGoldenCase reads dir/in.yaml and turns it into a World and a node
// group the way the control plane does. A policy error fails the test: a
// case whose policy is rejected would silently pin the wrong output.
func loadGoldenCase(t *testing.T, dir string) goldenCase {
	t.Helper()
	in, err := readGoldenInput(filepath.Join(dir, "in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if in.node == nil {
		t.Fatalf("%s/in.yaml: no kind: Node document (apiVersion: %s) names the sidecar", dir, goldenAPIVersion)
	}
	group, err := nodemeta.GroupFromNode(in.node)
	if err != nil {
		t.Fatalf("%s/in.yaml: %v", dir, err)
	}
	world, problems := watcher.BuildWorldWithTLS(in.services, in.endpointSlices, in.configMaps, in.tlsSecrets, in.caConfigMaps, in.opts, goldenNow)
	for _, p := range problems {
		if !p.Warning {
			t.Errorf("%s/in.yaml: %v", dir, p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return goldenCase{world: world, group: group, problems: problems}
}

// readGoldenInput decodes the documents of in.yaml: Services,
// EndpointSlices and ConfigMaps (decoded strictly, so a misspelt field is an
// error; only ConfigMaps with the watcher's default policy label are
// policies, as in production), one Node and at most one ControlPlane.
func readGoldenInput(path string) (goldenInput, error) {
	var in goldenInput
	f, err := os.Open(path)
	if err != nil {
		return in, err
	}
	defer f.Close()
	policySelector, err := labels.Parse(watcher.DefaultPolicyLabel)
	if err != nil {
		return in, err
	}
	tlsSelector := labels.SelectorFromSet(labels.Set{policy.TLSObjectLabel: "true"})
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return in, nil
		}
		if err != nil {
			return in, fmt.Errorf("%s: %w", path, err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return in, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if meta.APIVersion == "" && meta.Kind == "" {
			continue // an empty document, or comments only
		}
		if meta.APIVersion == goldenAPIVersion {
			if err := in.addGoldenDocument(meta.Kind, doc); err != nil {
				return in, fmt.Errorf("%s: document %d: %w", path, i, err)
			}
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return in, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			in.services = append(in.services, o)
		case *discoveryv1.EndpointSlice:
			in.endpointSlices = append(in.endpointSlices, o)
		case *corev1.ConfigMap:
			if policySelector.Matches(labels.Set(o.Labels)) {
				in.configMaps = append(in.configMaps, o)
			}
			if tlsSelector.Matches(labels.Set(o.Labels)) {
				in.caConfigMaps = append(in.caConfigMaps, o)
			}
		case *corev1.Secret:
			if tlsSelector.Matches(labels.Set(o.Labels)) {
				in.tlsSecrets = append(in.tlsSecrets, withStringData(o))
			}
		default:
			return in, fmt.Errorf("%s: document %d: kind %s is not used by shadowplane", path, i, meta.Kind)
		}
	}
}

// addGoldenDocument takes a Node or ControlPlane document.
func (in *goldenInput) addGoldenDocument(kind string, doc []byte) error {
	switch kind {
	case "Node":
		if in.node != nil {
			return errors.New("a second Node: a case translates for one sidecar")
		}
		var n goldenNode
		if err := yaml.UnmarshalStrict(doc, &n); err != nil {
			return err
		}
		fields := make(map[string]any, len(n.Metadata))
		for k, v := range n.Metadata {
			fields[k] = v
		}
		md, err := structpb.NewStruct(fields)
		if err != nil {
			return err
		}
		in.node = &corev3.Node{Id: n.ID, Metadata: md}
	case "ControlPlane":
		var cp goldenControlPlane
		if err := yaml.UnmarshalStrict(doc, &cp); err != nil {
			return err
		}
		for _, pattern := range cp.AllowURLTargets {
			if err := policy.ValidateURLHostPattern(pattern); err != nil {
				return err
			}
		}
		in.opts.AllowedURLHosts = append(in.opts.AllowedURLHosts, cp.AllowURLTargets...)
	default:
		return fmt.Errorf("unknown kind %q of %s: want Node or ControlPlane", kind, goldenAPIVersion)
	}
	return nil
}

// goldenFiles renders the output of a case, one file per resource type plus
// the versions and the warnings (the policies' and the translation's). Each
// resource is protojson, re-indented by encoding/json (protojson's own
// whitespace is deliberately unstable across builds).
func goldenFiles(t *testing.T, out *translator.Output, problems []*policy.PolicyError) map[string][]byte {
	t.Helper()
	if len(out.Runtimes) != 1 {
		t.Fatalf("want exactly one runtime layer, got %d", len(out.Runtimes))
	}
	policyWarnings := []string{}
	for _, p := range problems {
		policyWarnings = append(policyWarnings, p.Error())
	}
	translationWarnings := out.Warnings
	if translationWarnings == nil {
		translationWarnings = []string{}
	}
	return map[string][]byte{
		"listeners.json": indentJSON(t, resourcesJSON(t, out.Listeners)),
		"routes.json":    indentJSON(t, resourcesJSON(t, out.Routes)),
		"clusters.json":  indentJSON(t, resourcesJSON(t, out.Clusters)),
		"endpoints.json": indentJSON(t, resourcesJSON(t, out.Endpoints)),
		"runtime.json":   indentJSON(t, resourcesJSON(t, out.Runtimes)[0]),
		"secrets.json":   indentJSON(t, resourcesJSON(t, redactedSecrets(out.Secrets))),
		"versions.json":  indentJSON(t, out.Versions),
		"warnings.json": indentJSON(t, struct {
			Policies    []string `json:"policies"`
			Translation []string `json:"translation"`
		}{policyWarnings, translationWarnings}),
	}
}

// resourcesJSON encodes each resource with protojson.
func resourcesJSON[M proto.Message](t *testing.T, resources []M) []json.RawMessage {
	t.Helper()
	list := make([]json.RawMessage, 0, len(resources))
	for _, r := range resources {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			t.Fatalf("encoding %T: %v", r, err)
		}
		list = append(list, b)
	}
	return list
}

func indentJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encoding a golden file: %v", err)
	}
	return buf.Bytes()
}

// withStringData moves a Secret's stringData into data, as the API server
// does when it stores a Secret.
func withStringData(s *corev1.Secret) *corev1.Secret {
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
	return s
}

// redactedSecrets are copies of the secrets with each private key replaced
// by a marker: a golden file is not the place for key material, even a
// test key's.
func redactedSecrets(secrets []*tlsv3.Secret) []*tlsv3.Secret {
	out := make([]*tlsv3.Secret, len(secrets))
	for i, s := range secrets {
		s = proto.Clone(s).(*tlsv3.Secret)
		if c := s.GetTlsCertificate(); c.GetPrivateKey() != nil {
			c.PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{
				InlineString: fmt.Sprintf("[%d bytes of private key, redacted]", len(c.GetPrivateKey().GetInlineBytes())),
			}}
		}
		out[i] = s
	}
	return out
}
