package xds

import (
	"encoding/base64"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/hashicorp/go-hclog"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// testKeyMaterial stands for a private key: what must never leave the
// control plane but on an authenticated xDS stream.
const testKeyMaterial = "-----BEGIN PRIVATE KEY-----\nTESTKEYMATERIAL0123456789\n-----END PRIVATE KEY-----\n"

// TestSecretsServedNotDumped: the translator's secrets reach the sidecar
// on its xDS stream, while /debug and the log name them only.
func TestSecretsServedNotDumped(t *testing.T) {
	logs := &testtools.SyncBuffer{}
	h := newHarness(t, translator.Translate, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Trace, Output: io.MultiWriter(logs, newTestWriter(t))})
	})
	w := testWorld(250000, "10.1.0.1")
	w.Policies[0].Mirrors = append(w.Policies[0].Mirrors, policy.Mirror{
		Name: "gw", PartsPerMillion: 1000,
		URL: &policy.URLTarget{Raw: "https://198.18.0.7:8443", Scheme: "https", Host: "198.18.0.7", Port: 8443},
		TLS: &policy.MirrorTLS{SNI: "gw.test.example.com", ClientCertSecret: "copier"},
	})
	w.ClientCertificates = map[string]*translator.ClientCertificate{
		"shop/copier": {CertChain: []byte("CERT"), PrivateKey: []byte(testKeyMaterial)},
	}
	h.srv.SetWorld(w)
	c := h.sotw(sidecarNode("entrance-1"))

	// The sidecar gets the key, by SDS on its stream.
	c.Send("secret", "", "", nil)
	resp := c.Collect("secret")["secret"]
	if len(resp.GetResources()) != 1 {
		t.Fatalf("secret response holds %d resources, want 1", len(resp.GetResources()))
	}
	secret := &tlsv3.Secret{}
	if err := resp.GetResources()[0].UnmarshalTo(secret); err != nil {
		t.Fatal(err)
	}
	if secret.GetName() != "mirror-client|shop/copier" || string(secret.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) != testKeyMaterial {
		t.Errorf("secret %s does not carry the key", secret.GetName())
	}

	// A rotated certificate re-translates the group: only the secret's
	// version moves.
	before := h.groupVersions()
	rotated := *w
	rotated.ClientCertificates = map[string]*translator.ClientCertificate{
		"shop/copier": {CertChain: []byte("CERT 2"), PrivateKey: []byte(testKeyMaterial + "2")},
	}
	h.srv.SetWorld(&rotated)
	after := h.groupVersions()
	for typ, v := range after {
		if changed := v != before[typ]; changed != (typ == "secret") {
			t.Errorf("after the rotation %s version %q → %q; want only the secret's to change", typ, before[typ], v)
		}
	}

	web := httptest.NewServer(h.srv.DebugHandler())
	defer web.Close()
	var dumps strings.Builder
	for _, path := range []string{"/debug/snapshots", "/debug/proxies"} {
		code, body, _, _ := getDebug(t, web.URL, path)
		if code != 200 {
			t.Fatalf("%s: status %d", path, code)
		}
		dumps.WriteString(body)
	}
	if !strings.Contains(dumps.String(), "mirror-client|shop/copier") || !strings.Contains(dumps.String(), "entrance-1") {
		t.Errorf("/debug/snapshots does not name the secret:\n%s", dumps.String())
	}
	for where, text := range map[string]string{"/debug": dumps.String(), "the log": logs.String()} {
		for _, leak := range []string{"TESTKEYMATERIAL", base64.StdEncoding.EncodeToString([]byte(testKeyMaterial))[:24], "PRIVATE KEY"} {
			if strings.Contains(text, leak) {
				t.Errorf("%s contains key material (%q)", where, leak)
			}
		}
	}
}
