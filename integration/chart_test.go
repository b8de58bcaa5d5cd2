package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// chartCase is one way to render the Helm chart.
type chartCase struct {
	name      string
	namespace string
	set       []string
	// watched are the namespaces of namespaced mode, created first.
	watched []string
	want    []string // kinds/names the output must hold
	wantNot []string
}

// TestHelmChart renders deploy/helm/shadowplane with helm template for
// each mode and switch, applies every output to a real kube-apiserver of its
// own (server-side apply, as kubectl apply --server-side), and checks that
// the Deployment's serve arguments are ones the shadowplane command takes.
func TestHelmChart(t *testing.T) {
	e := env(t)
	helm := testtools.Require(t, "helm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kube := startOwnKube(t)
	chart := filepath.Join(testtools.RepoRoot(), "deploy/helm/shadowplane")
	cases := []chartCase{
		{name: "defaults", namespace: "sp-cluster",
			want: []string{"ClusterRole/shadowplane-sp-cluster", "MutatingWebhookConfiguration/shadowplane-sp-cluster",
				"ValidatingWebhookConfiguration/shadowplane-sp-cluster", "NetworkPolicy/shadowplane", "Job/shadowplane-certgen-1"},
			wantNot: []string{"Role/shadowplane", "ServiceMonitor/shadowplane"}},
		{name: "namespaced", namespace: "sp-namespaced", watched: []string{"team-a", "team-b"},
			set:  []string{"mode=namespaced", "namespaces={team-a,team-b}", "replicas=3", "resources.limits.memory=1Gi", "monitoring.enabled=false"},
			want: []string{"Role/shadowplane", "RoleBinding/shadowplane", "MutatingWebhookConfiguration/shadowplane-sp-namespaced"}},
		{name: "webhooks off", namespace: "sp-nowebhooks", set: []string{"webhooks.enabled=false", "networkPolicy.enabled=false"},
			want:    []string{"Deployment/shadowplane"},
			wantNot: []string{"MutatingWebhookConfiguration/shadowplane-sp-nowebhooks", "NetworkPolicy/shadowplane"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, ns := range append([]string{tc.namespace}, tc.watched...) {
				if err := kube.EnsureNamespace(ctx, ns); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"template", "shadowplane", chart, "--namespace", tc.namespace}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out := runTool(t, helm, args...)
			objects := applyServerSide(t, ctx, kube, out)
			for _, want := range tc.want {
				if !contains(objects, want) {
					t.Errorf("output lacks %s (has %v)", want, objects)
				}
			}
			for _, unwanted := range tc.wantNot {
				if contains(objects, unwanted) {
					t.Errorf("output has %s", unwanted)
				}
			}
			checkServeArgs(t, e, out)
			checkDisruptionAndXDSPeers(t, ctx, kube, tc)
		})
	}

	// monitoring.serviceMonitor needs the prometheus-operator CRD, which
	// this API server does not have: rendered, not applied.
	out := runTool(t, helm, "template", "shadowplane", chart, "--namespace", "x", "--set", "monitoring.serviceMonitor.enabled=true")
	if !strings.Contains(out, "kind: ServiceMonitor") {
		t.Error("monitoring.serviceMonitor.enabled renders no ServiceMonitor")
	}
	// A bad mode fails at render time, with the valid ones named.
	cmd := exec.Command(helm, "template", "shadowplane", chart, "--set", "mode=everywhere")
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), "want cluster or namespaced") {
		t.Errorf("mode=everywhere: %v: %s", err, msg)
	}
}

// TestKustomizeBase builds deploy/kustomize/base, which must be what the
// chart renders with its defaults (make deploy-kustomize), and the example
// overlay, and applies both to a real kube-apiserver.
func TestKustomizeBase(t *testing.T) {
	e := env(t)
	helm := testtools.Require(t, "helm")
	kustomize := testtools.Require(t, "kustomize")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root := testtools.RepoRoot()
	base, err := os.ReadFile(filepath.Join(root, "deploy/kustomize/base/shadowplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := runTool(t, helm, "template", "shadowplane", filepath.Join(root, "deploy/helm/shadowplane"), "--namespace", "shadowplane-system")
	if _, generated, _ := strings.Cut(string(base), "\n"); generated != rendered {
		t.Errorf("deploy/kustomize/base/shadowplane.yaml is not the chart's current output: run make deploy-kustomize")
	}
	kube := startOwnKube(t)
	objects := applyServerSide(t, ctx, kube, runTool(t, kustomize, "build", filepath.Join(root, "deploy/kustomize/base")))
	for _, want := range []string{"Namespace/shadowplane-system", "Deployment/shadowplane", "MutatingWebhookConfiguration/shadowplane-shadowplane-system"} {
		if !contains(objects, want) {
			t.Errorf("base lacks %s", want)
		}
	}
	example := runTool(t, kustomize, "build", filepath.Join(root, "deploy/kustomize/example"))
	objects = applyServerSide(t, ctx, kube, example)
	if contains(objects, "MutatingWebhookConfiguration/shadowplane-shadowplane-system") {
		t.Error("the example overlay (without-webhooks) still has the webhooks")
	}
	d, err := kube.Client.AppsV1().Deployments("shadowplane-system").Get(ctx, "shadowplane", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String() != "1Gi" {
		t.Errorf("example overlay: replicas %d, limits %v; want 3 and 1Gi", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Resources.Limits)
	}
	for _, arg := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(arg, "--webhook") {
			t.Errorf("example overlay still passes %s", arg)
		}
	}
	checkServeArgs(t, e, example)
	checkWithoutWebhooksIsChart(t, helm, kustomize, root)
}

// checkWithoutWebhooksIsChart: the base with the without-webhooks component
// is, object for object, what the chart renders with webhooks.enabled=false
// (the base's Namespace aside): no right, port or rule the webhooks needed
// is left behind.
func checkWithoutWebhooksIsChart(t *testing.T, helm, kustomize, root string) {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(root, "deploy/kustomize"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"+
		"resources: ["+rel+"/base]\ncomponents: ["+rel+"/components/without-webhooks]\n"), 0o600))
	got := objectsByName(t, runTool(t, kustomize, "build", dir))
	want := objectsByName(t, runTool(t, helm, "template", "shadowplane", filepath.Join(root, "deploy/helm/shadowplane"),
		"--namespace", "shadowplane-system", "--set", "webhooks.enabled=false"))
	delete(got, "Namespace/shadowplane-system")
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("without-webhooks lacks %s", name)
		} else if !reflect.DeepEqual(g, w) {
			t.Errorf("without-webhooks %s differs from the chart's webhooks.enabled=false:\n%v\nchart:\n%v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("without-webhooks keeps %s, which the chart without webhooks does not render", name)
		}
	}
}

// objectsByName decodes a multi-document YAML stream by kind/name.
func objectsByName(t *testing.T, manifests string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for {
		var obj map[string]any
		if err := decoder.Decode(&obj); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if obj == nil {
			continue
		}
		u := unstructured.Unstructured{Object: obj}
		out[u.GetKind()+"/"+u.GetName()] = obj
	}
}

// startOwnKube starts a kube-apiserver for one test, so the cluster-scoped
// objects it applies (webhook configurations among them) touch no other
// test.
func startOwnKube(t *testing.T) *harness.Kube {
	t.Helper()
	kube, err := harness.StartKube(testtools.BinDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Stop() })
	return kube
}

func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(tool), args, err, stderr.String())
	}
	return stdout.String()
}

// applyServerSide applies every object of a multi-document YAML stream with
// server-side apply and returns them as kind/name.
func applyServerSide(t *testing.T, ctx context.Context, kube *harness.Kube, manifests string) []string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Client.Discovery()))
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var applied []string
	for {
		var obj unstructured.Unstructured
		if err := decoder.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return applied
			}
			t.Fatalf("decode: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk.Kind, obj.GetName(), err)
		}
		resource := dyn.Resource(mapping.Resource)
		var client dynamic.ResourceInterface = resource
		if mapping.Scope.Name() == "namespace" {
			client = resource.Namespace(obj.GetNamespace())
		}
		if _, err := client.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "shadowplane-test", Force: true}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
		applied = append(applied, gvk.Kind+"/"+obj.GetName())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkServeArgs runs `shadowplane serve` with the serve arguments of the
// Deployment in manifests: every flag must be one serve takes (it then
// stops, at the missing kubeconfig, before serving anything).
func checkServeArgs(t *testing.T, e *sharedEnv, manifests string) {
	t.Helper()
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	for {
		var obj unstructured.Unstructured
		if err := decoder.Decode(&obj.Object); err != nil {
			break
		}
		if obj.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		cmd := exec.Command(e.shadowplane, append(args, "--kubeconfig", filepath.Join(t.TempDir(), "missing"))...)
		out, err := cmd.CombinedOutput()
		if err == nil || strings.Contains(string(out), "unknown flag") || !strings.Contains(string(out), "missing") {
			t.Errorf("shadowplane %v: %v\n%s", args, err, out)
		}
		return
	}
	t.Error("no Deployment in the output")
}

// checkDisruptionAndXDSPeers: the budget lets one replica go at a time
// (a single replica is not pinned to its node), and the NetworkPolicy lets
// sidecars reach xDS from the watched namespaces only in namespaced mode,
// from every namespace otherwise.
func checkDisruptionAndXDSPeers(t *testing.T, ctx context.Context, kube *harness.Kube, tc chartCase) {
	t.Helper()
	pdb, err := kube.Client.PolicyV1().PodDisruptionBudgets(tc.namespace).Get(ctx, "shadowplane", metav1.GetOptions{})
	must(t, err)
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget: minAvailable %v, maxUnavailable %v; want maxUnavailable 1 only", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	np, err := kube.Client.NetworkingV1().NetworkPolicies(tc.namespace).Get(ctx, "shadowplane", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	must(t, err)
	peer := np.Spec.Ingress[0].From[0]
	if peer.NamespaceSelector == nil || peer.PodSelector.MatchLabels["shadowplane.io/sidecar"] != "true" {
		t.Fatalf("NetworkPolicy: first rule is not the sidecars' xDS rule: %+v", peer)
	}
	var allowed []string
	for _, r := range peer.NamespaceSelector.MatchExpressions {
		if r.Key == "kubernetes.io/metadata.name" && r.Operator == metav1.LabelSelectorOpIn {
			allowed = r.Values
		}
	}
	if tc.watched == nil {
		if len(peer.NamespaceSelector.MatchExpressions)+len(peer.NamespaceSelector.MatchLabels) != 0 {
			t.Errorf("NetworkPolicy: xDS limited to %+v in cluster mode", peer.NamespaceSelector)
		}
	} else if !slices.Equal(allowed, tc.watched) {
		t.Errorf("NetworkPolicy: xDS open to namespaces %v, want the watched %v", allowed, tc.watched)
	}
}
