package controlplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/shadowplane/shadowplane/internal/certs"
)

// TestListenersServeTheirOwnPaths: probes and metrics on the HTTP listener,
// debug and pprof on the loopback debug listener, and neither on the other.
func TestListenersServeTheirOwnPaths(t *testing.T) {
	cp, err := New(Config{
		Client:      fake.NewClientset(),
		XDSAddress:  "127.0.0.1:0",
		HTTPAddress: "127.0.0.1:0",
		InsecureXDS: true, // the HTTP listeners are the subject here
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !cp.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("control plane not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !isLoopback(cp.DebugAddr) {
		t.Errorf("default debug address %s is not loopback", cp.DebugAddr)
	}

	httpURL, debugURL := "http://"+cp.HTTPAddr.String(), "http://"+cp.DebugAddr.String()
	tests := []struct {
		base, path string
		want       int
	}{
		{httpURL, "/healthz", 200},
		{httpURL, "/readyz", 200},
		{httpURL, "/metrics", 200},
		{httpURL, "/debug/proxies", 404},
		{httpURL, "/debug/snapshots", 404},
		{httpURL, "/debug/pprof/", 404},
		{httpURL, "/debug/pprof/heap", 404},
		{debugURL, "/debug/proxies", 200},
		{debugURL, "/debug/snapshots", 200},
		{debugURL, "/debug/pprof/", 200},
		{debugURL, "/debug/pprof/heap", 200},
		{debugURL, "/debug/pprof/goroutine?debug=1", 200},
		{debugURL, "/debug/nothing", 404},
		{debugURL, "/healthz", 404},
		{debugURL, "/metrics", 404},
	}
	for _, tt := range tests {
		resp, err := http.Get(tt.base + tt.path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", tt.base, tt.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			listener := "HTTP"
			if tt.base == debugURL {
				listener = "debug"
			}
			t.Errorf("%s on the %s listener = %d, want %d", tt.path, listener, resp.StatusCode, tt.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9091}, true},
		{&net.TCPAddr{IP: net.ParseIP("127.5.0.1"), Port: 9091}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9091}, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9091}, false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9091}, false},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 9091}, false},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 9091}, true},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, false},
	}
	for _, tt := range tests {
		if got := isLoopback(tt.addr); got != tt.want {
			t.Errorf("isLoopback(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestXDSSecurityChoices: TLS needs both files and a valid pair, plain text
// needs the explicit flag, and the two do not mix.
func TestXDSSecurityChoices(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewAuthority("ca", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue([]string{"shadowplane.shadowplane-system.svc"}, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := certs.WriteFiles(pair, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		errHas  string
		secured bool
	}{
		{"TLS from files", Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, "", true},
		{"nothing given", Config{}, "needs a TLS certificate and key", false},
		{"a key without its certificate", Config{TLSKeyFile: keyFile}, "needs a TLS certificate and key", false},
		{"a missing file", Config{TLSCertFile: filepath.Join(dir, "nope.crt"), TLSKeyFile: keyFile}, "nope.crt", false},
		{"insecure on request", Config{InsecureXDS: true}, "", false},
		{"insecure and TLS at once", Config{InsecureXDS: true, TLSCertFile: certFile, TLSKeyFile: keyFile}, "choose one", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Client = fake.NewClientset()
			creds, auth, err := xdsSecurity(tc.cfg)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := creds.Info().SecurityProtocol; (got == "tls") != tc.secured {
				t.Errorf("security protocol %q, secured want %v", got, tc.secured)
			}
			if (auth != nil) != tc.secured {
				t.Errorf("identity verification on: %v, want %v", auth != nil, tc.secured)
			}
		})
	}
}
