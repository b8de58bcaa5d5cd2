package controlplane

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseOptionsDenyOwnAddresses(t *testing.T) {
	prefixes := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	tests := []struct {
		name      string
		cfg       Config
		podIP     string
		wantAddrs []netip.Prefix
		wantPorts []uint32
		wantErr   string
	}{
		{name: "wildcard listeners, no pod IP", cfg: Config{XDSAddress: ":18000", HTTPAddress: ":9090"}},
		{name: "pod IP", cfg: Config{XDSAddress: ":18000", HTTPAddress: ":9090"}, podIP: "10.16.5.9",
			wantAddrs: prefixes("10.16.5.9/32")},
		{name: "IPv6 pod IP", cfg: Config{XDSAddress: "[::]:18000", HTTPAddress: "0.0.0.0:9090"}, podIP: "fd00:1::9",
			wantAddrs: prefixes("fd00:1::9/128")},
		{name: "IPv4-mapped pod IP is taken as IPv4", cfg: Config{XDSAddress: ":18000"}, podIP: "::ffff:10.16.5.9",
			wantAddrs: prefixes("10.16.5.9/32")},
		{name: "specific listen IPs and another xDS port", cfg: Config{XDSAddress: "10.16.5.9:19000", HTTPAddress: "[fd00::7]:9090"},
			wantAddrs: prefixes("10.16.5.9/32", "fd00::7/128"), wantPorts: []uint32{19000}},
		{name: "listen host name is not resolved", cfg: Config{XDSAddress: "cp.example.com:18000", HTTPAddress: ":9090"}},
		{name: "port 0 is not a port", cfg: Config{XDSAddress: "127.0.0.1:0", HTTPAddress: "127.0.0.1:0"},
			wantAddrs: prefixes("127.0.0.1/32")},
		{name: "bad pod IP", cfg: Config{XDSAddress: "10.16.5.9:18000"}, podIP: "pod-ip",
			wantAddrs: prefixes("10.16.5.9/32"), wantErr: `POD_IP="pod-ip" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.AllowedURLHosts = []string{"10.16.0.0/16"}
			opts, err := parseOptions(tt.cfg, tt.podIP)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !slices.Equal(opts.AllowedURLHosts, tt.cfg.AllowedURLHosts) {
				t.Errorf("AllowedURLHosts = %q, want %q", opts.AllowedURLHosts, tt.cfg.AllowedURLHosts)
			}
			if !slices.Equal(opts.DeniedAddresses, tt.wantAddrs) {
				t.Errorf("DeniedAddresses = %v, want %v", opts.DeniedAddresses, tt.wantAddrs)
			}
			if !slices.Equal(opts.DeniedPorts, tt.wantPorts) {
				t.Errorf("DeniedPorts = %v, want %v", opts.DeniedPorts, tt.wantPorts)
			}
		})
	}
}
