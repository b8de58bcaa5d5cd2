package peers

import (
	"fmt"
	"net"
	"os"
)

// IstioSidecar names one Istio-style sidecar: what istio-agent would put
// into the Envoy bootstrap's node so istiod treats it as pod Pod of Service
// App in Namespace.
type IstioSidecar struct {
	IP        string // the pod's address (any address the API server accepts)
	Pod       string
	Namespace string
	App       string // the app label, also the ServiceAccount's name
	// IstioVersion is the proxy version istiod gates features on.
	IstioVersion string
}

// NodeID is Istio's sidecar node id: type~ip~pod.namespace~namespace.svc.cluster.local.
func (s IstioSidecar) NodeID() string {
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", s.IP, s.Pod, s.Namespace, s.Namespace)
}

// IstioXDSCluster is the static cluster through which the sidecar reaches
// istiod, named as in Istio's own bootstrap (its stats are cluster.xds-grpc.*).
const IstioXDSCluster = "xds-grpc"

// WriteIstioBootstrap writes a minimal Istio-style Envoy bootstrap: the node
// and metadata istiod needs, SotW ADS to istiod's plain-text port over the
// xds-grpc cluster, and the sds-grpc cluster Istio's config expects (here
// the stub SDS instead of istio-agent). Admin on 127.0.0.1:adminPort.
func WriteIstioBootstrap(path string, s IstioSidecar, xdsAddr, sdsAddr string, adminPort uint32) error {
	xdsHost, xdsPort, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return fmt.Errorf("xds address %q: %w", xdsAddr, err)
	}
	sdsHost, sdsPort, err := net.SplitHostPort(sdsAddr)
	if err != nil {
		return fmt.Errorf("sds address %q: %w", sdsAddr, err)
	}
	yaml := fmt.Sprintf(`node:
  id: %[1]q
  cluster: %[2]q
  metadata:
    NAMESPACE: %[3]q
    CLUSTER_ID: Kubernetes
    MESH_ID: cluster.local
    ISTIO_VERSION: %[4]q
    LABELS: {app: %[5]q}
    APP_CONTAINERS: app
    INSTANCE_IPS: %[6]q
    POD_NAME: %[7]q
    SERVICE_ACCOUNT: %[5]q
    WORKLOAD_NAME: %[5]q
    INTERCEPTION_MODE: REDIRECT
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %[8]d}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{envoy_grpc: {cluster_name: %[9]s}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - %[10]s
  - %[11]s
`, s.NodeID(), s.App+"."+s.Namespace, s.Namespace, s.IstioVersion, s.App, s.IP, s.Pod, adminPort,
		IstioXDSCluster, grpcCluster(IstioXDSCluster, xdsHost, xdsPort), grpcCluster("sds-grpc", sdsHost, sdsPort))
	return os.WriteFile(path, []byte(yaml), 0o644)
}

// grpcCluster is a static HTTP/2 cluster of one address, as a YAML flow map.
func grpcCluster(name, host, port string) string {
	return fmt.Sprintf(`{name: %s, type: STATIC, connect_timeout: 1s, `+
		`typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: `+
		`{"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}, `+
		`load_assignment: {cluster_name: %s, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]}]}}`,
		name, name, host, port)
}
