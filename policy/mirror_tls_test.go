package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

const tlsTargetURL = "https://gw.staging.example.com:8443"

func tlsMirrorYAML(extra string) string {
	return entranceHead + "mirrors:\n- url: " + tlsTargetURL + "\n  percent: 5\n" + indentLines(extra, "  ")
}

func TestParseMirrorTLSAndHost(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Mirror // URL and percent are filled in below
	}{
		{
			name: "everything",
			body: tlsMirrorYAML("host: Entrance.Staging.Example.com\ntls:\n  sni: Entrance.Staging.Example.com.\n  caConfigMap: staging-ca\n  caKey: root.pem\n  clientCertSecret: staging-client\n"),
			want: Mirror{Host: "entrance.staging.example.com", TLS: &MirrorTLS{
				SNI: "entrance.staging.example.com", CAConfigMap: "staging-ca", CAKey: "root.pem", ClientCertSecret: "staging-client",
			}},
		},
		{
			name: "caKey defaults to ca.crt",
			body: tlsMirrorYAML("tls: {caConfigMap: staging-ca}\n"),
			want: Mirror{TLS: &MirrorTLS{CAConfigMap: "staging-ca", CAKey: DefaultCAKey}},
		},
		{
			name: "client certificate only keeps the system trust store",
			body: tlsMirrorYAML("tls: {clientCertSecret: staging-client}\n"),
			want: Mirror{TLS: &MirrorTLS{ClientCertSecret: "staging-client"}},
		},
		{
			name: "host with a port and no tls",
			body: tlsMirrorYAML("host: \"entrance.staging.example.com:8080\"\n"),
			want: Mirror{Host: "entrance.staging.example.com:8080"},
		},
		{
			name: "IPv6 host",
			body: tlsMirrorYAML("host: \"[fd00::1]:8080\"\n"),
			want: Mirror{Host: "[fd00::1]:8080"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(errs) > 0 || len(policies) != 1 {
				t.Fatalf("want one valid policy, got %d and errors:\n%s", len(policies), renderErrors(errs))
			}
			got := policies[0].Mirrors[0]
			want := tt.want
			want.Name, want.URL, want.PartsPerMillion = "gw.staging.example.com_8443", got.URL, 50000
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mirror (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMirrorHostOnServiceTarget(t *testing.T) {
	policies, errs := parseKey(onePolicy(entranceHead + "mirrors:\n- {service: entrance-shadow, percent: 1, host: shadow.local}\n"))
	if len(errs) > 0 || len(policies) != 1 {
		t.Fatalf("errors:\n%s", renderErrors(errs))
	}
	if got := policies[0].Mirrors[0].Host; got != "shadow.local" {
		t.Errorf("host = %q, want shadow.local", got)
	}
}

func TestParseMirrorTLSInvalid(t *testing.T) {
	tests := []struct {
		name, body, field, msg string
	}{
		{"tls on a service target", entranceHead + "mirrors:\n- {service: entrance-shadow, percent: 1, tls: {sni: a.example.com}}\n",
			"mirrors[0].tls", "applies only to https url targets: a Service target is reached inside the cluster"},
		{"tls on an http url", entranceHead + "mirrors:\n- {url: \"http://10.16.0.1:8080\", percent: 1, tls: {sni: a.example.com}}\n",
			"mirrors[0].tls", "write the url as https://10.16.0.1:8080"},
		{"insecureSkipVerify", tlsMirrorYAML("tls: {insecureSkipVerify: true}\n"),
			"mirrors[0].tls", `"insecureSkipVerify": certificate verification cannot be turned off`},
		{"insecure_skip_verify", tlsMirrorYAML("tls: {caConfigMap: ca, insecure_skip_verify: true}\n"),
			"mirrors[0].tls", "certificate verification cannot be turned off"},
		{"skipVerify", tlsMirrorYAML("tls: {skipVerify: true}\n"),
			"mirrors[0].tls", "certificate verification cannot be turned off"},
		{"unknown tls field", tlsMirrorYAML("tls: {ca: x}\n"),
			"mirrors[0].tls.ca", `unknown field "ca"; valid fields are: sni, caConfigMap, caKey, clientCertSecret`},
		{"empty tls", tlsMirrorYAML("tls: {}\n"),
			"mirrors[0].tls", "is empty: set caConfigMap, clientCertSecret or sni"},
		{"tls not a mapping", tlsMirrorYAML("tls: true\n"),
			"mirrors[0].tls", "must be a mapping with the fields sni, caConfigMap, caKey, clientCertSecret"},
		{"sni an IP", tlsMirrorYAML("tls: {sni: 10.16.0.1}\n"),
			"mirrors[0].tls.sni", "TLS sends no IP address as SNI"},
		{"sni with a port", tlsMirrorYAML("tls: {sni: \"a.example.com:443\"}\n"),
			"mirrors[0].tls.sni", "must be a DNS host name"},
		{"bad ConfigMap name", tlsMirrorYAML("tls: {caConfigMap: Staging_CA}\n"),
			"mirrors[0].tls.caConfigMap", "must be a Kubernetes object name"},
		{"bad Secret name", tlsMirrorYAML("tls: {clientCertSecret: \"a/b\"}\n"),
			"mirrors[0].tls.clientCertSecret", "must be a Kubernetes object name"},
		{"caKey without caConfigMap", tlsMirrorYAML("tls: {caKey: ca.crt, sni: a.example.com}\n"),
			"mirrors[0].tls.caKey", "needs caConfigMap"},
		{"bad caKey", tlsMirrorYAML("tls: {caConfigMap: ca, caKey: \"a/b\"}\n"),
			"mirrors[0].tls.caKey", "must be a ConfigMap key"},
		{"host with a path", tlsMirrorYAML("host: a.example.com/x\n"),
			"mirrors[0].host", "must be host or host:port"},
		{"host with a scheme", tlsMirrorYAML("host: \"https://a.example.com\"\n"),
			"mirrors[0].host", "must be host or host:port"},
		{"host with a space", tlsMirrorYAML("host: \"a b\"\n"),
			"mirrors[0].host", "without spaces or control characters"},
		{"host with a bad port", tlsMirrorYAML("host: \"a.example.com:99999\"\n"),
			"mirrors[0].host", "port must be from 1 to 65535, got \"99999\""},
		{"host with user info", tlsMirrorYAML("host: \"u@a.example.com\"\n"),
			"mirrors[0].host", "must be host or host:port"},
		{"host not a name", tlsMirrorYAML("host: \"a_b.example.com\"\n"),
			"mirrors[0].host", "is not a valid host name or IP address"},
		{"host a number", tlsMirrorYAML("host: 42\n"),
			"mirrors[0].host", "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(policies) != 0 {
				t.Errorf("policy parsed as valid: %+v", policies[0].Mirrors)
			}
			if !hasError(errs, "p", 0, tt.field, tt.msg) {
				t.Errorf("want an error at %q containing %q, got:\n%s", tt.field, tt.msg, renderErrors(errs))
			}
		})
	}
}
