package inject

import (
	"crypto/rand"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// PodChange says what Pod or Unpod did to one pod (template).
type PodChange struct {
	// Changed is false when there was nothing to do: Pod on a pod that has
	// the sidecar already, Unpod on one without it.
	Changed bool
	// PortNames maps each listen port to the name of Envoy's container
	// port: the app port's name, moved to Envoy, or "sp-<listen>" when the
	// app port had none. A Service whose targetPort is that name reaches
	// the app in pods without the sidecar and Envoy in pods with it, so a
	// rollout in either direction loses nothing.
	PortNames map[uint32]string
	// Moved lists the listen ports whose name came from the app's port
	// (old pods resolve that name to the app).
	Moved []uint32
}

// Pod adds the sidecar to one pod spec (a workload's template or a bare
// Pod, as the admission webhook sees it) in place. It is what the CLI and
// the webhook share, so both inject alike. A pod that has the sidecar
// already is left as it is.
func Pod(meta *metav1.ObjectMeta, spec *corev1.PodSpec, name string, o Options) (PodChange, error) {
	change := PodChange{PortNames: map[uint32]string{}}
	if envoy := findEnvoy(spec); envoy != nil {
		for _, p := range envoy.Ports {
			change.PortNames[uint32(p.ContainerPort)] = p.Name
		}
		return change, nil
	}
	if err := checkAdoptable(spec, name, o); err != nil {
		return change, err
	}
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	meta.Labels[SidecarLabel] = "true"
	if o.DrainToken == "" {
		o.DrainToken = rand.Text() // 26 base32 characters, 130 random bits
	}

	var ports []corev1.ContainerPort
	for _, pair := range o.Ports {
		portName := movePortName(spec, pair.App)
		if portName == "" {
			portName = fallbackPortName(pair.Listen)
		} else {
			change.Moved = append(change.Moved, pair.Listen)
		}
		change.PortNames[pair.Listen] = portName
		ports = append(ports, corev1.ContainerPort{Name: portName, ContainerPort: int32(pair.Listen), Protocol: corev1.ProtocolTCP})
	}

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
	envoy := corev1.Container{
		Name:  EnvoyContainer,
		Image: o.EnvoyImage,
		// Drain "immediate": from the preStop on, every response closes its
		// connection (HTTP/2: GOAWAY), so keep-alive clients move away, while
		// the listeners accept new connections until the drain time ends.
		Args: []string{"-c", configDir + "/envoy.yaml", "--drain-strategy", "immediate",
			"--drain-time-s", strconv.Itoa(int((o.drainDelay() + 10*time.Second) / time.Second))},
		Ports: ports,
		// The admin /ready, through the health listener: 200 once Envoy has
		// its listeners and clusters from the control plane.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: bootstrap.ReadyPath, Port: intstr.FromInt32(int32(o.healthPort())),
			}},
			PeriodSeconds:    2,
			FailureThreshold: 2,
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		VolumeMounts:    envoyMounts,
		SecurityContext: restricted(),
		// Drain, then hold the termination for the drain delay, longer than
		// endpoint propagation: Envoy exits at once on SIGTERM, so without
		// this, clients that have not yet seen the pod leave would fail.
		// The token keeps other pods, which reach the health port as the
		// kubelet does, from draining this sidecar.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: bootstrap.DrainPath, Port: intstr.FromInt32(int32(o.healthPort())),
			HTTPHeaders: []corev1.HTTPHeader{{Name: bootstrap.DrainTokenHeader, Value: o.DrainToken}},
		}}},
	}
	if o.NativeSidecar {
		// A native sidecar: started (and, with its readiness, part of the
		// pod's) before the app containers, stopped after them.
		envoy.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		spec.InitContainers = append(spec.InitContainers, envoy)
	} else {
		spec.Containers = append(spec.Containers, envoy)
	}
	change.Changed = true
	return change, nil
}

// Unpod removes the sidecar from one pod spec in place and gives each of
// Envoy's port names back to the app port it forwarded to, so the Service's
// named targetPort reaches the app in the new pods and Envoy in the old.
func Unpod(meta *metav1.ObjectMeta, spec *corev1.PodSpec) (PodChange, error) {
	change := PodChange{PortNames: map[uint32]string{}}
	envoy := findEnvoy(spec)
	if envoy == nil {
		return change, nil
	}
	pairs, err := sidecarPorts(spec)
	if err != nil {
		return change, err
	}
	names := map[uint32]string{}
	for _, p := range envoy.Ports {
		names[uint32(p.ContainerPort)] = p.Name
		change.PortNames[uint32(p.ContainerPort)] = p.Name
	}
	isSidecar := func(c corev1.Container) bool { return c.Name == EnvoyContainer || c.Name == InitContainer }
	spec.InitContainers = slices.DeleteFunc(spec.InitContainers, isSidecar)
	spec.Containers = slices.DeleteFunc(spec.Containers, isSidecar)
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool {
		return slices.Contains([]string{ConfigVolume, TokenVolume, CAVolume}, v.Name)
	})
	if len(spec.InitContainers) == 0 {
		spec.InitContainers = nil
	}
	if len(spec.Volumes) == 0 {
		spec.Volumes = nil
	}
	delete(meta.Labels, SidecarLabel)
	if len(meta.Labels) == 0 {
		meta.Labels = nil
	}
	for _, pair := range pairs {
		if name := names[pair.Listen]; name != "" {
			givePortName(spec, pair.App, name)
		}
	}
	change.Changed = true
	return change, nil
}

// sidecarPorts reads the port pairs back from the bootstrap container's
// arguments, the one place that holds them.
func sidecarPorts(spec *corev1.PodSpec) ([]nodemeta.PortPair, error) {
	for _, c := range spec.InitContainers {
		if c.Name != InitContainer {
			continue
		}
		for _, arg := range c.Args {
			if value, ok := strings.CutPrefix(arg, "--ports="); ok {
				return nodemeta.ParsePorts(value)
			}
		}
	}
	return nil, fmt.Errorf("the %s init container has no --ports argument: cannot tell which app port each Envoy port forwards to", InitContainer)
}

// findEnvoy returns the sidecar container, native or not.
func findEnvoy(spec *corev1.PodSpec) *corev1.Container {
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if list[i].Name == EnvoyContainer {
				return &list[i]
			}
		}
	}
	return nil
}

// movePortName takes the name off the app's container port appPort and
// returns it ("" when the port is not declared or has no name). Probes and
// hooks of that container that used the name use the number instead: a
// named probe port resolves among the container's own ports only.
func movePortName(spec *corev1.PodSpec, appPort uint32) string {
	for ci := range spec.Containers {
		c := &spec.Containers[ci]
		for pi := range c.Ports {
			p := &c.Ports[pi]
			if uint32(p.ContainerPort) != appPort || p.Name == "" {
				continue
			}
			name := p.Name
			p.Name = ""
			number := intstr.FromInt32(p.ContainerPort)
			for _, port := range handlerPorts(c) {
				if port.Type == intstr.String && port.StrVal == name {
					*port = number
				}
			}
			return name
		}
	}
	return ""
}

// givePortName names the app's container port appPort, declaring it on the
// first container when no container does.
func givePortName(spec *corev1.PodSpec, appPort uint32, name string) {
	for ci := range spec.Containers {
		for pi, p := range spec.Containers[ci].Ports {
			if uint32(p.ContainerPort) == appPort {
				spec.Containers[ci].Ports[pi].Name = name
				return
			}
		}
	}
	if len(spec.Containers) > 0 {
		spec.Containers[0].Ports = append(spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: int32(appPort), Protocol: corev1.ProtocolTCP})
	}
}

// handlerPorts are the ports of a container's probes and lifecycle hooks.
func handlerPorts(c *corev1.Container) []*intstr.IntOrString {
	var ports []*intstr.IntOrString
	add := func(h *corev1.ProbeHandler) {
		if h == nil {
			return
		}
		if h.HTTPGet != nil {
			ports = append(ports, &h.HTTPGet.Port)
		}
		if h.TCPSocket != nil {
			ports = append(ports, &h.TCPSocket.Port)
		}
	}
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if probe != nil {
			add(&probe.ProbeHandler)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil {
				add(&corev1.ProbeHandler{HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket})
			}
		}
	}
	return ports
}

func fallbackPortName(listen uint32) string { return "sp-" + strconv.Itoa(int(listen)) }

// checkAdoptable refuses pods the sidecar cannot be added to safely.
func checkAdoptable(spec *corev1.PodSpec, name string, o Options) error {
	if spec.HostNetwork {
		return fmt.Errorf("%s uses hostNetwork: the sidecar's ports would be the node's, shared by every such pod on it; shadowplane cannot adopt it", name)
	}
	if c := findContainer(spec, InitContainer); c != nil {
		return fmt.Errorf("%s already has the %s container but no %s: remove it, or run uninject first", name, InitContainer, EnvoyContainer)
	}
	taken := map[uint32]string{bootstrap.DefaultAdminPort: "Envoy's admin port", o.healthPort(): "the sidecar's health port"}
	for _, pair := range o.Ports {
		taken[pair.Listen] = "the sidecar's listen port"
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, p := range c.Ports {
			if what, ok := taken[uint32(p.ContainerPort)]; ok {
				return fmt.Errorf("%s: container %s already uses port %d, %s; choose another listen port with --ports", name, c.Name, p.ContainerPort, what)
			}
		}
	}
	for _, pair := range o.Ports {
		if taken[pair.App] != "" {
			return fmt.Errorf("%s: app port %d is %s", name, pair.App, taken[pair.App])
		}
	}
	for _, v := range spec.Volumes {
		if slices.Contains([]string{ConfigVolume, TokenVolume, CAVolume}, v.Name) {
			return fmt.Errorf("%s already has a volume named %s", name, v.Name)
		}
	}
	return nil
}

func findContainer(spec *corev1.PodSpec, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
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
		"--health-port=" + strconv.Itoa(int(o.healthPort())),
		"--drain-delay=" + o.drainDelay().String(),
		"--drain-token=" + o.DrainToken,
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
