package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHostAllowed(t *testing.T) {
	patterns := []string{"shadow.example.org", "*.staging.example.com", "10.16.0.0/16", "192.0.2.7", "fd00::/8", " Upper.Example.NET. ", "[2001:db8::1]"}
	tests := []struct {
		host string
		want bool
	}{
		{"shadow.example.org", true},
		{"other.example.org", false},
		{"a.staging.example.com", true},
		{"a.b.staging.example.com", true},
		{"staging.example.com", false},
		{"xstaging.example.com", false},
		{"10.16.3.4", true},
		{"10.17.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"fd00::1", true},
		{"fe80::1", false},
		{"::ffff:10.16.0.1", true}, // IPv4-mapped IPv6 is the IPv4 address
		{"upper.example.net", true},
		{"2001:db8::1", true},
	}
	for _, tt := range tests {
		if got := hostAllowed(tt.host, patterns); got != tt.want {
			t.Errorf("hostAllowed(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if hostAllowed("10.16.0.1", nil) {
		t.Error("with no patterns nothing is allowed")
	}
}

func TestValidateURLHostPattern(t *testing.T) {
	for _, ok := range []string{"example.com", "*.example.com", "10.16.0.0/16", "10.0.0.1", "fd00::/8", "::1", "[::1]"} {
		if err := ValidateURLHostPattern(ok); err != nil {
			t.Errorf("ValidateURLHostPattern(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "*", "*.", "*.*.example.com", "10.16.0.0/33", "exa mple.com", "http://example.com", "example.com:80", "10.0.0.300"} {
		if err := ValidateURLHostPattern(bad); err == nil {
			t.Errorf("ValidateURLHostPattern(%q) = nil, want an error", bad)
		}
	}
}

// wideOpen is the widest allowlist an operator can write: every IPv4 and
// IPv6 address and every name under the wildcards below. The deny list must
// win over all of it.
var wideOpen = ParseOptions{AllowedURLHosts: []string{
	"*", "0.0.0.0/0", "::/0", "*.localhost", "*.internal", "*.example.com",
	"localhost", "127.0.0.1", "169.254.169.254", "::1", "[::ffff:127.0.0.1]",
}}

// TestDenyList: no allowlist opens a denied host or port, in any IPv4 or
// IPv6 spelling, and the message names the rule; ordinary addresses stay
// open under the same allowlist.
func TestDenyList(t *testing.T) {
	tests := []urlCase{
		// IPv4
		{"http://127.0.0.1", `url host "127.0.0.1" is refused by the deny list (loopback); the allowlist cannot open it`},
		{"http://127.255.255.254:8080", "(loopback)"},
		{"http://169.254.169.254", `url host "169.254.169.254" is refused by the deny list (link-local: includes the cloud metadata service 169.254.169.254); the allowlist cannot open it`},
		{"http://169.254.0.1", "(link-local: includes the cloud metadata service"},
		{"http://0.0.0.0", "(unspecified: a connection to it reaches the sidecar's own host)"},
		{"http://0.1.2.3", "(unspecified"},
		{"http://224.0.0.1", "(multicast)"},
		{"http://239.255.255.250", "(multicast)"},
		{"http://255.255.255.255", "(broadcast)"},
		{"http://100.100.100.200", "(the cloud metadata service (Alibaba Cloud))"},
		// odd IPv4 spellings that resolvers read as addresses
		{"http://2130706433/", `url host "2130706433", which resolvers read as 127.0.0.1, is refused by the deny list (loopback)`},
		{"http://0x7f.0.0.1/", `url host "0x7f.0.0.1", which resolvers read as 127.0.0.1, is refused`},
		{"http://0x7f000001/", `which resolvers read as 127.0.0.1, is refused`},
		{"http://0177.0.0.1/", `which resolvers read as 127.0.0.1, is refused`},
		{"http://127.1/", `url host "127.1", which resolvers read as 127.0.0.1, is refused`},
		{"http://127.0.1/", `which resolvers read as 127.0.0.1, is refused`},
		{"http://0xa9.0xfe.0xa9.0xfe/", `which resolvers read as 169.254.169.254, is refused by the deny list (link-local`},
		{"http://2852039166/", `which resolvers read as 169.254.169.254`},
		{"http://0/", `url host "0", which resolvers read as 0.0.0.0, is refused by the deny list (unspecified`},
		{"http://10.1/", `host "10.1" is not a dotted-quad IPv4 address, yet resolvers read it as 10.0.0.1: write the address as four decimal numbers without leading zeros, 10.0.0.1`},
		{"http://010.016.0.1/", `resolvers read it as 8.14.0.1`},
		{"http://0x0a100093/", `resolvers read it as 10.16.0.147`},
		// names
		{"http://localhost", `url host "localhost" is refused by the deny list (loopback: the name localhost and every name under .localhost)`},
		{"http://LocalHost:8080", `url host "localhost" is refused`},
		{"http://app.localhost", "(loopback: the name localhost"},
		{"http://a.b.localhost:9000", "(loopback: the name localhost"},
		{"http://%6cocalhost/", `is not a valid URL`},
		{"http://localhost.localdomain", "(loopback: a usual /etc/hosts name"},
		{"http://ip6-localhost", "(loopback: a usual /etc/hosts name"},
		{"http://metadata.google.internal", "(the cloud metadata service (Google Cloud))"},
		// IPv6
		{"http://[::1]", `url host "::1" is refused by the deny list (loopback)`},
		{"http://[0:0:0:0:0:0:0:1]:8080", `url host "0:0:0:0:0:0:0:1" is refused by the deny list (loopback)`},
		{"http://[::]", "(unspecified"},
		{"http://[fe80::1]", "(link-local)"},
		{"http://[fe80::a9fe:a9fe]", "(link-local)"},
		{"http://[febf::1]", "(link-local)"},
		{"http://[fe80::1%25eth0]", "(link-local)"},
		{"http://[ff02::1]", "(multicast)"},
		{"http://[fd00:ec2::254]", "(the cloud metadata service (AWS, IPv6))"},
		{"http://[::ffff:127.0.0.1]", `url host "::ffff:127.0.0.1" is refused by the deny list (loopback)`},
		{"http://[::ffff:7f00:1]", "(loopback)"},
		{"http://[::FFFF:169.254.169.254]", "(link-local: includes the cloud metadata service"},
		{"http://[::ffff:0.0.0.0]", "(unspecified"},
		{"http://[64:ff9b::7f00:1]", "(loopback: 127.0.0.1 embedded in the NAT64 prefix 64:ff9b::/96)"},
		{"http://[64:ff9b::169.254.169.254]", "(link-local: includes the cloud metadata service 169.254.169.254: 169.254.169.254 embedded in the NAT64 prefix"},
		{"http://[::127.0.0.1]", "(loopback: 127.0.0.1 embedded in IPv4-compatible IPv6 (::/96))"},
		{"http://[::ffff:0:a9fe:a9fe]", "embedded in IPv4-translated IPv6"},
		// ports refused on every host
		{"http://10.16.0.147:15000", `url port 15000 is refused by the deny list on every host (the Envoy admin port of sidecars (15000)`},
		{"http://shadow.example.com:15000", "url port 15000 is refused"},
		{"http://[2001:db8::1]:15000", "url port 15000 is refused"},
		{"https://10.16.0.147:18000", `url port 18000 is refused by the deny list on every host (the control plane's xDS port (18000))`},
		// ordinary addresses stay open under the same allowlist
		{"http://10.16.0.147", ""},
		{"http://10.16.0.147:8080", ""},
		{"https://203.0.113.9:15001", ""},
		{"http://[2001:db8::1]:8080", ""},
		{"http://[::ffff:10.16.0.147]", ""},
		{"http://[64:ff9b::10.16.0.147]", ""},
		{"http://shadow.example.com", ""},
		{"http://notlocalhost.example.com", ""},
		{"http://localhost.example.com", ""}, // a name like any other: it resolves in the sidecar
	}
	checkURLTargets(t, wideOpen, tests)
}

// urlCase is a URL target and a substring of its one problem ("" means
// accepted).
type urlCase struct{ url, want string }

func checkURLTargets(t *testing.T, opts ParseOptions, tests []urlCase) {
	t.Helper()
	for _, tt := range tests {
		_, _, problems := parseURLTarget(tt.url, opts)
		switch {
		case tt.want == "" && len(problems) > 0:
			t.Errorf("%s: want accepted, got %q", tt.url, problems)
		case tt.want != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.want)):
			t.Errorf("%s: want one problem containing %q, got %q", tt.url, tt.want, problems)
		}
	}
}

// TestDenyListControlPlane: the control plane's own addresses and ports,
// passed in ParseOptions, are refused like the built-in rules.
func TestDenyListControlPlane(t *testing.T) {
	opts := wideOpen
	opts.DeniedAddresses = []netip.Prefix{netip.MustParsePrefix("10.16.5.9/32"), netip.MustParsePrefix("fd00:1::9/128")}
	opts.DeniedPorts = []uint32{19000}
	tests := []urlCase{
		{"http://10.16.5.9:8080", `url host "10.16.5.9" is refused by the deny list (the control plane's own address)`},
		{"http://[::ffff:10.16.5.9]", "(the control plane's own address)"},
		{"http://[64:ff9b::10.16.5.9]", "(the control plane's own address: 10.16.5.9 embedded in the NAT64 prefix"},
		{"http://[fd00:1::9]", "(the control plane's own address)"},
		{"http://0x0a100509", "which resolvers read as 10.16.5.9, is refused by the deny list (the control plane's own address)"},
		{"http://10.16.0.147:19000", "url port 19000 is refused by the deny list on every host (a port the control plane serves on (19000))"},
		{"http://10.16.5.10:8080", ""},
		{"http://[fd00:1::10]", ""},
	}
	checkURLTargets(t, opts, tests)
	// Without the options the same targets are ordinary.
	checkURLTargets(t, wideOpen, []urlCase{{"http://10.16.5.9:8080", ""}, {"http://10.16.0.147:19000", ""}})
}

func TestLooseIPv4(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means not an IPv4 spelling
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7F000001", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0177.0.0.01", "127.0.0.1"},
		{"4294967295", "255.255.255.255"},
		{"1.16777215", "1.255.255.255"},
		{"4294967296", ""},
		{"1.16777216", ""},
		{"256.0.0.1", ""},
		{"10.16.0.300", ""},
		{"1.2.3.4.5", ""},
		{"08.0.0.1", ""}, // 8 is not an octal digit
		{"0x", ""},
		{"1..2", ""},
		{"", ""},
		{"example.com", ""},
		{"0xcafe.example", ""},
		{"+1", ""},
	}
	for _, tt := range tests {
		addr, ok := looseIPv4(tt.in)
		got := ""
		if ok {
			got = addr.String()
		}
		if got != tt.want {
			t.Errorf("looseIPv4(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
