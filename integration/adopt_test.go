package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/internal/webhook"
)

// adoptApp is the workload the rollout tests adopt: three replicas, rolled
// one at a time with no pod unavailable, its Service reaching the app's
// port 8080 by number and the container port named http.
const adoptApp = `apiVersion: v1
kind: Service
metadata: {name: checkout, namespace: NS}
spec:
  selector: {app: checkout}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: NS}
spec:
  replicas: 3
  selector: {matchLabels: {app: checkout}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      serviceAccountName: checkout
      containers:
      - name: app
        image: checkout:1
        ports: [{name: http, containerPort: 8080}]
`

const (
	adoptRate     = 200 // requests a second during each rollout
	adoptReplicas = 3
)

// rolloutEnv is a cluster of our own for rollouts: its own kube-apiserver
// (kube-controller-manager's controllers would otherwise write
// EndpointSlices for the other tests' Services), kube-controller-manager
// with the Deployment, ReplicaSet and EndpointSlice controllers, a secure
// control plane, and a test kubelet per namespace.
type rolloutEnv struct {
	kube *harness.Kube
	cp   *harness.ControlPlane
	e    *sharedEnv
	dir  string
	ip   atomic.Int32
}

func startRolloutEnv(t *testing.T, ctx context.Context, namespaces ...string) *rolloutEnv {
	e := env(t)
	kcm := testtools.Require(t, "kube-controller-manager")
	if mode := os.Getenv("SHADOWPLANE_NETNS"); mode != "netns" && mode != "userns" {
		t.Fatalf("the rollout test gives each pod an address on lo, so it runs only in the private network namespace of hack/netns-exec (SHADOWPLANE_NETNS=%q)", mode)
	}
	dir := t.TempDir()
	kube, err := harness.StartKube(testtools.BinDir(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Stop() })
	proc := harness.StartProcessT(t, exec.Command(kcm,
		"--kubeconfig", kube.KubeconfigPath,
		"--controllers", "deployment-controller,replicaset-controller,endpointslice-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	), filepath.Join(dir, "kube-controller-manager.log"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log:\n%s", proc.LogTail(40))
		}
		proc.Stop()
	})
	// The node the test kubelet binds pods to: the EndpointSlice controller
	// skips pods whose node it cannot find.
	if _, err := kube.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := kube.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The admission webhooks too, registered with this API server, for
	// adoption by namespace label.
	webhookCfg, url := rolloutWebhookConfig(t, dir)
	registerWebhooks(t, ctx, kube, "shadowplane-rollout", url, namespaces[0])
	cp, err := harness.StartControlPlane(ctx, kube, harness.ControlPlaneOptions{Namespaces: namespaces, Logger: testLogger(t), Webhook: webhookCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	return &rolloutEnv{kube: kube, cp: cp, e: e, dir: dir}
}

// rolloutWebhookConfig serves the webhooks on 127.0.0.1 with a certificate
// from internal/certs, and returns the URL the configurations call.
func rolloutWebhookConfig(t *testing.T, dir string) (controlplane.WebhookConfig, string) {
	t.Helper()
	ca, err := certs.NewAuthority("shadowplane-rollout-webhook", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(nil, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.WebhookConfig{CertFile: filepath.Join(dir, "webhook.crt"), KeyFile: filepath.Join(dir, "webhook.key"),
		CAFile: filepath.Join(dir, "webhook-ca.crt"), ConfigurationName: "shadowplane-rollout",
		Inject: inject.Options{XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "sp:test", EnvoyImage: "envoy:test",
			NativeSidecar: true, DrainDelay: 2 * time.Second}}
	if err := certs.WriteFiles(serving, cfg.CertFile, cfg.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.CAFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	return cfg, "https://" + cfg.Address
}

// startKubelet runs a test kubelet for namespace until the test ends.
func (r *rolloutEnv) startKubelet(t *testing.T, namespace string) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &testKubelet{t: t, kube: r.kube, cp: r.cp, namespace: namespace, dir: filepath.Join(r.dir, namespace),
		appPort: 8080, appGrace: 2 * time.Second, envoy: r.e.envoy, sp: r.e.shadowplane, nextIP: &r.ip}
	done := make(chan struct{})
	go func() { k.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// apply creates or updates each Service and Deployment of manifests, in
// order, as kubectl apply does.
func (r *rolloutEnv) apply(t *testing.T, ctx context.Context, manifests string) {
	t.Helper()
	for _, doc := range strings.Split(manifests, "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			services := r.kube.Client.CoreV1().Services(o.Namespace)
			current, err := services.Get(ctx, o.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, err = services.Create(ctx, o, metav1.CreateOptions{})
			} else if err == nil {
				current.Spec.Ports = o.Spec.Ports
				_, err = services.Update(ctx, current, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatalf("apply Service: %v", err)
			}
		case *appsv1.Deployment:
			deployments := r.kube.Client.AppsV1().Deployments(o.Namespace)
			current, err := deployments.Get(ctx, o.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, err = deployments.Create(ctx, o, metav1.CreateOptions{})
			} else if err == nil {
				current.Spec = o.Spec
				_, err = deployments.Update(ctx, current, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatalf("apply Deployment: %v", err)
			}
		default:
			t.Fatalf("apply: unexpected %T", obj)
		}
	}
}

func (r *rolloutEnv) labelNamespace(t *testing.T, ctx context.Context, namespace, key, value string) {
	t.Helper()
	ns, err := r.kube.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels[key] = value
	if _, err := r.kube.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRolledOut waits until the Deployment's rollout is complete and every
// old pod is gone.
func (r *rolloutEnv) waitRolledOut(t *testing.T, ctx context.Context, namespace string) {
	t.Helper()
	err := harness.WaitUntil(ctx, 3*time.Minute, func() (bool, error) {
		d, err := r.kube.Client.AppsV1().Deployments(namespace).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != adoptReplicas || s.Replicas != adoptReplicas || s.AvailableReplicas != adoptReplicas {
			return false, nil
		}
		pods, err := r.kube.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == adoptReplicas, err
	})
	if err != nil {
		t.Fatalf("rollout in %s did not complete: %v", namespace, err)
	}
}

// rollout applies manifests under load through the balancer and returns
// what the requests met, from just before the apply until the rollout is
// done and the last old pod gone.
func (r *rolloutEnv) rollout(t *testing.T, ctx context.Context, b *sliceBalancer, namespace, manifests string) loadRun {
	t.Helper()
	stop := make(chan struct{})
	result := make(chan loadRun)
	go func() { result <- sendThroughBalancer(b, adoptRate, stop) }()
	time.Sleep(time.Second)
	started := time.Now()
	r.apply(t, ctx, manifests)
	r.waitRolledOut(t, ctx, namespace)
	t.Logf("%s: rolled out in %v", namespace, time.Since(started).Round(100*time.Millisecond))
	// Long enough for an EndpointSlice change without a rollout (a Service
	// edit) to reach the balancer within the window.
	time.Sleep(2 * time.Second)
	close(stop)
	return <-result
}

// waitEndpoints waits until the balancer has the given number of ready
// endpoints, all on port.
func waitEndpoints(t *testing.T, ctx context.Context, b *sliceBalancer, port string) {
	t.Helper()
	err := harness.WaitUntil(ctx, time.Minute, func() (bool, error) {
		ready := b.ready()
		if len(ready) != adoptReplicas {
			return false, nil
		}
		for _, addr := range ready {
			if !strings.HasSuffix(addr, ":"+port) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		b.mu.RLock()
		defer b.mu.RUnlock()
		t.Fatalf("endpoints %v, want %d on port %s: %v (slices: %+v)", b.ready(), adoptReplicas, port, err, b.slices)
	}
}

// shadowplaneCLI runs the shadowplane command with stdin and returns stdout.
func shadowplaneCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(env(t).shadowplane, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shadowplane %v: %v\n%s", args, err, stderr.String())
	}
	t.Logf("shadowplane %s: %s", args[0], strings.TrimSpace(stderr.String()))
	return stdout.String()
}

// TestAdoptRolloutZeroLoss adopts a Deployment and removes the sidecar
// again, each a real rolling update (kube-controller-manager's Deployment,
// ReplicaSet and EndpointSlice controllers, real Envoy sidecars), under 200
// requests/s through a balancer that follows the EndpointSlices: by
// namespace label through the webhook, with `shadowplane inject` and
// `uninject` (native sidecar, and ordinary container), no request fails. The
// same rollouts with the old numeric targetPort swap lose requests: old pods
// get the Envoy port, where nothing listens.
func TestAdoptRolloutZeroLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	byWebhook, named, classic, unnamed, numeric := "adopt-webhook", "adopt-named", "adopt-classic", "adopt-unnamed", "adopt-numeric"
	r := startRolloutEnv(t, ctx, byWebhook, named, classic, unnamed, numeric)
	injectArgs := []string{"inject", "-f", "-", "--service", "checkout", "--ports", "15001:8080", "--drain-delay", "2s"}

	results := map[string]loadRun{}
	for _, scenario := range []struct {
		namespace string
		prepare   func(plain string) string // the app as deployed first; nil: adoptApp
		inject    func(plain string) string
		// switchService, when set, is a second apply after the inject
		// rollout, which points the Service at the sidecar.
		switchService func(injected string) string
		uninject      func(injected string) string
	}{
		{
			// Adoption by label: the template asks for the sidecar by
			// annotation, the Service targets the app's port by name; the
			// namespace label plus a restart brings the sidecar in through
			// the mutating webhook, the pod label disabled takes it out.
			namespace: byWebhook,
			prepare: func(plain string) string {
				return strings.Replace(withTargetPort(t, plain, intstr.FromString("http")), "    metadata: {labels: {app: checkout}}",
					"    metadata: {labels: {app: checkout}, annotations: {shadowplane.io/service: checkout, shadowplane.io/ports: \"15001:8080\"}}", 1)
			},
			inject: func(plain string) string {
				r.labelNamespace(t, ctx, byWebhook, webhook.InjectLabel, "enabled")
				return strings.Replace(plain, "annotations: {", "annotations: {kubectl.kubernetes.io/restartedAt: adopt, ", 1)
			},
			uninject: func(injected string) string {
				return strings.Replace(injected, "labels: {app: checkout}, annotations", "labels: {app: checkout, shadowplane.io/inject: disabled}, annotations", 1)
			},
		},
		{
			namespace: named,
			inject:    func(plain string) string { return shadowplaneCLI(t, plain, injectArgs...) },
			uninject: func(injected string) string {
				return shadowplaneCLI(t, injected, "uninject", "-f", "-", "--service", "checkout")
			},
		},
		{
			// Envoy as an ordinary container (clusters before 1.29): its
			// preStop drain runs beside the app's grace.
			namespace: classic,
			inject: func(plain string) string {
				return shadowplaneCLI(t, plain, append(injectArgs, "--native-sidecar=false")...)
			},
			uninject: func(injected string) string {
				return shadowplaneCLI(t, injected, "uninject", "-f", "-", "--service", "checkout")
			},
		},
		{
			// The app's port has no name: inject leaves the Service on the
			// app for the rollout, and its second run, once every pod has
			// the sidecar, switches the Service to Envoy's port name.
			namespace: unnamed,
			prepare: func(plain string) string {
				return strings.Replace(plain, "{name: http, containerPort: 8080}", "{containerPort: 8080}", 1)
			},
			inject: func(plain string) string { return shadowplaneCLI(t, plain, injectArgs...) },
			switchService: func(injected string) string {
				return shadowplaneCLI(t, injected, injectArgs...)
			},
			uninject: func(injected string) string {
				return shadowplaneCLI(t, injected, "uninject", "-f", "-", "--service", "checkout")
			},
		},
		{
			// What inject did before named ports: the Service's targetPort
			// swapped to Envoy's port number in the same apply, and back.
			namespace: numeric,
			inject: func(plain string) string {
				return withTargetPort(t, shadowplaneCLI(t, plain, injectArgs...), intstr.FromInt32(15001))
			},
			uninject: func(string) string { return strings.ReplaceAll(adoptApp, "NS", numeric) },
		},
	} {
		ns := scenario.namespace
		r.startKubelet(t, ns)
		b, err := startSliceBalancer(ctx, r.kube, ns, "checkout", "http")
		if err != nil {
			t.Fatal(err)
		}
		plain := strings.ReplaceAll(adoptApp, "NS", ns)
		if scenario.prepare != nil {
			plain = scenario.prepare(plain)
		}
		r.apply(t, ctx, plain)
		r.waitRolledOut(t, ctx, ns)
		waitEndpoints(t, ctx, b, "8080")

		injected := scenario.inject(plain)
		results[ns+" inject"] = r.rollout(t, ctx, b, ns, injected)
		if scenario.switchService != nil {
			waitEndpoints(t, ctx, b, "8080")
			injected = scenario.switchService(injected)
			results[ns+" switch"] = r.rollout(t, ctx, b, ns, injected)
		}
		waitEndpoints(t, ctx, b, "15001")
		results[ns+" uninject"] = r.rollout(t, ctx, b, ns, scenario.uninject(injected))
		waitEndpoints(t, ctx, b, "8080")
	}

	lossless := []string{byWebhook + " inject", byWebhook + " uninject", named + " inject", named + " uninject",
		classic + " inject", classic + " uninject", unnamed + " inject", unnamed + " switch", unnamed + " uninject"}
	for _, name := range append(lossless, numeric+" inject", numeric+" uninject") {
		run := results[name]
		t.Logf("ROLLOUT %-22s sent %5d  failed %4d  via Envoy %5d  first failure: %s", name, run.sent, run.failed, run.viaEnvoy, run.firstFailure)
	}
	for _, name := range lossless {
		if run := results[name]; run.failed != 0 {
			t.Errorf("%s: %d of %d requests failed (first: %s), want 0", name, run.failed, run.sent, run.firstFailure)
		}
	}
	for _, name := range []string{byWebhook + " inject", named + " inject", classic + " inject"} {
		if run := results[name]; run.viaEnvoy == 0 {
			t.Errorf("%s: no request went through Envoy during the rollout", name)
		}
	}
	if run := results[numeric+" inject"]; run.failed == 0 {
		t.Errorf("the numeric targetPort swap lost no request: the test would not notice the loss it is meant to catch")
	}
}

// withTargetPort sets the targetPort of the checkout Service's port in
// manifests.
func withTargetPort(t *testing.T, manifests string, target intstr.IntOrString) string {
	t.Helper()
	docs := strings.Split(manifests, "\n---\n")
	for i, doc := range docs {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		svc.Spec.Ports[0].TargetPort = target
		var out bytes.Buffer
		if err := scheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion).Encode(svc, &out); err != nil {
			t.Fatal(err)
		}
		docs[i] = out.String()
	}
	return strings.Join(docs, "\n---\n")
}
