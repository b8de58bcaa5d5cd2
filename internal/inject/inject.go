// Package inject adds a shadowplane Envoy sidecar to Kubernetes workload
// manifests, like `istioctl kube-inject` but without a mesh: an init
// container renders the bootstrap with `shadowplane bootstrap`, an Envoy
// container serves it, and the fronted Service's targetPort is swapped from
// the app's port to Envoy's listen port. By default the sidecar talks to the
// control plane over TLS, trusting the CA from ConfigMap shadowplane-ca and
// proving who it is with a projected ServiceAccount token.
package inject

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// Names of what the injection adds; finding EnvoyContainer means a workload
// is injected already.
const (
	InitContainer  = "shadowplane-bootstrap"
	EnvoyContainer = "shadowplane-envoy"
	ConfigVolume   = "shadowplane-envoy-config"
	TokenVolume    = "shadowplane-token"
	CAVolume       = "shadowplane-ca"
	// SidecarLabel marks the pods the control plane's NetworkPolicy admits
	// to xDS.
	SidecarLabel = "shadowplane.io/sidecar"
	// TokenExpirationSeconds is the projected token's lifetime; the kubelet
	// refreshes it at 80 % of that.
	TokenExpirationSeconds = 3600
	// configDir holds the bootstrap and its SDS files (an emptyDir). It is
	// a sibling of the CA mount, not its parent: a mount inside a read-only
	// mount could not be created.
	configDir = "/etc/shadowplane/envoy"
	// sidecarUID runs both added containers: unprivileged, as in the
	// distroless "nonroot" image.
	sidecarUID = 65532
)

// Options say what to inject.
type Options struct {
	Service          string // the Service the workload's pods sit behind
	Ports            []nodemeta.PortPair
	XDSAddress       string
	Delta            bool
	ShadowplaneImage string
	EnvoyImage       string
	// XDSServerName is the DNS name the control plane's certificate must
	// carry; default: the host of XDSAddress.
	XDSServerName string
	// Insecure renders a plain-text bootstrap without token or CA, for a
	// control plane run with --insecure-xds.
	Insecure bool
	// CABundle, when set, is the PEM CA bundle (one CA, or the old and the
	// new one during a rotation) published as ConfigMap shadowplane-ca in
	// every namespace of an injected workload.
	CABundle []byte
}

// Result reports what Manifests changed.
type Result struct {
	Workloads    []string // kind/name of injected workloads
	Services     []string // Services whose targetPort was swapped
	CAConfigMaps []string // namespace/name of the published CA ConfigMaps ("" namespace: kubectl's current one)
}

// Manifests reads YAML or JSON documents, injects every Deployment,
// StatefulSet, DaemonSet and Pod, swaps the targetPort of the Service named
// o.Service, and writes all documents back as YAML (other kinds unchanged).
// With o.CABundle, the CA ConfigMaps come first, so the pods find them.
func Manifests(in io.Reader, out io.Writer, o Options) (Result, error) {
	var res Result
	if err := o.complete(); err != nil {
		return res, err
	}
	objects, err := decode(in)
	if err != nil {
		return res, err
	}
	var namespaces []string
	for i, obj := range objects {
		ns, err := injectObject(obj, o, &res)
		if err != nil {
			return res, fmt.Errorf("document %d: %w", i+1, err)
		}
		if ns != nil && !slices.Contains(namespaces, *ns) {
			namespaces = append(namespaces, *ns)
		}
	}
	if o.CABundle != nil {
		objects = publishCA(objects, namespaces, o.CABundle, &res)
	}
	encoder := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true})
	for i, obj := range objects {
		if i > 0 {
			if _, err := io.WriteString(out, "---\n"); err != nil {
				return res, err
			}
		}
		if err := encoder.Encode(obj, out); err != nil {
			return res, fmt.Errorf("encode %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
	}
	return res, nil
}

// complete checks the options and fills the server name, so a bad value
// fails here and not in a crash-looping init container.
func (o *Options) complete() error {
	if o.Service == "" || len(o.Ports) == 0 || o.XDSAddress == "" {
		return errors.New("service, ports and xds address are required")
	}
	if err := nodemeta.ValidateService(o.Service); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := nodemeta.ValidatePorts(o.Ports); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	if o.Insecure {
		if o.CABundle != nil || o.XDSServerName != "" {
			return errors.New("a plain-text (insecure) sidecar uses no CA and no server name")
		}
		return nil
	}
	if o.XDSServerName == "" {
		host, _, err := net.SplitHostPort(o.XDSAddress)
		if err != nil {
			return fmt.Errorf("xds address %q: want HOST:PORT", o.XDSAddress)
		}
		if net.ParseIP(host) != nil {
			return fmt.Errorf("xds address %q is an IP address: give the xds server name, the DNS name in the control plane's certificate", o.XDSAddress)
		}
		o.XDSServerName = host
	}
	if o.CABundle != nil {
		return checkCABundle(o.CABundle)
	}
	return nil
}

// checkCABundle accepts PEM CA certificates only: the bundle is published
// in a ConfigMap, readable by the whole namespace, so a private key in it
// (ca.key given by mistake, or a combined file) is refused.
func checkCABundle(data []byte) error {
	cas := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("CA file: holds a %q block; it may hold CA certificates only (it is published in a ConfigMap)", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
		if !cert.IsCA {
			return fmt.Errorf("CA file: certificate %q is not a CA", cert.Subject.CommonName)
		}
		cas++
	}
	if cas == 0 {
		return errors.New("CA file: no PEM certificate in it")
	}
	return nil
}

func decode(in io.Reader) ([]runtime.Object, error) {
	reader := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var objects []runtime.Object
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := reader.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			doc--
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		objects = append(objects, obj)
	}
}

// injectObject injects a workload and returns its namespace, or swaps a
// Service's targetPort (and returns nil).
func injectObject(obj runtime.Object, o Options, res *Result) (*string, error) {
	var meta *metav1.ObjectMeta
	var pod *corev1.PodTemplateSpec
	var kind string
	switch w := obj.(type) {
	case *appsv1.Deployment:
		meta, pod, kind = &w.ObjectMeta, &w.Spec.Template, "Deployment"
	case *appsv1.StatefulSet:
		meta, pod, kind = &w.ObjectMeta, &w.Spec.Template, "StatefulSet"
	case *appsv1.DaemonSet:
		meta, pod, kind = &w.ObjectMeta, &w.Spec.Template, "DaemonSet"
	case *corev1.Pod:
		// A bare Pod is its own template.
		template := corev1.PodTemplateSpec{ObjectMeta: w.ObjectMeta, Spec: w.Spec}
		if err := injectPod(&template, "Pod/"+w.Name, o, res); err != nil {
			return nil, err
		}
		w.ObjectMeta, w.Spec = template.ObjectMeta, template.Spec
		return &w.Namespace, nil
	case *corev1.Service:
		if w.Name == o.Service {
			return nil, swapTargetPorts(w, o, res)
		}
		return nil, nil
	default:
		return nil, nil
	}
	if err := injectPod(pod, kind+"/"+meta.Name, o, res); err != nil {
		return nil, err
	}
	return &meta.Namespace, nil
}

// swapTargetPorts points every Service port that targeted an app port at the
// Envoy listen port forwarding to it.
func swapTargetPorts(svc *corev1.Service, o Options, res *Result) error {
	swapped := false
	for i, p := range svc.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.String {
			continue // a named port: the pod's port names decide; see docs
		}
		if target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, pair := range o.Ports {
			if uint32(target.IntVal) == pair.Listen {
				swapped = true // already points at the sidecar
			}
			if uint32(target.IntVal) == pair.App {
				svc.Spec.Ports[i].TargetPort = intstr.FromInt32(int32(pair.Listen))
				swapped = true
			}
		}
	}
	if !swapped {
		return fmt.Errorf("Service %s: no port targets an app port of --ports %s; set its targetPort to the listen port by hand", svc.Name, nodemeta.FormatPorts(o.Ports))
	}
	res.Services = append(res.Services, "Service/"+svc.Name)
	return nil
}

func injectPod(pod *corev1.PodTemplateSpec, name string, o Options, res *Result) error {
	spec := &pod.Spec
	if err := checkFree(spec, name, o); err != nil {
		return err
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[SidecarLabel] = "true"

	configMount := corev1.VolumeMount{Name: ConfigVolume, MountPath: configDir}
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name:         ConfigVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}},
	})
	envoyMounts := []corev1.VolumeMount{{Name: ConfigVolume, MountPath: configDir, ReadOnly: true}}
	if !o.Insecure {
		spec.Volumes = append(spec.Volumes, identityVolumes()...)
		envoyMounts = append(envoyMounts,
			corev1.VolumeMount{Name: TokenVolume, MountPath: path.Dir(bootstrap.DefaultTokenFile), ReadOnly: true},
			corev1.VolumeMount{Name: CAVolume, MountPath: path.Dir(bootstrap.DefaultCAFile), ReadOnly: true})
	}
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name:  InitContainer,
		Image: o.ShadowplaneImage,
		Args:  bootstrapArgs(o),
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		VolumeMounts:    []corev1.VolumeMount{configMount},
		SecurityContext: restricted(),
	})
	var ports []corev1.ContainerPort
	for _, pair := range o.Ports {
		ports = append(ports, corev1.ContainerPort{Name: "sp-" + strconv.Itoa(int(pair.Listen)), ContainerPort: int32(pair.Listen), Protocol: corev1.ProtocolTCP})
	}
	spec.Containers = append(spec.Containers, corev1.Container{
		Name:  EnvoyContainer,
		Image: o.EnvoyImage,
		Args:  []string{"-c", configDir + "/envoy.yaml", "--drain-time-s", "20"},
		Ports: ports,
		// Envoy's listeners exist only once it has its config from the
		// control plane (the admin /ready stays on loopback, out of the
		// kubelet's reach), so an open listen port means ready.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
				Port: intstr.FromInt32(int32(o.Ports[0].Listen)),
			}},
			PeriodSeconds: 2,
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		VolumeMounts:    envoyMounts,
		SecurityContext: restricted(),
		// Envoy exits at once on SIGTERM; waiting first lets the pod leave
		// the Service's endpoints before the sidecar stops taking traffic.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}},
	})
	res.Workloads = append(res.Workloads, name)
	return nil
}

// checkFree refuses a pod that is injected already or whose containers or
// volumes would clash with the sidecar's, so injecting twice never stacks
// sidecars.
func checkFree(spec *corev1.PodSpec, name string, o Options) error {
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == EnvoyContainer || c.Name == InitContainer {
			return fmt.Errorf("%s already has the %s container", name, c.Name)
		}
		for _, p := range c.Ports {
			for _, pair := range o.Ports {
				if uint32(p.ContainerPort) == pair.Listen {
					return fmt.Errorf("%s: container %s already uses port %d, the sidecar's listen port", name, c.Name, pair.Listen)
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		if slices.Contains([]string{ConfigVolume, TokenVolume, CAVolume}, v.Name) {
			return fmt.Errorf("%s already has a volume named %s", name, v.Name)
		}
	}
	return nil
}

func bootstrapArgs(o Options) []string {
	args := []string{
		"bootstrap",
		"--service=" + o.Service,
		"--ports=" + nodemeta.FormatPorts(o.Ports),
		"--xds-address=" + o.XDSAddress,
		"--output=" + configDir + "/envoy.yaml",
	}
	if o.Insecure {
		args = append(args, "--insecure")
	} else {
		// The paths are those of the mounts identityVolumes adds; the SDS
		// files go next to the bootstrap.
		args = append(args,
			"--xds-server-name="+o.XDSServerName,
			"--ca-file="+bootstrap.DefaultCAFile,
			"--token-file="+bootstrap.DefaultTokenFile)
	}
	if o.Delta {
		args = append(args, "--delta")
	}
	return args
}

// identityVolumes are what a secure sidecar reads: a ServiceAccount token
// bound to the pod, for the control plane's audience only (so it is worth
// nothing to any other service), refreshed by the kubelet; and the CA that
// signs the control plane's certificate.
func identityVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          bootstrap.TokenAudience,
				ExpirationSeconds: ptr(int64(TokenExpirationSeconds)),
				Path:              path.Base(bootstrap.DefaultTokenFile),
			}}},
		}}},
		{Name: CAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: certs.CAConfigMapName},
			Items:                []corev1.KeyToPath{{Key: certs.KeyCACert, Path: path.Base(bootstrap.DefaultCAFile)}},
		}}},
	}
}

// restricted is the securityContext of both added containers (the
// Kubernetes "restricted" profile): Envoy binds ports above 1024, writes no
// file, and needs no capability.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		RunAsNonRoot:             ptr(true),
		RunAsUser:                ptr(int64(sidecarUID)),
		RunAsGroup:               ptr(int64(sidecarUID)),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// publishCA sets the CA bundle in the shadowplane-ca ConfigMap of each
// namespace: one already in the input is updated in place (so injecting
// output again never duplicates it), the others are added just before the
// first workload (after any Namespace they belong in).
func publishCA(objects []runtime.Object, namespaces []string, bundle []byte, res *Result) []runtime.Object {
	var added []runtime.Object
	for _, ns := range namespaces {
		var cm *corev1.ConfigMap
		for _, obj := range objects {
			if c, ok := obj.(*corev1.ConfigMap); ok && c.Name == certs.CAConfigMapName && c.Namespace == ns {
				cm = c
			}
		}
		if cm == nil {
			cm = &corev1.ConfigMap{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: certs.CAConfigMapName, Namespace: ns,
					Labels: map[string]string{"app.kubernetes.io/name": "shadowplane", "app.kubernetes.io/component": "xds-ca"}},
			}
			added = append(added, cm)
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[certs.KeyCACert] = string(bundle)
		res.CAConfigMaps = append(res.CAConfigMaps, ns+"/"+certs.CAConfigMapName)
	}
	if len(added) == 0 {
		return objects
	}
	// A namespace in the list means a workload is in objects.
	return slices.Insert(objects, slices.IndexFunc(objects, isWorkload), added...)
}

func isWorkload(obj runtime.Object) bool {
	switch obj.(type) {
	case *appsv1.Deployment, *appsv1.StatefulSet, *appsv1.DaemonSet, *corev1.Pod:
		return true
	}
	return false
}

func ptr[T any](v T) *T { return &v }
