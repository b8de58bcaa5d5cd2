// Package harness starts the real parts shadowplane is tested against — a
// kube-apiserver with etcd, the Envoy binary, HTTP backends — and the
// control plane itself, for the integration tests, the benchmarks and
// `make demo`. Everything binds to 127.0.0.1, or (backends behind a
// Service) to the test address inside the private network namespace
// hack/netns-exec runs them in; child processes start through
// StartProcess and are stopped by their PID.
package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is a running kube-apiserver with its etcd.
type Kube struct {
	Config         *rest.Config
	Client         kubernetes.Interface
	KubeconfigPath string
	env            *envtest.Environment
	// apiserverArgv is the kube-apiserver command line, kept by
	// StopAPIServer; apiserver is the process StartAPIServer started.
	apiserverArgv []string
	apiserver     *Process
}

// StartKube starts kube-apiserver and etcd from binDir the way envtest does
// and writes an admin kubeconfig into dir.
func StartKube(binDir, dir string) (*Kube, error) {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools`", name, binDir)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Without an advertise address kube-apiserver picks the address of the
	// default route's interface; the tests' network namespace has neither.
	env.ControlPlane.GetAPIServer().Configure().Set("advertise-address", "127.0.0.1")
	// KUBEBUILDER_ASSETS would override our directory; we choose it here.
	os.Unsetenv("KUBEBUILDER_ASSETS")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	k := &Kube{Config: cfg, env: env}
	user, err := env.AddUser(envtest.User{Name: "shadowplane-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		k.Stop()
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		k.Stop()
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	k.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(k.KubeconfigPath, kubeconfig, 0o600); err != nil {
		k.Stop()
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	// Fast client for tests: no client-side throttling.
	fast := rest.CopyConfig(user.Config())
	fast.QPS, fast.Burst = 1000, 2000
	k.Config = fast
	if k.Client, err = kubernetes.NewForConfig(fast); err != nil {
		k.Stop()
		return nil, fmt.Errorf("client: %w", err)
	}
	return k, nil
}

// Stop stops the API server and etcd.
func (k *Kube) Stop() error {
	if k.env == nil {
		return nil
	}
	if k.apiserver != nil {
		k.apiserver.Stop()
	}
	return k.env.Stop()
}

// EnsureNamespace creates a namespace if it does not exist.
func (k *Kube) EnsureNamespace(ctx context.Context, name string) error {
	_, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ServicePort describes one port of a test Service: its name, port and the
// numeric target port (for a sidecar-fronted Service, the Envoy listen port).
type ServicePort struct {
	Name       string
	Port       int32
	TargetPort int32
}

// ApplyService creates or replaces a ClusterIP Service with the given ports.
func (k *Kube) ApplyService(ctx context.Context, namespace, name string, ports ...ServicePort) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}},
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Port: p.Port, TargetPort: intstr.FromInt32(p.TargetPort), Protocol: corev1.ProtocolTCP,
		})
	}
	existing, err := k.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = k.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	existing.Spec.Ports = svc.Spec.Ports
	_, err = k.Client.CoreV1().Services(namespace).Update(ctx, existing, metav1.UpdateOptions{})
	return err
}

// SliceEndpoint is one endpoint address of a test EndpointSlice.
type SliceEndpoint struct {
	Address string
	Ready   bool
}

// ApplyEndpointSlice creates or replaces the EndpointSlice "<service>-1" of a
// Service: there is no controller-manager, so tests write slices themselves.
func (k *Kube) ApplyEndpointSlice(ctx context.Context, namespace, service, portName string, port int32, endpoints ...SliceEndpoint) error {
	return k.ApplyNamedEndpointSlice(ctx, namespace, service, service+"-1", portName, port, endpoints...)
}

// ApplyNamedEndpointSlice creates or replaces the EndpointSlice name of a
// Service. A slice has one port set, so a second endpoint on the same
// address with another port needs a slice of its own.
func (k *Kube) ApplyNamedEndpointSlice(ctx context.Context, namespace, service, name, portName string, port int32, endpoints ...SliceEndpoint) error {
	proto := corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "shadowplane-tests"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	for _, e := range endpoints {
		ready := e.Ready
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.Address},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	api := k.Client.DiscoveryV1().EndpointSlices(namespace)
	existing, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, slice, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	existing.Endpoints, existing.Ports = slice.Endpoints, slice.Ports
	_, err = api.Update(ctx, existing, metav1.UpdateOptions{})
	return err
}

// PolicyLabel marks a ConfigMap as holding shadowplane policies.
const PolicyLabel = "shadowplane.io/policy"

// ApplyPolicyConfigMap creates or updates a labelled policy ConfigMap whose
// data key holds the given YAML. The control plane's leader patches its
// status annotation meanwhile, so an update that lost that race is retried,
// as kubectl edit would be.
func (k *Kube) ApplyPolicyConfigMap(ctx context.Context, namespace, name, key, yaml string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		return k.applyPolicyConfigMap(ctx, namespace, name, key, yaml)
	})
}

func (k *Kube) applyPolicyConfigMap(ctx context.Context, namespace, name, key, yaml string) error {
	api := k.Client.CoreV1().ConfigMaps(namespace)
	existing, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{PolicyLabel: "true"}},
			Data:       map[string]string{key: yaml},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if existing.Labels == nil {
		existing.Labels = map[string]string{}
	}
	existing.Labels[PolicyLabel] = "true"
	existing.Data = map[string]string{key: yaml}
	_, err = api.Update(ctx, existing, metav1.UpdateOptions{})
	return err
}
