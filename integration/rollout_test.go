package integration

// The parts of a cluster a rollout needs that kube-apiserver and
// kube-controller-manager do not provide: a kubelet that runs each pod's
// app and, when injected, its real Envoy sidecar, and a client-side balancer
// that follows the EndpointSlices the way kube-proxy does.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/internal/kubeauth"
)

// testKubelet plays the kubelet for every pod of one namespace: it binds a
// new pod to a node, gives it an IP of its own on lo (inside the test's
// network namespace), starts its app and, for an injected pod, runs the
// pod's own bootstrap init container arguments with `shadowplane bootstrap`
// and its sidecar's arguments with the real Envoy; it marks the pod Ready
// when the pod's readiness probe (Envoy's GET /ready on the health port)
// answers 200. A deleted pod is terminated in the order the kubelet uses:
// app containers first (after their grace), then a native sidecar, whose
// preStop (GET /drain) runs first; an ordinary sidecar's preStop runs at once,
// beside the app's grace.
//
// The pods share one network namespace, so two things differ from a real
// node: Envoy binds the pod IP (bootstrap --listen-address) instead of every
// address, and each app's loopback port, where Envoy forwards, is a port of
// its own instead of 8080.
type testKubelet struct {
	t         *testing.T
	kube      *harness.Kube
	cp        *harness.ControlPlane
	namespace string
	sa        string
	dir       string
	appPort   int
	appGrace  time.Duration
	envoy     string
	sp        string
	nextIP    *atomic.Int32
	pods      sync.Map // uid → *testPod
	wg        sync.WaitGroup
}

type testPod struct {
	name    string
	ip      string
	app     *podApp
	sidecar *harness.Envoy
	native  bool
	health  string // ip:port of the health listener
	drain   string // preStop path
	// drainHeaders are the preStop's httpHeaders (the drain token).
	drainHeaders []corev1.HTTPHeader
	once         sync.Once
}

// podApp is the application container: it answers on podIP:appPort (what a
// Service reaches without a sidecar) and on a loopback port (where the
// pod's Envoy forwards), saying in header arrivedOnHeader which one.
type podApp struct {
	servers  []*http.Server
	loopback int
}

const arrivedOnHeader = "X-Arrived-On"

func startPodApp(name, ip string, port int) (*podApp, error) {
	a := &podApp{}
	for _, addr := range []string{net.JoinHostPort(ip, strconv.Itoa(port)), "127.0.0.1:0"} {
		handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(arrivedOnHeader, addr)
			fmt.Fprintln(w, name)
		})
		l, err := net.Listen("tcp", addr)
		if err != nil {
			a.stop()
			return nil, fmt.Errorf("app of %s: %w", name, err)
		}
		if strings.HasPrefix(addr, "127.") {
			a.loopback = l.Addr().(*net.TCPAddr).Port
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		a.servers = append(a.servers, srv)
	}
	return a, nil
}

// stop ends the app the way a process exit does: listeners and every
// connection close at once.
func (a *podApp) stop() {
	for _, s := range a.servers {
		_ = s.Close()
	}
}

// run watches the namespace's pods until ctx ends, then stops every pod's
// processes.
func (k *testKubelet) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(k.kube.Client, 0, informers.WithNamespace(k.namespace))
	handle := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		value, loaded := k.pods.LoadOrStore(pod.UID, &testPod{name: pod.Name})
		p := value.(*testPod)
		if !loaded {
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				if err := k.start(ctx, pod, p); err != nil && ctx.Err() == nil {
					k.t.Errorf("kubelet: start %s: %v", pod.Name, err)
				}
			}()
		}
		if pod.DeletionTimestamp != nil {
			p.once.Do(func() {
				k.wg.Add(1)
				go func() {
					defer k.wg.Done()
					k.terminate(ctx, pod, p)
				}()
			})
		}
	}
	_, _ = factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	k.wg.Wait()
	k.pods.Range(func(_, value any) bool {
		p := value.(*testPod)
		if p.app != nil {
			p.app.stop()
		}
		if p.sidecar != nil {
			p.sidecar.Stop()
		}
		return true
	})
}

func (k *testKubelet) start(ctx context.Context, pod *corev1.Pod, p *testPod) error {
	pods := k.kube.Client.CoreV1().Pods(k.namespace)
	if pod.Spec.NodeName == "" {
		// Bound pods are deleted gracefully (unbound ones at once), so the
		// EndpointSlice controller sees them terminating, as in a cluster.
		if err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			Target:     corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
	}
	p.ip = fmt.Sprintf("198.18.1.%d", k.nextIP.Add(1))
	if out, err := exec.Command("ip", "addr", "add", p.ip+"/32", "dev", "lo").CombinedOutput(); err != nil {
		return fmt.Errorf("ip addr add %s: %v: %s", p.ip, err, out)
	}
	app, err := startPodApp(pod.Name, p.ip, k.appPort)
	if err != nil {
		return err
	}
	p.app = app
	if err := k.startSidecar(ctx, pod, p); err != nil {
		return err
	}
	now := metav1.Now()
	ready := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	for {
		current, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		if current.DeletionTimestamp != nil {
			return nil
		}
		current.Status.Phase = corev1.PodRunning
		current.Status.PodIP, current.Status.PodIPs = p.ip, []corev1.PodIP{{IP: p.ip}}
		current.Status.HostIP, current.Status.StartTime = "198.18.0.1", &now
		current.Status.Conditions = []corev1.PodCondition{ready(corev1.PodScheduled), ready(corev1.PodInitialized), ready(corev1.ContainersReady), ready(corev1.PodReady)}
		_, err = pods.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
}

// startSidecar runs an injected pod's bootstrap and Envoy, and waits for its
// readiness probe; a pod without the sidecar needs nothing.
func (k *testKubelet) startSidecar(ctx context.Context, pod *corev1.Pod, p *testPod) error {
	var bootstrapC, envoyC *corev1.Container
	for i, c := range pod.Spec.InitContainers {
		switch c.Name {
		case inject.InitContainer:
			bootstrapC = &pod.Spec.InitContainers[i]
		case inject.EnvoyContainer:
			envoyC, p.native = &pod.Spec.InitContainers[i], true
		}
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == inject.EnvoyContainer {
			envoyC = &pod.Spec.Containers[i]
		}
	}
	if envoyC == nil {
		return nil
	}
	if bootstrapC == nil {
		return fmt.Errorf("pod has %s but no %s", inject.EnvoyContainer, inject.InitContainer)
	}
	dir := filepath.Join(k.dir, pod.Name)
	tokenDir := filepath.Join(dir, "token")
	if err := os.MkdirAll(tokenDir, 0o755); err != nil {
		return err
	}
	token, err := k.kube.MintToken(ctx, k.namespace, pod.Spec.ServiceAccountName, pod.Name, string(pod.UID), kubeauth.DefaultAudience)
	if err != nil {
		return err
	}
	if err := harness.WriteProjected(tokenDir, map[string][]byte{"token": []byte(token)}); err != nil {
		return err
	}
	adminPort, err := harness.FreePort()
	if err != nil {
		return err
	}
	// The pod's own bootstrap arguments, with the paths and addresses of
	// this machine instead of the pod's mounts and cluster DNS.
	config := filepath.Join(dir, "envoy.yaml")
	var args []string
	for _, arg := range bootstrapC.Args {
		name, value, _ := strings.Cut(arg, "=")
		switch name {
		case "--output":
			value = config
		case "--xds-address":
			value = k.cp.XDSAddr.String()
		case "--xds-server-name":
			value = harness.XDSServerName
		case "--ca-file":
			value = k.cp.Certs.CAFile
		case "--token-file":
			value = filepath.Join(tokenDir, "token")
		case "--ports":
			listen, _, _ := strings.Cut(value, ":")
			value = listen + ":" + strconv.Itoa(p.app.loopback)
		}
		if value != "" {
			arg = name + "=" + value
		}
		args = append(args, arg)
	}
	args = append(args, "--listen-address="+p.ip, "--admin-port="+strconv.Itoa(int(adminPort)), "--sds-dir="+dir)
	cmd := exec.CommandContext(ctx, k.sp, args...)
	cmd.Env = append(os.Environ(), "POD_NAME="+pod.Name, "POD_NAMESPACE="+pod.Namespace)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bootstrap init container %q: %v: %s", args, err, out)
	}
	envoyArgs := append([]string(nil), envoyC.Args...)
	for i := range envoyArgs {
		if envoyArgs[i] == "-c" && i+1 < len(envoyArgs) {
			envoyArgs[i+1] = config
		}
	}
	if p.sidecar, err = harness.StartEnvoyArgs(ctx, k.envoy, envoyArgs, adminPort, dir); err != nil {
		return err
	}
	probe := envoyC.ReadinessProbe.HTTPGet
	p.health = net.JoinHostPort(p.ip, probe.Port.String())
	p.drain = envoyC.Lifecycle.PreStop.HTTPGet.Path
	p.drainHeaders = envoyC.Lifecycle.PreStop.HTTPGet.HTTPHeaders
	client := &http.Client{Timeout: time.Second}
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		resp, err := client.Get("http://" + p.health + probe.Path)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return err
	}
	// Another pod reaches the health port as the kubelet does; without the
	// preStop's token it cannot drain the sidecar.
	for _, token := range []string{"", "not-the-token-0123456789"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.health+p.drain, nil)
		if token != "" {
			req.Header.Set(bootstrap.DrainTokenHeader, token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("drain without the token: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("GET %s with token %q: HTTP %d, want 404", p.drain, token, resp.StatusCode)
		}
	}
	if log := p.sidecar.Log(); drainLogged.MatchString(log) {
		return fmt.Errorf("a drain request without the token drained the sidecar:\n%s", p.sidecar.LogTail(20))
	}
	return nil
}

// drainLogged matches the health listener's log line of a drain it asked
// the admin for (not the script's own text, which Envoy's debug log shows).
var drainLogged = regexp.MustCompile(`graceful drain requested: \d`)

// terminate stops a deleted pod in the kubelet's order, then removes it.
func (k *testKubelet) terminate(ctx context.Context, pod *corev1.Pod, p *testPod) {
	// Wait until start has set up what there is to stop.
	_ = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) { return p.app != nil, nil })
	preStop := func() {
		if p.sidecar == nil {
			return
		}
		started := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.health+p.drain, nil)
		for _, h := range p.drainHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			k.t.Errorf("kubelet: preStop of %s: %v", pod.Name, err)
			return
		}
		resp.Body.Close()
		// The hook held the termination for the drain delay, and Envoy's
		// admin started the graceful drain (the health listener's Lua
		// filter logs the admin's answer).
		if held := time.Since(started); resp.StatusCode != http.StatusOK || held < time.Second {
			k.t.Errorf("kubelet: preStop of %s: HTTP %d after %v, want 200 after the drain delay", pod.Name, resp.StatusCode, held)
		}
		if log := p.sidecar.Log(); !strings.Contains(log, "graceful drain requested: 200") {
			k.t.Errorf("kubelet: preStop of %s: Envoy's admin did not start a drain:\n%s", pod.Name, p.sidecar.LogTail(20))
		}
	}
	if p.native {
		time.Sleep(k.appGrace)
		p.app.stop()
		preStop()
	} else {
		done := make(chan struct{})
		go func() { preStop(); close(done) }()
		time.Sleep(k.appGrace)
		<-done
		p.app.stop()
	}
	if p.sidecar != nil {
		p.sidecar.Stop()
	}
	zero := int64(0)
	_ = k.kube.Client.CoreV1().Pods(k.namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

// sliceBalancer follows a Service's EndpointSlices the way kube-proxy does:
// a request goes to a random ready endpoint (terminating but serving ones
// only when none is ready), on the port the slice gives for the Service's
// port name.
type sliceBalancer struct {
	portName string
	mu       sync.RWMutex
	slices   map[string]endpointSet
}

type endpointSet struct{ ready, serving []string }

func startSliceBalancer(ctx context.Context, kube *harness.Kube, namespace, service, portName string) (*sliceBalancer, error) {
	b := &sliceBalancer{portName: portName, slices: map[string]endpointSet{}}
	factory := informers.NewSharedInformerFactoryWithOptions(kube.Client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=" + service }))
	informer := factory.Discovery().V1().EndpointSlices().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.set(obj.(*discoveryv1.EndpointSlice)) },
		UpdateFunc: func(_, obj any) { b.set(obj.(*discoveryv1.EndpointSlice)) },
		DeleteFunc: func(obj any) {
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
				b.mu.Lock()
				delete(b.slices, s.Name)
				b.mu.Unlock()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return b, nil
}

func (b *sliceBalancer) set(s *discoveryv1.EndpointSlice) {
	var port int32
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == b.portName && p.Port != nil {
			port = *p.Port
		}
	}
	var set endpointSet
	for _, e := range s.Endpoints {
		if port == 0 || len(e.Addresses) == 0 {
			continue
		}
		addr := net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))
		switch {
		case e.Conditions.Ready == nil || *e.Conditions.Ready:
			set.ready = append(set.ready, addr)
		case e.Conditions.Serving != nil && *e.Conditions.Serving:
			set.serving = append(set.serving, addr)
		}
	}
	b.mu.Lock()
	b.slices[s.Name] = set
	b.mu.Unlock()
}

// pick returns an endpoint address, "" when there is none.
func (b *sliceBalancer) pick() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var ready, serving []string
	for _, set := range b.slices {
		ready = append(ready, set.ready...)
		serving = append(serving, set.serving...)
	}
	if len(ready) == 0 {
		ready = serving
	}
	if len(ready) == 0 {
		return ""
	}
	return ready[rand.IntN(len(ready))]
}

// ready returns the ready endpoints, sorted by nothing in particular.
func (b *sliceBalancer) ready() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	for _, set := range b.slices {
		out = append(out, set.ready...)
	}
	return out
}

// loadRun is the outcome of requests sent through the balancer.
type loadRun struct {
	sent, failed, viaEnvoy int
	firstFailure           string
}

// sendThroughBalancer sends rate requests a second through b until stop is
// closed, then waits for the answers.
func sendThroughBalancer(b *sliceBalancer, rate int, stop <-chan struct{}) loadRun {
	client := harness.NewKeepAliveClient(64)
	client.Timeout = 5 * time.Second
	var (
		mu  sync.Mutex
		run loadRun
		wg  sync.WaitGroup
	)
	record := func(failure string, viaEnvoy bool) {
		mu.Lock()
		defer mu.Unlock()
		run.sent++
		if viaEnvoy {
			run.viaEnvoy++
		}
		if failure != "" {
			run.failed++
			if run.firstFailure == "" {
				run.firstFailure = failure
			}
		}
	}
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			wg.Wait()
			return run
		case <-ticker.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := b.pick()
			if addr == "" {
				record("no ready endpoint", false)
				return
			}
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				record(err.Error(), false)
				return
			}
			resp.Body.Close()
			failure := ""
			if resp.StatusCode != http.StatusOK {
				failure = fmt.Sprintf("%s: HTTP %d", addr, resp.StatusCode)
			}
			record(failure, strings.HasPrefix(resp.Header.Get(arrivedOnHeader), "127."))
		}()
	}
}
