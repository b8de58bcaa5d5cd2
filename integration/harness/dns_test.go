package harness

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// TestDNSServer resolves through the server with Go's own DNS client.
func TestDNSServer(t *testing.T) {
	s, err := StartDNS(map[string]string{"url-dns.shadowplane.test": "198.18.0.1", "Other.Test.": "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, want := range map[string]string{"url-dns.shadowplane.test": "198.18.0.1", "other.test": "192.0.2.7", "URL-DNS.shadowplane.test.": "198.18.0.1"} {
		got, err := r.LookupHost(ctx, name)
		if err != nil || !slices.Equal(got, []string{want}) {
			t.Errorf("LookupHost(%q) = %q, %v; want [%s]", name, got, err, want)
		}
	}
	_, err = r.LookupHost(ctx, "unknown.shadowplane.test")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost(unknown) error %v, want not found", err)
	}
	if _, err := StartDNS(map[string]string{"x.test": "::1"}); err == nil {
		t.Error("an IPv6 record was accepted")
	}
}
