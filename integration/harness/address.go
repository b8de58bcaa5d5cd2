package harness

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// TestAddressEnv names the variable that holds the test address;
// hack/netns-exec sets it inside the tests' network namespace.
const TestAddressEnv = "SHADOWPLANE_TEST_ADDRESS"

// DefaultTestAddress is the address hack/netns-exec puts on lo in the tests'
// private network namespace (RFC 2544 benchmarking range).
const DefaultTestAddress = "198.18.0.1"

// EndpointHost is the address test backends behind a Kubernetes Service
// bind to. kube-apiserver refuses loopback addresses in EndpointSlices, so
// these backends need a non-loopback one: the test address of
// SHADOWPLANE_TEST_ADDRESS (default 198.18.0.1), which must be assigned here
// — it is inside the network namespace `make integration` runs the tests in,
// so nothing touches this machine's own interfaces.
func EndpointHost() (string, error) {
	local, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("list local addresses: %w", err)
	}
	return chooseEndpointHost(os.Getenv(TestAddressEnv), local)
}

// chooseEndpointHost checks the configured test address (empty: the
// default) against the addresses assigned here.
func chooseEndpointHost(configured string, local []net.Addr) (string, error) {
	text := strings.TrimSpace(configured)
	if text == "" {
		text = DefaultTestAddress
	}
	ip := net.ParseIP(text)
	switch {
	case ip == nil || ip.To4() == nil:
		return "", fmt.Errorf("%s=%q is not an IPv4 address (the test EndpointSlices are IPv4)", TestAddressEnv, configured)
	case ip.IsLoopback() || ip.IsUnspecified():
		return "", fmt.Errorf("test address %s cannot be used: kube-apiserver refuses loopback addresses in EndpointSlices", ip)
	}
	for _, a := range local {
		if ipnet, ok := a.(*net.IPNet); ok && ipnet.IP.Equal(ip) {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("test address %s is not assigned to any interface here, so this is not the tests' own network namespace: "+
		"run `make integration` (or `go test -exec \"$PWD/hack/netns-exec\" ./integration/...` from the repository root), "+
		"which runs the tests in a private network namespace with %s on lo, never on this machine's interfaces", ip, DefaultTestAddress)
}
