package nodemeta

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NodeGroup identifies a set of sidecars that share one xDS snapshot: all
// sidecars fronting the same Service with the same listen address and
// listen→app port pairs.
type NodeGroup struct {
	// Namespace and Service name the Service the sidecar fronts.
	Namespace string
	Service   string
	// ListenAddress is the address the sidecar's listeners bind to; ""
	// means DefaultListenAddress.
	ListenAddress string
	// Ports are the sidecar's listen→app port pairs, sorted by Listen.
	Ports []PortPair
}

// PortPair is one inbound listener port of a sidecar and the application
// port on 127.0.0.1 that it forwards to.
type PortPair struct {
	Listen uint32
	App    uint32
}

// String renders the pair as in the metadata: "LISTEN:APP".
func (p PortPair) String() string {
	return strconv.FormatUint(uint64(p.Listen), 10) + ":" + strconv.FormatUint(uint64(p.App), 10)
}

// Key is the node group's stable identity, used as the snapshot cache key.
func (g NodeGroup) Key() string {
	var b strings.Builder
	b.WriteString(g.Namespace)
	b.WriteByte('/')
	b.WriteString(g.Service)
	b.WriteByte('@')
	addr := g.ListenAddress
	if addr == "" {
		addr = DefaultListenAddress
	}
	b.WriteString(addr)
	if len(g.Ports) > 0 {
		b.WriteByte('|')
		b.WriteString(FormatPorts(g.Ports))
	}
	return b.String()
}

// FormatPorts renders port pairs as the metadata value "LISTEN:APP,...".
func FormatPorts(ports []PortPair) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ParsePorts reads "LISTEN:APP,..." (the --ports flag and the metadata
// value; spaces around pairs are allowed) into valid port pairs sorted by
// listen port.
func ParsePorts(s string) ([]PortPair, error) {
	pairs, err := parsePorts(s)
	if err != nil {
		return nil, err
	}
	if err := ValidatePorts(pairs); err != nil {
		return nil, err
	}
	return sortedPorts(pairs), nil
}

var errNoPorts = errors.New("no port pairs: want LISTEN:APP[,LISTEN:APP...], e.g. 15001:8080")

// ValidatePorts checks port pairs as given: 1 to MaxPortPairs pairs, every
// port 1-65535, no listen port twice.
func ValidatePorts(pairs []PortPair) error {
	if len(pairs) == 0 {
		return errNoPorts
	}
	if len(pairs) > MaxPortPairs {
		return fmt.Errorf("%d port pairs, at most %d are allowed", len(pairs), MaxPortPairs)
	}
	seen := make(map[uint32]bool, len(pairs))
	for _, p := range pairs {
		pair := p.String()
		if p.Listen == 0 || p.Listen > 65535 {
			return notAPort(pair, "listen", strconv.FormatUint(uint64(p.Listen), 10))
		}
		if p.App == 0 || p.App > 65535 {
			return notAPort(pair, "app", strconv.FormatUint(uint64(p.App), 10))
		}
		if seen[p.Listen] {
			return fmt.Errorf("port pair %q: listen port %d given twice", pair, p.Listen)
		}
		seen[p.Listen] = true
	}
	return nil
}

// parsePorts reads the syntax of "LISTEN:APP,..." alone, keeping the
// pairs' order, so that ValidatePorts words every other problem the same
// for parsed and for given pairs.
func parsePorts(s string) ([]PortPair, error) {
	var out []PortPair
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		l, a, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("port pair %q: want LISTEN:APP, e.g. 15001:8080", part)
		}
		listen, err := parsePortNumber(part, "listen", l)
		if err != nil {
			return nil, err
		}
		app, err := parsePortNumber(part, "app", a)
		if err != nil {
			return nil, err
		}
		out = append(out, PortPair{Listen: listen, App: app})
	}
	return out, nil
}

func parsePortNumber(pair, side, s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, notAPort(pair, side, s)
	}
	return uint32(n), nil
}

func notAPort(pair, side, value string) error {
	return fmt.Errorf("port pair %q: %s port %q is not a port number (1-65535)", pair, side, value)
}

func sortedPorts(pairs []PortPair) []PortPair {
	out := slices.Clone(pairs)
	slices.SortStableFunc(out, func(a, b PortPair) int { return cmp.Compare(a.Listen, b.Listen) })
	return out
}
