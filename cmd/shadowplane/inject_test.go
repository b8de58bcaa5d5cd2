package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/inject"
)

// TestInjectedBootstrapRenders: the init container that `inject` adds runs
// `shadowplane bootstrap` with arguments the command accepts, and renders a
// TLS bootstrap whose SDS files point at the CA and token inject mounts;
// --ca-file publishes the CA read from the file.
func TestInjectedBootstrapRenders(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: checkout:1}]}
`
	dir := t.TempDir()
	ca, err := certs.NewAuthority("test-ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, []byte(deployment), "inject", "-f", "-", "--service", "checkout", "--ports", "15001:8080", "--ca-file", caFile)
	if code != 0 {
		t.Fatalf("inject: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "shop/shadowplane-ca") {
		t.Errorf("inject does not report the CA ConfigMap: %q", stderr)
	}
	var init *corev1.Container
	for _, doc := range strings.Split(stdout, "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("inject output: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			if o.Name != certs.CAConfigMapName || o.Namespace != "shop" || o.Data[certs.KeyCACert] != string(ca.CertPEM) {
				t.Errorf("ConfigMap %s/%s = %v, want the CA from --ca-file", o.Namespace, o.Name, o.Data)
			}
		case *appsv1.Deployment:
			init = &o.Spec.Template.Spec.InitContainers[0]
		}
	}
	if init == nil || init.Name != inject.InitContainer {
		t.Fatalf("no %s init container in:\n%s", inject.InitContainer, stdout)
	}

	// Run the init container's command here: its output into a temporary
	// directory instead of the emptyDir, its env as the downward API sets it.
	t.Setenv("POD_NAME", "checkout-7d9f-x2x4z")
	t.Setenv("POD_NAMESPACE", "shop")
	out := filepath.Join(dir, "envoy", "envoy.yaml")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, arg := range init.Args {
		if strings.HasPrefix(arg, "--output=") {
			arg = "--output=" + out
		}
		args = append(args, arg)
	}
	if _, stderr, code := runCLI(t, nil, args...); code != 0 {
		t.Fatalf("the init container's %q: exit %d: %s", args, code, stderr)
	}
	rendered, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sni: shadowplane.shadowplane-system.svc", "id: checkout-7d9f-x2x4z", "envoy.filters.http.credential_injector"} {
		if !strings.Contains(string(rendered), want) {
			t.Errorf("bootstrap lacks %q", want)
		}
	}
	for name, want := range map[string]string{bootstrap.SDSCAFileName: bootstrap.DefaultCAFile, bootstrap.SDSTokenFileName: bootstrap.DefaultTokenFile} {
		sds, err := os.ReadFile(filepath.Join(filepath.Dir(out), name))
		if err != nil {
			t.Fatalf("SDS file next to the bootstrap: %v", err)
		}
		if !strings.Contains(string(sds), want) {
			t.Errorf("%s does not read %s, where inject mounts it:\n%s", name, want, sds)
		}
	}
}

// TestUninjectCommand: uninject of inject's output gives the app back, and
// both say on stderr what they did; an input without workloads is an error.
func TestUninjectCommand(t *testing.T) {
	const app = `apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: checkout:1, ports: [{name: http, containerPort: 8080}]}]}
`
	injected, stderr, code := runCLI(t, []byte(app), "inject", "-f", "-", "--service", "checkout", "--ports", "15001:8080")
	if code != 0 || !strings.Contains(stderr, "injected [Deployment/checkout]") {
		t.Fatalf("inject: exit %d: %s", code, stderr)
	}
	again, stderr, code := runCLI(t, []byte(injected), "inject", "-f", "-", "--service", "checkout", "--ports", "15001:8080")
	if code != 0 || again != injected || !strings.Contains(stderr, "left as they were: [Deployment/checkout]") {
		t.Errorf("inject of inject's output: exit %d, changed: %v, stderr %q", code, again != injected, stderr)
	}
	removed, stderr, code := runCLI(t, []byte(injected), "uninject", "-f", "-")
	if code != 0 || !strings.Contains(stderr, "removed the sidecar from [Deployment/checkout]") {
		t.Fatalf("uninject: exit %d: %s", code, stderr)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(removed), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := obj.(*appsv1.Deployment).Spec.Template.Spec
	if len(spec.InitContainers) != 0 || len(spec.Volumes) != 0 || spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("uninjected pod spec = %+v, want the app alone with its port named http again", spec)
	}
	if _, stderr, code := runCLI(t, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), "uninject", "-f", "-"); code == 0 || !strings.Contains(stderr, "no Deployment") {
		t.Errorf("uninject without workloads: exit %d: %s", code, stderr)
	}
}
