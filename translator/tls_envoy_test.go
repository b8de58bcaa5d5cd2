package translator_test

import (
	"path/filepath"
	"testing"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/translator"
)

// TestPrivateCAEnvoyRejectsMissingSecrets: the validation of the private-CA
// case bites: without the secrets the clusters name, or with a key that
// is not one, the real Envoy refuses the configuration.
func TestPrivateCAEnvoyRejectsMissingSecrets(t *testing.T) {
	testtools.Require(t, "envoy")
	for _, tt := range []struct {
		name string
		edit func(out *translator.Output)
	}{
		{"no secrets", func(out *translator.Output) { out.Secrets = nil }},
		{"a certificate without its key", func(out *translator.Output) {
			for _, s := range out.Secrets {
				if c := s.GetTlsCertificate(); c != nil {
					c.GetPrivateKey().Specifier = nil
				}
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := loadGoldenCase(t, filepath.Join("testdata", "https-url-private-ca"))
			out := translator.Translate(c.world, c.group)
			if len(out.Secrets) != 2 {
				t.Fatalf("the case yields %d secrets, want 2", len(out.Secrets))
			}
			tt.edit(out)
			bs, err := staticBootstrap(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := envoyValidate(t, bs); err == nil {
				t.Error("Envoy accepted a broken configuration")
			}
		})
	}
}
