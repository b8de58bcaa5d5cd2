package bootstrap

import (
	"fmt"
	"path/filepath"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	credinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Defaults for TLSOptions, matching the mounts `shadowplane inject` adds.
const (
	DefaultCAFile    = "/etc/shadowplane/ca/ca.crt"
	DefaultTokenFile = "/var/run/secrets/shadowplane/token"
	// TokenAudience is the audience of the projected token the sidecar
	// presents; the control plane refuses tokens for any other audience.
	TokenAudience = "shadowplane"
)

// Names of the two file-based SDS resources the bootstrap references.
const (
	sdsCAName        = "xds_ca"
	sdsTokenName     = "xds_token"
	SDSCAFileName    = "xds-ca-sds.json"
	SDSTokenFileName = "xds-token-sds.json"
)

// TLSOptions make the sidecar talk to the control plane over TLS, verify
// its certificate, and prove who it is with a projected ServiceAccount
// token. Envoy reads the CA and the token through file-based SDS that
// watches their directories, so a rotated CA bundle or a refreshed token is
// picked up without restarting Envoy.
type TLSOptions struct {
	// ServerName is the SNI sent and the DNS name the control plane's
	// certificate must carry, e.g. shadowplane.shadowplane-system.svc.
	ServerName string
	// CAFile is the CA bundle that signs the control plane's certificate.
	CAFile string
	// TokenFile is the projected ServiceAccount token (audience
	// TokenAudience), sent as "authorization: Bearer" on every xDS stream.
	TokenFile string
	// SDSDir is where the SDS resource files are written (next to the
	// bootstrap, an emptyDir in a pod).
	SDSDir string
}

func (t TLSOptions) check() error {
	if t.ServerName == "" {
		return fmt.Errorf("TLS: the control plane's server name is required (e.g. shadowplane.shadowplane-system.svc)")
	}
	for what, p := range map[string]string{"CA file": t.CAFile, "token file": t.TokenFile, "SDS directory": t.SDSDir} {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("TLS: the %s must be an absolute path, got %q", what, p)
		}
	}
	return nil
}

// xdsTransportSocket is TLS 1.3 with ALPN h2, SNI ServerName, and the CA
// and SAN check from the CA SDS file.
func (t TLSOptions) xdsTransportSocket() (*corev3.TransportSocket, error) {
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.ServerName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{
				TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
				TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
			},
			AlpnProtocols: []string{"h2"},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: t.sdsConfig(sdsCAName, SDSCAFileName, t.CAFile),
			},
		},
	}
	typed, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("xds TLS context: %w", err)
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: typed},
	}, nil
}

// xdsUpstreamFilters put the token on every request to the control plane
// (each xDS stream is one), overwriting anything already there.
func (t TLSOptions) xdsUpstreamFilters() ([]*hcmv3.HttpFilter, error) {
	generic, err := anypb.New(&genericv3.Generic{
		Credential:        t.sdsConfig(sdsTokenName, SDSTokenFileName, t.TokenFile),
		HeaderValuePrefix: "Bearer ",
	})
	if err != nil {
		return nil, err
	}
	injector, err := anypb.New(&credinjectorv3.CredentialInjector{
		Overwrite: true,
		Credential: &corev3.TypedExtensionConfig{
			Name:        "envoy.http.injected_credentials.generic",
			TypedConfig: generic,
		},
	})
	if err != nil {
		return nil, err
	}
	codec, err := anypb.New(&upstreamcodecv3.UpstreamCodec{})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{
		{Name: "envoy.filters.http.credential_injector", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: injector}},
		{Name: "envoy.filters.http.upstream_codec", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: codec}},
	}, nil
}

// sdsConfig points at an SDS resource file and watches the directory of
// the file it references: Kubernetes updates a mounted ConfigMap or
// projected token by swapping a symlink there, which is a move event.
func (t TLSOptions) sdsConfig(name, sdsFile, referenced string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{
		Name: name,
		SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
				Path:             filepath.Join(t.SDSDir, sdsFile),
				WatchedDirectory: &corev3.WatchedDirectory{Path: filepath.Dir(referenced)},
			}},
		},
	}
}

// SDSFiles are the SDS resource files the bootstrap references, by file
// name within SDSDir.
func (t TLSOptions) SDSFiles() (map[string][]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	ca := &tlsv3.Secret{
		Name: sdsCAName,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.CAFile}},
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
			}},
		}},
	}
	token := &tlsv3.Secret{
		Name: sdsTokenName,
		Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.TokenFile}},
		}},
	}
	out := map[string][]byte{}
	for file, secret := range map[string]proto.Message{SDSCAFileName: ca, SDSTokenFileName: token} {
		if err := secret.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
			return nil, fmt.Errorf("SDS resource %s: %w", file, err)
		}
		typed, err := anypb.New(secret)
		if err != nil {
			return nil, err
		}
		data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{typed}})
		if err != nil {
			return nil, fmt.Errorf("SDS resource %s: %w", file, err)
		}
		out[file] = append(data, '\n')
	}
	return out, nil
}

// secureXDSCluster adds TLS and the token-injecting upstream filters to the
// xDS cluster.
func secureXDSCluster(c *clusterv3.Cluster, t TLSOptions) error {
	if err := t.check(); err != nil {
		return err
	}
	socket, err := t.xdsTransportSocket()
	if err != nil {
		return err
	}
	filters, err := t.xdsUpstreamFilters()
	if err != nil {
		return err
	}
	const key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	var opts httpv3.HttpProtocolOptions
	if err := c.TypedExtensionProtocolOptions[key].UnmarshalTo(&opts); err != nil {
		return fmt.Errorf("xds cluster protocol options: %w", err)
	}
	opts.HttpFilters = filters
	typed, err := anypb.New(&opts)
	if err != nil {
		return err
	}
	c.TypedExtensionProtocolOptions[key] = typed
	c.TransportSocket = socket
	return nil
}
