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
        ports: [{name: http, containerPort: 8080}]
`

func options() Options {
	return Options{
		Service: "checkout", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}},
		XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "sp:test", EnvoyImage: "envoy:test",
		NativeSidecar: true, DrainToken: testDrainToken,
	}
}

const testDrainToken = "TESTDRAINTOKEN0123456789AB"

// envoyOf returns the sidecar container of a pod spec, native or not.
func envoyOf(t *testing.T, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	c := findEnvoy(&spec)
	if c == nil {
		t.Fatalf("no %s container in %+v", EnvoyContainer, spec)
	}
	return *c
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
	if got := svc.Spec.Ports[0].TargetPort; got.StrVal != "http" {
		t.Errorf("http targetPort = %v, want the name http (the app's port name, moved to Envoy)", got.String())
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
	// A native sidecar: after the bootstrap init container, restartable.
	if len(spec.InitContainers) != 2 || spec.InitContainers[0].Name != InitContainer || spec.InitContainers[0].Image != "sp:test" ||
		spec.InitContainers[1].Name != EnvoyContainer || spec.InitContainers[1].RestartPolicy == nil ||
		*spec.InitContainers[1].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("init containers = %+v, want the bootstrap, then Envoy with restartPolicy Always", spec.InitContainers)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("containers = %+v, want the app only", spec.Containers)
	}
	if got := spec.Containers[0].Ports; len(got) != 1 || got[0].Name != "" || got[0].ContainerPort != 8080 {
		t.Errorf("app ports = %+v, want 8080 kept, its name moved to Envoy", got)
	}
	envoy := spec.InitContainers[1]
	if got := envoy.Ports; len(got) != 1 || got[0].Name != "http" || got[0].ContainerPort != 15001 {
		t.Errorf("Envoy ports = %+v, want http on 15001", got)
	}
	if get := envoy.ReadinessProbe.HTTPGet; get == nil || get.Path != "/ready" || get.Port.IntVal != DefaultHealthPort {
		t.Errorf("readiness probe = %+v, want GET /ready on the health port", envoy.ReadinessProbe)
	}
	if ps := envoy.Lifecycle; ps == nil || ps.PreStop == nil || ps.PreStop.HTTPGet == nil || ps.PreStop.HTTPGet.Path != "/drain" {
		t.Errorf("envoy lifecycle = %+v, want a preStop GET /drain so rollouts drop no requests", ps)
	}
	for _, c := range spec.InitContainers {
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
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--health-port=15021", "--drain-delay=5s", "--drain-token=" + testDrainToken, "--xds-server-name=shadowplane.shadowplane-system.svc",
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
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--health-port=15021", "--drain-delay=5s", "--drain-token=" + testDrainToken, "--xds-server-name=xds.example.com",
				"--ca-file=" + bootstrap.DefaultCAFile, "--token-file=" + bootstrap.DefaultTokenFile, "--delta"},
			wantVolumes: []string{ConfigVolume, TokenVolume, CAVolume},
			wantMounts: map[string]string{ConfigVolume: "/etc/shadowplane/envoy", TokenVolume: "/var/run/secrets/shadowplane",
				CAVolume: "/etc/shadowplane/ca"},
		},
		{
			name: "insecure",
			opts: func(o *Options) { o.Insecure = true },
			wantArgs: []string{"bootstrap", "--service=checkout", "--ports=15001:8080", "--xds-address=shadowplane.shadowplane-system.svc:18000",
				"--output=/etc/shadowplane/envoy/envoy.yaml", "--health-port=15021", "--drain-delay=5s", "--drain-token=" + testDrainToken, "--insecure"},
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
			for _, m := range envoyOf(t, spec).VolumeMounts {
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
spec: {containers: [{name: app, image: probe:1, ports: [{name: http, containerPort: 8080}]}]}
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
		{"hostNetwork", strings.Replace(app, "      containers:", "      hostNetwork: true\n      containers:", 1), nil, "uses hostNetwork"},
		{"health port taken", strings.Replace(app, "containerPort: 8080", "containerPort: 15021", 1), nil, "already uses port 15021, the sidecar's health port"},
		{"admin port taken", strings.Replace(app, "containerPort: 8080", "containerPort: 15000", 1), nil, "already uses port 15000, Envoy's admin port"},
		{"unnamed multi-port Service", strings.Replace(app, "{name: metrics, port: 9100", "{port: 9100", 1), nil, "port 9100 has no name"},
		{"half injected", strings.Replace(app, "      containers:", "      initContainers: [{name: shadowplane-bootstrap, image: x}]\n      containers:", 1), nil, "run uninject first"},
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
// makes of its app (the example after uninject), so the hand-written example
// cannot drift from inject, and uninject then inject is the identity.
func TestExampleIsInjectOutput(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testtools.RepoRoot(), "deploy/examples/entrance-sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example := decodeAll(t, data)
	var app bytes.Buffer
	if _, err := Remove(bytes.NewReader(data), &app, "entrance"); err != nil {
		t.Fatal(err)
	}
	plain := decodeAll(t, app.Bytes())
	if ports := plain[1].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Ports; len(ports) != 1 || ports[0].Name != "http" {
		t.Errorf("uninjected app ports = %+v, want the name http back on 8080", ports)
	}
	_, injected := inject(t, app.String(), Options{
		Service: "entrance", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}},
		XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "ghcr.io/shadowplane/shadowplane:v0.1.0",
		EnvoyImage: "envoyproxy/envoy:v1.40.0", NativeSidecar: true, DrainToken: exampleDrainToken,
	})
	if len(injected) != len(example) {
		t.Fatalf("inject made %d documents of the example's %d", len(injected), len(example))
	}
	encoder := scheme.Codecs.LegacyCodec(appsv1.SchemeGroupVersion, corev1.SchemeGroupVersion)
	for i := range example {
		if !reflect.DeepEqual(injected[i], example[i]) {
			var got, want bytes.Buffer
			_ = encoder.Encode(injected[i], &got)
			_ = encoder.Encode(example[i], &want)
			t.Errorf("document %d: the example differs from inject's output\ninject:\n%s\nexample:\n%s", i+1, got.String(), want.String())
		}
	}
}

// TestInjectIsIdempotent: injecting inject's output changes nothing, byte
// for byte, and says so.
func TestInjectIsIdempotent(t *testing.T) {
	for _, native := range []bool{true, false} {
		o := options()
		o.NativeSidecar = native
		var once, twice bytes.Buffer
		if _, err := Manifests(strings.NewReader(app), &once, o); err != nil {
			t.Fatal(err)
		}
		res, err := Manifests(bytes.NewReader(once.Bytes()), &twice, o)
		if err != nil {
			t.Fatalf("native=%v: injecting again: %v", native, err)
		}
		if once.String() != twice.String() {
			t.Errorf("native=%v: second inject changed the output:\n%s\n---- vs ----\n%s", native, once.String(), twice.String())
		}
		if len(res.Workloads) != 0 || !slices.Equal(res.Unchanged, []string{"Deployment/checkout"}) || len(res.Services) != 0 {
			t.Errorf("native=%v: second inject result = %+v, want the workload reported unchanged", native, res)
		}
	}
}

// TestServiceByName: how the Service's targetPort ends up for each way an
// app can start, and that inject switches it only when every pod, old or
// new, resolves the name to a port something listens on.
func TestServiceByName(t *testing.T) {
	tests := []struct {
		name       string
		service    string // the http port's targetPort
		appPort    string // the app's container port
		wantTarget string
		wantEnvoy  string // name of Envoy's port
		wantNote   bool
	}{
		{"named targetPort already", "http", "{name: http, containerPort: 8080}", "http", "http", false},
		{"number, app port named", "8080", "{name: web, containerPort: 8080}", "web", "web", false},
		{"number, app port unnamed: stays for this rollout", "8080", "{containerPort: 8080}", "8080", "sp-15001", true},
		{"number, app port undeclared", "8080", "{containerPort: 9100}", "8080", "sp-15001", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := strings.Replace(app, "{name: http, port: 80, targetPort: 8080}", "{name: http, port: 80, targetPort: "+tt.service+"}", 1)
			input = strings.Replace(input, "{name: http, containerPort: 8080}", tt.appPort, 1)
			var out bytes.Buffer
			res, err := Manifests(strings.NewReader(input), &out, options())
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, out.Bytes())
			if got := objs[0].(*corev1.Service).Spec.Ports[0].TargetPort.String(); got != tt.wantTarget {
				t.Errorf("targetPort = %s, want %s", got, tt.wantTarget)
			}
			if got := envoyOf(t, objs[2].(*appsv1.Deployment).Spec.Template.Spec).Ports[0].Name; got != tt.wantEnvoy {
				t.Errorf("Envoy port name = %q, want %q", got, tt.wantEnvoy)
			}
			if (len(res.Notes) > 0) != tt.wantNote {
				t.Errorf("notes = %q, want a note: %v", res.Notes, tt.wantNote)
			}
			if !tt.wantNote {
				return
			}
			// Once rolled out, inject again points the Service at the sidecar.
			var again bytes.Buffer
			res, err = Manifests(bytes.NewReader(out.Bytes()), &again, options())
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeAll(t, again.Bytes())[0].(*corev1.Service).Spec.Ports[0].TargetPort.String(); got != tt.wantEnvoy || len(res.Notes) > 0 {
				t.Errorf("second run: targetPort = %s, notes %q; want %s and no note", got, res.Notes, tt.wantEnvoy)
			}
		})
	}
}

// TestProbesKeepTheirPort: an app probe that named the moved port uses its
// number, so it still probes the app and not Envoy; other probes stay.
func TestProbesKeepTheirPort(t *testing.T) {
	input := strings.Replace(app, "        ports: [{name: http, containerPort: 8080}]", `        ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /healthz, port: http}}
        livenessProbe: {tcpSocket: {port: admin}}`, 1)
	_, objs := inject(t, input, options())
	appContainer := objs[2].(*appsv1.Deployment).Spec.Template.Spec.Containers[0]
	if got := appContainer.ReadinessProbe.HTTPGet.Port.String(); got != "8080" {
		t.Errorf("readiness probe port = %s, want 8080 (the name moved to Envoy)", got)
	}
	if got := appContainer.LivenessProbe.TCPSocket.Port.String(); got != "admin" {
		t.Errorf("liveness probe port = %s, want admin kept", got)
	}
	if got := appContainer.Ports[1]; got.Name != "admin" {
		t.Errorf("other port = %+v, want it kept", got)
	}
}

// TestUninjectReverses: uninject of inject's output gives back the app's
// pod template, and the Service keeps the name, which now means the app
// again in new pods. A Service left on the listen port by number (inject
// before named ports) is moved to the name.
func TestUninjectReverses(t *testing.T) {
	original := decodeAll(t, []byte(app))[2].(*appsv1.Deployment)
	for _, native := range []bool{true, false} {
		o := options()
		o.NativeSidecar = native
		var injected, removed bytes.Buffer
		if _, err := Manifests(strings.NewReader(app), &injected, o); err != nil {
			t.Fatal(err)
		}
		res, err := Remove(bytes.NewReader(injected.Bytes()), &removed, "checkout")
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeAll(t, removed.Bytes())
		if got := objs[2].(*appsv1.Deployment); !reflect.DeepEqual(got.Spec.Template, original.Spec.Template) {
			t.Errorf("native=%v: template after uninject = %+v, want the original %+v", native, got.Spec.Template, original.Spec.Template)
		}
		if got := objs[0].(*corev1.Service).Spec.Ports[0].TargetPort.String(); got != "http" || len(res.Services) != 0 {
			t.Errorf("native=%v: targetPort = %s (changed: %v), want http untouched", native, got, res.Services)
		}
	}
	oldStyle := strings.Replace(app, "targetPort: 8080}", "targetPort: 15001}", 1)
	var injected, removed bytes.Buffer
	o := options()
	if _, err := Manifests(strings.NewReader(strings.Replace(app, "ports: [{name: http, containerPort: 8080}]", "ports: [{containerPort: 8080}]", 1)), &injected, o); err != nil {
		t.Fatal(err)
	}
	withOldService := strings.Replace(injected.String(), strings.SplitN(injected.String(), "---\n", 2)[0], strings.SplitN(oldStyle, "---\n", 2)[0], 1)
	res, err := Remove(strings.NewReader(withOldService), &removed, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, removed.Bytes())
	if got := objs[0].(*corev1.Service).Spec.Ports[0].TargetPort.String(); got != "sp-15001" || len(res.Services) != 1 {
		t.Errorf("old-style Service: targetPort = %s, want sp-15001", got)
	}
	if got := objs[2].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Ports[0]; got.Name != "sp-15001" || got.ContainerPort != 8080 {
		t.Errorf("app port after uninject = %+v, want sp-15001 on 8080", got)
	}
}

// exampleDrainToken is the drain token written in
// deploy/examples/entrance-sidecar.yaml (its comment says to replace it).
const exampleDrainToken = "REPLACE-WITH-RANDOM-0123456789"

// TestDrainTokenIsRandomAndMatches: without a token given, each injection
// draws its own, and the preStop hook sends the one the bootstrap requires.
func TestDrainTokenIsRandomAndMatches(t *testing.T) {
	tokens := map[string]bool{}
	for range 2 {
		o := options()
		o.DrainToken = ""
		_, objs := inject(t, app, o)
		var spec corev1.PodSpec
		for _, obj := range objs {
			if d, ok := obj.(*appsv1.Deployment); ok {
				spec = d.Spec.Template.Spec
			}
		}
		envoy := envoyOf(t, spec)
		headers := envoy.Lifecycle.PreStop.HTTPGet.HTTPHeaders
		if len(headers) != 1 || headers[0].Name != bootstrap.DrainTokenHeader || len(headers[0].Value) < bootstrap.MinDrainTokenLength {
			t.Fatalf("preStop headers %+v, want one %s of at least %d characters", headers, bootstrap.DrainTokenHeader, bootstrap.MinDrainTokenLength)
		}
		if !slices.Contains(spec.InitContainers[0].Args, "--drain-token="+headers[0].Value) {
			t.Fatalf("bootstrap args %v lack the preStop's token %q", spec.InitContainers[0].Args, headers[0].Value)
		}
		tokens[headers[0].Value] = true
	}
	if len(tokens) != 2 {
		t.Fatal("two injections drew the same drain token")
	}
}
