package harness

import (
	"net"
	"strings"
	"testing"
)

func TestChooseEndpointHost(t *testing.T) {
	local := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("198.18.0.1"), Mask: net.CIDRMask(32, 32)},
		&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)},
	}
	cases := []struct {
		name       string
		configured string
		want       string
		wantErr    []string // substrings of the error
	}{
		{name: "default in the namespace", configured: "", want: "198.18.0.1"},
		{name: "configured and local", configured: " 10.1.2.3 ", want: "10.1.2.3"},
		{name: "not local: not the tests' namespace", configured: "192.0.2.1",
			wantErr: []string{"192.0.2.1 is not assigned", "make integration", "hack/netns-exec"}},
		{name: "loopback", configured: "127.0.0.1", wantErr: []string{"refuses loopback"}},
		{name: "unspecified", configured: "0.0.0.0", wantErr: []string{"refuses loopback"}},
		{name: "IPv6", configured: "::1", wantErr: []string{"not an IPv4 address"}},
		{name: "garbage", configured: "test-host", wantErr: []string{`"test-host" is not an IPv4 address`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := chooseEndpointHost(c.configured, local)
			if c.wantErr == nil {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			for _, part := range c.wantErr {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
		})
	}
}

// TestEndpointHostRefusesAnAddressThatIsNotHere: run by hand in the host
// namespace, the harness refuses with the way to run the tests properly.
func TestEndpointHostRefusesAnAddressThatIsNotHere(t *testing.T) {
	t.Setenv(TestAddressEnv, "192.0.2.1") // TEST-NET-1: never assigned
	_, err := EndpointHost()
	if err == nil || !strings.Contains(err.Error(), "make integration") {
		t.Fatalf("EndpointHost() error = %v, want one that says to use `make integration`", err)
	}
}
