package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The deny list: URL-target hosts and ports that no --allow-url-target
// pattern can open. A copy is a request the sidecar sends with the original
// method, path and body, so a target on these addresses would let whoever
// sends traffic to the Service talk to the sidecar's own host, the cloud
// metadata service, Envoy's admin interface or the control plane.

// Well-known ports refused on every host.
const (
	// EnvoyAdminPort is the Envoy admin port of shadowplane sidecars
	// (envoy-bootstrap's DefaultAdminPort).
	EnvoyAdminPort = 15000
	// DefaultXDSPort is the control plane's default xDS port.
	DefaultXDSPort = 18000
)

type deniedRange struct {
	prefix netip.Prefix
	rule   string
}

const (
	ruleLoopback    = "loopback"
	ruleLinkLocal   = "link-local: includes the cloud metadata service 169.254.169.254"
	ruleUnspecified = "unspecified: a connection to it reaches the sidecar's own host"
	ruleMulticast   = "multicast"
	ruleControl     = "the control plane's own address"
)

// deniedRanges are checked before embeddingRanges, as ::1 and :: lie
// inside ::/96 and must be named as themselves.
var deniedRanges = []deniedRange{
	{netip.MustParsePrefix("127.0.0.0/8"), ruleLoopback},
	{netip.MustParsePrefix("::1/128"), ruleLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), ruleLinkLocal},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("0.0.0.0/8"), ruleUnspecified},
	{netip.MustParsePrefix("::/128"), ruleUnspecified},
	{netip.MustParsePrefix("224.0.0.0/4"), ruleMulticast},
	{netip.MustParsePrefix("ff00::/8"), ruleMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "the cloud metadata service (AWS, IPv6)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the cloud metadata service (Alibaba Cloud)"},
}

// embeddingRanges are IPv6 forms that carry an IPv4 address in their last
// 32 bits; the embedded address is checked against the IPv4 ranges.
// (IPv4-mapped ::ffff:0:0/96 is unmapped before any check.)
var embeddingRanges = []struct {
	prefix netip.Prefix
	form   string
}{
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6 (::/96)"},
	{netip.MustParsePrefix("64:ff9b::/96"), "the NAT64 prefix 64:ff9b::/96"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated IPv6 (::ffff:0:0:0/96)"},
}

// deniedPorts are refused on every host: an admin port reached by a copy
// can change runtime values or stop the process.
var deniedPorts = map[uint32]string{
	EnvoyAdminPort: "the Envoy admin port of sidecars (15000): a copy sent there could change a sidecar's runtime values or shut it down",
	DefaultXDSPort: "the control plane's xDS port (18000)",
}

// deniedName returns the rule refusing a DNS name, "" if none. Other names
// resolve only in the sidecar and cannot be checked here.
func deniedName(host string) string {
	host = strings.TrimSuffix(host, ".")
	switch {
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return "loopback: the name localhost and every name under .localhost"
	case host == "localhost.localdomain" || host == "ip6-localhost" || host == "ip6-loopback":
		return "loopback: a usual /etc/hosts name for the loopback address"
	case host == "metadata.google.internal":
		return "the cloud metadata service (Google Cloud)"
	}
	return ""
}

// deniedAddr returns the rule refusing addr, "" if none.
func deniedAddr(addr netip.Addr, opts ParseOptions) string {
	addr = addr.WithZone("").Unmap() // a zoned address never matches a prefix
	for _, d := range deniedRanges {
		if d.prefix.Contains(addr) {
			return d.rule
		}
	}
	for _, p := range opts.DeniedAddresses {
		if p.Contains(addr) {
			return ruleControl
		}
	}
	if !addr.Is6() {
		return ""
	}
	for _, e := range embeddingRanges {
		if !e.prefix.Contains(addr) {
			continue
		}
		b := addr.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if rule := deniedAddr(v4, opts); rule != "" {
			return fmt.Sprintf("%s: %s embedded in %s", rule, v4, e.form)
		}
	}
	return ""
}

// deniedPort returns the rule refusing port on any host, "" if none.
func deniedPort(port uint32, opts ParseOptions) string {
	if rule := deniedPorts[port]; rule != "" {
		return rule
	}
	for _, p := range opts.DeniedPorts {
		if p == port {
			return "a port the control plane serves on (" + strconv.Itoa(int(port)) + ")"
		}
	}
	return ""
}

// deniedHostProblem is the message for a host on the deny list, "" if it
// is not. An IPv4 address in a spelling that resolvers accept (127.1,
// 0x7f.0.0.1, 2130706433) is checked as the address they read.
func deniedHostProblem(host string, opts ParseOptions) string {
	rule, spelled := deniedName(host), ""
	if addr, err := netip.ParseAddr(host); err == nil {
		rule = deniedAddr(addr, opts)
	} else if addr, ok := looseIPv4(host); ok {
		rule, spelled = deniedAddr(addr, opts), fmt.Sprintf(", which resolvers read as %s,", addr)
	}
	if rule == "" {
		return ""
	}
	return fmt.Sprintf("url host %q%s is refused by the deny list (%s); the allowlist cannot open it: send copies to the test environment's own address", host, spelled, rule)
}

// deniedPortProblem is the message for a port on the deny list, "" if it
// is not.
func deniedPortProblem(port uint32, opts ParseOptions) string {
	rule := deniedPort(port, opts)
	if rule == "" {
		return ""
	}
	return fmt.Sprintf("url port %d is refused by the deny list on every host (%s); the allowlist cannot open it: use the port the test environment serves on", port, rule)
}
