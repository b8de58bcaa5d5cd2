package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/testtools"
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

func decodeAll(t *testing.T, data []byte) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("output does not decode: %v\n%s", err, doc)
		}
		out = append(out, obj)
	}
	return out
}

func inject(t *testing.T, input string, o Options) (Result, []runtime.Object) {
	t.Helper()
	var out bytes.Buffer
	res, err := Manifests(strings.NewReader(input), &out, o)
	if err != nil {
		t.Fatal(err)
	}
	return res, decodeAll(t, out.Bytes())
}

func TestManifestsInjectsAndSwaps(t *testing.T) {
	res, objs := inject(t, app, options())
	if len(res.Workloads) != 1 || res.Workloads[0] != "Deployment/checkout" || len(res.Services) != 1 || len(res.CAConfigMaps) != 0 {
		t.Fatalf("result = %+v", res)
	}
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
	deployment := objs[2].(*appsv1.Deployment)
	if got := deployment.Spec.Template.Labels; got[SidecarLabel] != "true" || got["app"] != "checkout" {
		t.Errorf("pod labels = %v, want app kept and %s=true for the NetworkPolicy", got, SidecarLabel)
	}
	if got := deployment.Spec.Selector.MatchLabels; len(got) != 1 {
		t.Errorf("selector = %v, want it untouched (it is immutable)", got)
	}
	spec := deployment.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != InitContainer || spec.InitContainers[0].Image != "sp:test" {
		t.Fatalf("init containers = %+v", spec.InitContainers)
	}
	if len(spec.Containers) != 2 || spec.Containers[1].Name != EnvoyContainer || spec.Containers[1].Ports[0].ContainerPort != 15001 {
		t.Fatalf("containers = %+v", spec.Containers)
	}
	envoy := spec.Containers[1]
	if envoy.ReadinessProbe.TCPSocket.Port.IntVal != 15001 {
		t.Errorf("readiness probe = %+v", envoy.ReadinessProbe)
	}
	if ps := envoy.Lifecycle; ps == nil || ps.PreStop == nil || ps.PreStop.Sleep == nil || ps.PreStop.Sleep.Seconds < 1 {
		t.Errorf("envoy lifecycle = %+v, want a preStop sleep so rollouts drop no requests", ps)
	}
	for _, c := range []corev1.Container{spec.InitContainers[0], envoy} {
		sc := c.SecurityContext
		if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s securityContext = %+v, want the restricted profile", c.Name, sc)
		}
	}
	if env := spec.InitContainers[0].Env; len(env) != 2 || env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" || env[1].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("init container env = %+v, want POD_NAME and POD_NAMESPACE from the downward API", env)
	}
}

// TestManifestsSecureAndInsecure: by default the sidecar gets a token bound
// to its pod for audience shadowplane, the CA, and a bootstrap that uses
// both; --insecure gets none of them.
func TestManifestsSecureAndInsecure(t *testing.T) {
	tests := []struct {
		name        string
		opts        func(*Options)
		wantArgs    []string
		wantVolumes []string
		wantMounts  map[string]string // Envoy's mounts: volume → path
	}{
		{
			name: "secure by default",
			wantArgs: []string{"bootstrap", "--service=checkout", "--ports=15001:8080", "--xds-address=shadowplane.shadowplane-system.svc:18000",
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--xds-server-name=shadowplane.shadowplane-system.svc",
				"--ca-file=" + bootstrap.DefaultCAFile, "--token-file=" + bootstrap.DefaultTokenFile},
			wantVolumes: []string{ConfigVolume, TokenVolume, CAVolume},
			wantMounts: map[string]string{ConfigVolume: "/etc/shadowplane/envoy", TokenVolume: "/var/run/secrets/shadowplane",
				CAVolume: "/etc/shadowplane/ca"},
		},
		{
			name: "server name given, delta",
			opts: func(o *Options) {
				o.XDSAddress, o.XDSServerName, o.Delta = "10.0.0.7:18000", "xds.example.com", true
			},
			wantArgs: []string{"bootstrap", "--service=checkout", "--ports=15001:8080", "--xds-address=10.0.0.7:18000",
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--xds-server-name=xds.example.com",
				"--ca-file=" + bootstrap.DefaultCAFile, "--token-file=" + bootstrap.DefaultTokenFile, "--delta"},
			wantVolumes: []string{ConfigVolume, TokenVolume, CAVolume},
			wantMounts: map[string]string{ConfigVolume: "/etc/shadowplane/envoy", TokenVolume: "/var/run/secrets/shadowplane",
				CAVolume: "/etc/shadowplane/ca"},
		},
		{
			name: "insecure",
			opts: func(o *Options) { o.Insecure = true },
			wantArgs: []string{"bootstrap", "--service=checkout", "--ports=15001:8080", "--xds-address=shadowplane.shadowplane-system.svc:18000",
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--insecure"},
			wantVolumes: []string{ConfigVolume},
			wantMounts:  map[string]string{ConfigVolume: "/etc/shadowplane/envoy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options()
			if tt.opts != nil {
				tt.opts(&o)
			}
			_, objs := inject(t, app, o)
			spec := objs[2].(*appsv1.Deployment).Spec.Template.Spec
			if got := spec.InitContainers[0].Args; !slices.Equal(got, tt.wantArgs) {
				t.Errorf("bootstrap args\n got %q\nwant %q", got, tt.wantArgs)
			}
			var volumes []string
			for _, v := range spec.Volumes {
				volumes = append(volumes, v.Name)
			}
			if !slices.Equal(volumes, tt.wantVolumes) {
				t.Errorf("volumes = %v, want %v", volumes, tt.wantVolumes)
			}
			mounts := map[string]string{}
			for _, m := range spec.Containers[1].VolumeMounts {
				if !m.ReadOnly {
					t.Errorf("Envoy mounts %s writable", m.Name)
				}
				mounts[m.Name] = m.MountPath
			}
			if !reflect.DeepEqual(mounts, tt.wantMounts) {
				t.Errorf("Envoy mounts = %v, want %v", mounts, tt.wantMounts)
			}
			if o.Insecure {
				return
			}
			token := spec.Volumes[1].Projected.Sources[0].ServiceAccountToken
			if token == nil || token.Audience != bootstrap.TokenAudience || *token.ExpirationSeconds != 3600 || token.Path != "token" {
				t.Errorf("token volume = %+v, want a projected token for audience %q, 3600 s, at token", spec.Volumes[1], bootstrap.TokenAudience)
			}
			if ca := spec.Volumes[2].ConfigMap; ca == nil || ca.Name != certs.CAConfigMapName || ca.Items[0].Key != "ca.crt" {
				t.Errorf("CA volume = %+v, want ConfigMap %s", spec.Volumes[2], certs.CAConfigMapName)
			}
		})
	}
}

// caBundle is a PEM CA certificate, as certgen writes it.
func caBundle(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	ca, err := certs.NewAuthority("test-ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM, ca.KeyPEM
}

// TestManifestsPublishCA: with a CA bundle, each namespace of an injected
// workload gets ConfigMap shadowplane-ca ahead of its workloads; one already
// in the input is updated, never duplicated.
func TestManifestsPublishCA(t *testing.T) {
	bundle, _ := caBundle(t)
	o := options()
	o.CABundle = bundle
	const pod = `---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: tools, labels: {app: checkout}}
spec: {containers: [{name: app, image: probe:1}]}
`
	res, objs := inject(t, app+pod, o)
	if want := []string{"shop/shadowplane-ca", "tools/shadowplane-ca"}; !slices.Equal(res.CAConfigMaps, want) {
		t.Errorf("CA ConfigMaps = %v, want %v", res.CAConfigMaps, want)
	}
	var kinds []string
	for _, obj := range objs {
		kind := strings.TrimPrefix(reflect.TypeOf(obj).String(), "*")
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == certs.CAConfigMapName {
			kind = "CA:" + cm.Namespace
			if cm.Data["ca.crt"] != string(bundle) {
				t.Errorf("ConfigMap %s/%s holds %q, want the bundle", cm.Namespace, cm.Name, cm.Data["ca.crt"])
			}
		}
		kinds = append(kinds, kind)
	}
	if want := []string{"v1.Service", "v1.ConfigMap", "CA:shop", "CA:tools", "v1.Deployment", "v1.Pod"}; !slices.Equal(kinds, want) {
		t.Errorf("documents = %v, want %v (the CA before the first workload)", kinds, want)
	}
	if labels := objs[5].(*corev1.Pod).Labels; labels[SidecarLabel] != "true" {
		t.Errorf("bare Pod labels = %v", labels)
	}

	// A ConfigMap in the input (a rotation: the new bundle) is updated.
	rotated, _ := caBundle(t)
	rotated = append(slices.Clone(bundle), rotated...)
	o.CABundle = rotated
	const existing = `---
apiVersion: v1
kind: ConfigMap
metadata: {name: shadowplane-ca, namespace: shop}
data: {ca.crt: old}
`
	_, objs = inject(t, app+existing, o)
	var found int
	for _, obj := range objs {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == certs.CAConfigMapName {
			found++
			if cm.Data["ca.crt"] != string(rotated) {
				t.Errorf("existing CA ConfigMap holds %q, want the new bundle", cm.Data["ca.crt"])
			}
		}
	}
	if found != 1 {
		t.Errorf("%d CA ConfigMaps in shop, want the existing one only", found)
	}
}

func TestManifestsRefuses(t *testing.T) {
	var injected bytes.Buffer
	if _, err := Manifests(strings.NewReader(app), &injected, options()); err != nil {
		t.Fatal(err)
	}
	bundle, key := caBundle(t)
	leaf, err := certs.LoadAuthority(certs.Pair{CertPEM: bundle, KeyPEM: key})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := leaf.Issue([]string{"x.example"}, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		input string
		opts  func(*Options)
		want  string
	}{
		{"twice", injected.String(), nil, "already has"},
		{"volume name taken", strings.Replace(app, "      containers:", "      volumes: [{name: shadowplane-ca, emptyDir: {}}]\n      containers:", 1), nil, "already has a volume named shadowplane-ca"},
		{"service without app port", app, func(o *Options) { o.Ports = []nodemeta.PortPair{{Listen: 15001, App: 7000}} }, "no port targets an app port"},
		{"listen port taken", strings.Replace(app, "containerPort: 8080", "containerPort: 15001", 1), nil, "already uses port 15001"},
		{"not yaml", "kind: [", nil, "document 1"},
		{"missing options", app, func(o *Options) { o.XDSAddress = "" }, "required"},
		{"service the control plane refuses", app, func(o *Options) { o.Service = "Checkout" }, `"Checkout" is not a Kubernetes Service name`},
		{"port pair out of range", app, func(o *Options) { o.Ports = []nodemeta.PortPair{{Listen: 70000, App: 8080}} }, "not a port number"},
		{"IP address without server name", app, func(o *Options) { o.XDSAddress = "10.0.0.7:18000" }, "give the xds server name"},
		{"CA bundle with a key", app, func(o *Options) { o.CABundle = append(slices.Clone(bundle), key...) }, `holds a "PRIVATE KEY" block`},
		{"CA bundle of a serving certificate", app, func(o *Options) { o.CABundle = serving.CertPEM }, "is not a CA"},
		{"CA bundle empty", app, func(o *Options) { o.CABundle = []byte("not pem") }, "no PEM certificate"},
		{"insecure with a CA", app, func(o *Options) { o.Insecure, o.CABundle = true, bundle }, "uses no CA"},
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

// TestExampleIsInjectOutput: deploy/examples/entrance-sidecar.yaml is
// exactly what `shadowplane inject --service entrance --ports 15001:8080`
// makes of its app, so the hand-written example cannot drift from inject.
func TestExampleIsInjectOutput(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testtools.RepoRoot(), "deploy/examples/entrance-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example := decodeAll(t, data)
	// The app alone: the example without what inject adds.
	var app []runtime.Object
	for _, obj := range example {
		obj = obj.DeepCopyObject()
		if d, ok := obj.(*appsv1.Deployment); ok {
			pod := &d.Spec.Template
			delete(pod.Labels, SidecarLabel)
			pod.Spec.InitContainers = slices.DeleteFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == InitContainer })
			pod.Spec.Containers = slices.DeleteFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == EnvoyContainer })
			pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
				return slices.Contains([]string{ConfigVolume, TokenVolume, CAVolume}, v.Name)
			})
			if len(pod.Spec.InitContainers) == 0 {
				pod.Spec.InitContainers = nil
			}
			if len(pod.Spec.Volumes) == 0 {
				pod.Spec.Volumes = nil
			}
		}
		app = append(app, obj)
	}
	var input bytes.Buffer
	encoder := scheme.Codecs.LegacyCodec(appsv1.SchemeGroupVersion, corev1.SchemeGroupVersion)
	for _, obj := range app {
		input.WriteString("---\n")
		if err := encoder.Encode(obj, &input); err != nil {
			t.Fatal(err)
		}
	}
	_, injected := inject(t, input.String(), Options{
		Service: "entrance", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}},
		XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "ghcr.io/shadowplane/shadowplane:v0.1.0",
		EnvoyImage: "envoyproxy/envoy:v1.40.0",
	})
	if len(injected) != len(example) {
		t.Fatalf("inject made %d documents of the example's %d", len(injected), len(example))
	}
	for i := range example {
		if !reflect.DeepEqual(injected[i], example[i]) {
			var got, want bytes.Buffer
			_ = encoder.Encode(injected[i], &got)
			_ = encoder.Encode(example[i], &want)
			t.Errorf("document %d: the example differs from inject's output\ninject:\n%s\nexample:\n%s", i+1, got.String(), want.String())
		}
	}
}
