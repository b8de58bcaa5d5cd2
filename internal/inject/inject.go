// Package inject adds a shadowplane Envoy sidecar to Kubernetes workload
// manifests, like `istioctl kube-inject` but without a mesh: an init
// container renders the bootstrap with `shadowplane bootstrap`, an Envoy
// container serves it, and the fronted Service's targetPort is swapped from
// the app's port to Envoy's listen port.
package inject

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/shadowplane/shadowplane/nodemeta"
)

// Names of what the injection adds; finding EnvoyContainer means a workload
// is injected already.
const (
	InitContainer  = "shadowplane-bootstrap"
	EnvoyContainer = "shadowplane-envoy"
	ConfigVolume   = "shadowplane-envoy-config"
	configDir      = "/etc/shadowplane"
)

// Options say what to inject.
type Options struct {
	Service          string // the Service the workload's pods sit behind
	Ports            []nodemeta.PortPair
	XDSAddress       string
	Delta            bool
	ShadowplaneImage string
	EnvoyImage       string
}

// Result reports what Manifests changed.
type Result struct {
	Workloads []string // kind/name of injected workloads
	Services  []string // Services whose targetPort was swapped
}

// Manifests reads YAML or JSON documents, injects every Deployment,
// StatefulSet, DaemonSet and Pod, swaps the targetPort of the Service named
// o.Service, and writes all documents back as YAML (other kinds unchanged).
func Manifests(in io.Reader, out io.Writer, o Options) (Result, error) {
	var res Result
	if o.Service == "" || len(o.Ports) == 0 || o.XDSAddress == "" {
		return res, errors.New("service, ports and xds address are required")
	}
	// The sidecars' bootstrap would refuse these; say so now, not in a
	// crash-looping init container.
	if err := nodemeta.ValidateService(o.Service); err != nil {
		return res, fmt.Errorf("service: %w", err)
	}
	if err := nodemeta.ValidatePorts(o.Ports); err != nil {
		return res, fmt.Errorf("ports: %w", err)
	}
	reader := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	encoder := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true})
	first := true
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := reader.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			return res, fmt.Errorf("document %d: %w", doc, err)
		}
		if err := injectObject(obj, o, &res); err != nil {
			return res, fmt.Errorf("document %d: %w", doc, err)
		}
		if !first {
			if _, err := io.WriteString(out, "---\n"); err != nil {
				return res, err
			}
		}
		first = false
		if err := encoder.Encode(obj, out); err != nil {
			return res, fmt.Errorf("document %d: encode: %w", doc, err)
		}
	}
}

func injectObject(obj runtime.Object, o Options, res *Result) error {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return injectPod(&w.Spec.Template.Spec, "Deployment/"+w.Name, o, res)
	case *appsv1.StatefulSet:
		return injectPod(&w.Spec.Template.Spec, "StatefulSet/"+w.Name, o, res)
	case *appsv1.DaemonSet:
		return injectPod(&w.Spec.Template.Spec, "DaemonSet/"+w.Name, o, res)
	case *corev1.Pod:
		return injectPod(&w.Spec, "Pod/"+w.Name, o, res)
	case *corev1.Service:
		if w.Name == o.Service {
			return swapTargetPorts(w, o, res)
		}
	}
	return nil
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

func injectPod(spec *corev1.PodSpec, name string, o Options, res *Result) error {
	for _, c := range spec.Containers {
		if c.Name == EnvoyContainer {
			return fmt.Errorf("%s already has the %s container", name, EnvoyContainer)
		}
		for _, p := range c.Ports {
			for _, pair := range o.Ports {
				if uint32(p.ContainerPort) == pair.Listen {
					return fmt.Errorf("%s: container %s already uses port %d, the sidecar's listen port", name, c.Name, pair.Listen)
				}
			}
		}
	}
	args := []string{
		"bootstrap",
		"--service=" + o.Service,
		"--ports=" + nodemeta.FormatPorts(o.Ports),
		"--xds-address=" + o.XDSAddress,
		"--output=" + configDir + "/envoy.yaml",
	}
	if o.Delta {
		args = append(args, "--delta")
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name:         ConfigVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}},
	})
	restricted := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		RunAsNonRoot:             ptr(true),
		RunAsUser:                ptr(int64(65532)),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	spec.InitContainers = append(spec.InitContainers, corev1.Container{
		Name:  InitContainer,
		Image: o.ShadowplaneImage,
		Args:  args,
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		VolumeMounts:    []corev1.VolumeMount{{Name: ConfigVolume, MountPath: configDir}},
		SecurityContext: restricted,
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
		VolumeMounts:    []corev1.VolumeMount{{Name: ConfigVolume, MountPath: configDir, ReadOnly: true}},
		SecurityContext: restricted,
		// Envoy exits at once on SIGTERM; waiting first lets the pod leave
		// the Service's endpoints before the sidecar stops taking traffic.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}},
	})
	res.Workloads = append(res.Workloads, name)
	return nil
}

func ptr[T any](v T) *T { return &v }
