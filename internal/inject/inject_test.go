package inject

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/shadowplane/shadowplane/nodemeta"
)

const app = `apiVersion: v1
kind: Service
metadata: {name: checkout, namespace: shop}
spec:
  selector: {app: checkout}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: metrics, port: 9100, targetPort: 9100}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: shop}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      containers:
      - name: app
        image: checkout:1
        ports: [{containerPort: 8080}]
`

func options() Options {
	return Options{
		Service: "checkout", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}},
		XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "sp:test", EnvoyImage: "envoy:test",
	}
}

func decodeAll(t *testing.T, data []byte) []any {
	t.Helper()
	var out []any
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("output does not decode: %v\n%s", err, doc)
		}
		out = append(out, obj)
	}
	return out
}

func TestManifestsInjectsAndSwaps(t *testing.T) {
	var out bytes.Buffer
	res, err := Manifests(strings.NewReader(app), &out, options())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Workloads) != 1 || res.Workloads[0] != "Deployment/checkout" || len(res.Services) != 1 {
		t.Fatalf("result = %+v", res)
	}
	objs := decodeAll(t, out.Bytes())
	if len(objs) != 3 {
		t.Fatalf("got %d documents, want 3 (unrelated objects pass through)", len(objs))
	}
	svc := objs[0].(*corev1.Service)
	if got := svc.Spec.Ports[0].TargetPort.IntVal; got != 15001 {
		t.Errorf("http targetPort = %d, want the listen port 15001", got)
	}
	if got := svc.Spec.Ports[1].TargetPort.IntVal; got != 9100 {
		t.Errorf("metrics targetPort = %d, want 9100 untouched", got)
	}
	if cm := objs[1].(*corev1.ConfigMap); cm.Data["a"] != "b" {
		t.Errorf("unrelated ConfigMap changed: %+v", cm)
	}
	spec := objs[2].(*appsv1.Deployment).Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != InitContainer || spec.InitContainers[0].Image != "sp:test" {
		t.Fatalf("init containers = %+v", spec.InitContainers)
	}
	args := strings.Join(spec.InitContainers[0].Args, " ")
	for _, want := range []string{"bootstrap", "--service=checkout", "--ports=15001:8080", "--xds-address=shadowplane.shadowplane-system.svc:18000"} {
		if !strings.Contains(args, want) {
			t.Errorf("bootstrap args %q lack %q", args, want)
		}
	}
	if len(spec.Containers) != 2 || spec.Containers[1].Name != EnvoyContainer || spec.Containers[1].Ports[0].ContainerPort != 15001 {
		t.Fatalf("containers = %+v", spec.Containers)
	}
	if spec.Containers[1].ReadinessProbe.TCPSocket.Port.IntVal != 15001 {
		t.Errorf("readiness probe = %+v", spec.Containers[1].ReadinessProbe)
	}
	if ps := spec.Containers[1].Lifecycle; ps == nil || ps.PreStop == nil || ps.PreStop.Sleep == nil || ps.PreStop.Sleep.Seconds < 1 {
		t.Errorf("envoy lifecycle = %+v, want a preStop sleep so rollouts drop no requests", ps)
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].Name != ConfigVolume {
		t.Errorf("volumes = %+v", spec.Volumes)
	}
}

func TestManifestsRefuses(t *testing.T) {
	var injected bytes.Buffer
	if _, err := Manifests(strings.NewReader(app), &injected, options()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		input string
		opts  func(*Options)
		want  string
	}{
		{"twice", injected.String(), nil, "already has"},
		{"service without app port", app, func(o *Options) { o.Ports = []nodemeta.PortPair{{Listen: 15001, App: 7000}} }, "no port targets an app port"},
		{"listen port taken", strings.Replace(app, "containerPort: 8080", "containerPort: 15001", 1), nil, "already uses port 15001"},
		{"not yaml", "kind: [", nil, "document 1"},
		{"missing options", app, func(o *Options) { o.XDSAddress = "" }, "required"},
		{"service the control plane refuses", app, func(o *Options) { o.Service = "Checkout" }, `"Checkout" is not a Kubernetes Service name`},
		{"port pair out of range", app, func(o *Options) { o.Ports = []nodemeta.PortPair{{Listen: 70000, App: 8080}} }, "not a port number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options()
			if tc.opts != nil {
				tc.opts(&o)
			}
			_, err := Manifests(strings.NewReader(tc.input), &bytes.Buffer{}, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
