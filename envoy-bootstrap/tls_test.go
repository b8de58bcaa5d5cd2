package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// tlsFixture writes a CA file, a token file and the SDS files into a
// temporary directory and returns TLS options pointing at them.
func tlsFixture(t *testing.T) TLSOptions {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewAuthority("test-ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ca", "token", "sds"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o := TLSOptions{
		ServerName: "shadowplane.shadowplane-system.svc",
		CAFile:     filepath.Join(dir, "ca", "ca.crt"),
		TokenFile:  filepath.Join(dir, "token", "token"),
		SDSDir:     filepath.Join(dir, "sds"),
	}
	if err := os.WriteFile(o.CAFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.TokenFile, []byte("eyJ.test.token"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := o.SDSFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(o.SDSDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func TestRealEnvoyAcceptsSecureBootstrap(t *testing.T) {
	tlsOpts := tlsFixture(t)
	for _, delta := range []bool{false, true} {
		o := validOptions()
		o.Delta = delta
		o.XDSAddress = "shadowplane.shadowplane-system.svc:18000"
		o.TLS = &tlsOpts
		b, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		data, err := Marshal(b, "yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"envoy.filters.http.credential_injector", "headerValuePrefix: 'Bearer '", "sni: shadowplane.shadowplane-system.svc", "TLSv1_3"} {
			if !strings.Contains(string(data), want) {
				t.Errorf("secure bootstrap lacks %q", want)
			}
		}
		path := filepath.Join(t.TempDir(), "bootstrap.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, ok := testtools.EnvoyValidate(t, path); !ok {
			t.Fatalf("envoy rejected the secure bootstrap:\n%s\n%s", out, data)
		}
	}
}

func TestTLSOptionsRejectIncomplete(t *testing.T) {
	good := TLSOptions{ServerName: "x.y.svc", CAFile: "/ca/ca.crt", TokenFile: "/t/token", SDSDir: "/sds"}
	tests := map[string]func(*TLSOptions){
		"no server name":   func(o *TLSOptions) { o.ServerName = "" },
		"relative CA file": func(o *TLSOptions) { o.CAFile = "ca.crt" },
		"no token file":    func(o *TLSOptions) { o.TokenFile = "" },
		"relative SDS dir": func(o *TLSOptions) { o.SDSDir = "sds" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			o := good
			mutate(&o)
			if _, err := o.SDSFiles(); err == nil {
				t.Fatal("incomplete TLS options were accepted")
			}
			b := validOptions()
			b.TLS = &o
			if _, err := Render(b); err == nil {
				t.Fatal("Render accepted incomplete TLS options")
			}
		})
	}
}
