package controlplane

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/shadowplane/shadowplane/policy"
)

// PodIPEnv is the environment variable holding the control plane's pod IP
// (the downward API's status.podIP, set in deploy/shadowplane.yaml).
const PodIPEnv = "POD_IP"

// parseOptions are the policy parser's settings: the URL-target allowlist,
// and for the deny list the control plane's own addresses (podIP, the listen
// addresses when they name a specific IP) and its xDS port. An error names
// a podIP that is not an IP; the options are complete without it.
func parseOptions(cfg Config, podIP string) (policy.ParseOptions, error) {
	opts := policy.ParseOptions{AllowedURLHosts: cfg.AllowedURLHosts}
	addOwn := func(addr netip.Addr) {
		addr = addr.WithZone("").Unmap()
		own := netip.PrefixFrom(addr, addr.BitLen())
		// A wildcard listen address is not an address of the pod (and the
		// deny list refuses it anyway).
		if !addr.IsUnspecified() && !slices.Contains(opts.DeniedAddresses, own) {
			opts.DeniedAddresses = append(opts.DeniedAddresses, own)
		}
	}
	var podIPErr error
	if podIP != "" {
		if addr, err := netip.ParseAddr(podIP); err == nil {
			addOwn(addr)
		} else {
			podIPErr = fmt.Errorf("%s=%q is not an IP address, so the deny list for URL targets lacks the pod's own address: %w", PodIPEnv, podIP, err)
		}
	}
	for _, listen := range []string{cfg.XDSAddress, cfg.HTTPAddress} {
		host, _, err := net.SplitHostPort(listen)
		if err != nil {
			continue // net.Listen reports it
		}
		if addr, err := netip.ParseAddr(host); err == nil {
			addOwn(addr)
		}
	}
	if _, port, err := net.SplitHostPort(cfg.XDSAddress); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err == nil && n != 0 && n != policy.DefaultXDSPort {
			opts.DeniedPorts = append(opts.DeniedPorts, uint32(n))
		}
	}
	return opts, podIPErr
}

// ownParseOptions is parseOptions with the pod IP from the environment; a
// bad one is logged, as the downward API never sets one.
func ownParseOptions(cfg Config) policy.ParseOptions {
	opts, err := parseOptions(cfg, os.Getenv(PodIPEnv))
	if err != nil {
		cfg.Logger.Warn("ignoring the pod IP", "error", err)
	}
	return opts
}
