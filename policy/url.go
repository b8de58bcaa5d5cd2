package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

const urlShape = "http://host[:port] or https://host[:port]"

// parseURLTarget validates a URL mirror target. hostPort is the host plus
// the port when the URL spells one out, for the mirror's default name.
// Credentials are never echoed back in problems.
func parseURLTarget(raw string, opts ParseOptions) (t *URLTarget, hostPort string, problems []string) {
	if raw == "" {
		return nil, "", []string{"must not be empty: write " + urlShape}
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return nil, "", []string{"must not contain spaces or control characters: write " + urlShape}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the wrapper repeats the URL, which may hold a password
		}
		return nil, "", []string{fmt.Sprintf("is not a valid URL (%v): write %s", err, urlShape)}
	}
	switch {
	case u.Scheme == "":
		return nil, "", []string{fmt.Sprintf("must start with http:// or https://, got %s", quoteShort(u.Redacted()))}
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", []string{fmt.Sprintf("scheme must be http or https, got %s", quoteShort(u.Scheme))}
	case u.Opaque != "":
		return nil, "", []string{fmt.Sprintf("must look like %s, got %s", urlShape, quoteShort(u.Redacted()))}
	}
	if u.User != nil {
		problems = append(problems, "must not contain a user name or password: to send credentials with the copies, use copyHeaders.set (e.g. an authorization header)")
	}
	if u.RawQuery != "" || u.ForceQuery {
		problems = append(problems, "must not have a query (\"?...\"): the copy keeps the original request's path and query")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		problems = append(problems, "must not have a fragment (\"#...\")")
	}
	if u.Path != "" && u.Path != "/" {
		problems = append(problems, fmt.Sprintf("has the path %s, but Envoy's mirror policy cannot rewrite the path: the copy keeps the original request's path, so write the URL without a path, e.g. %s://%s",
			quoteShort(u.EscapedPath()), u.Scheme, u.Host))
	}
	host := strings.ToLower(u.Hostname())
	// The deny list comes before the allowlist, whose advice to add the
	// host to --allow-url-target would not help.
	if problem := deniedHostProblem(host, opts); problem != "" {
		return nil, "", append(problems, problem)
	}
	if problem := checkURLHost(host); problem != "" {
		return nil, "", append(problems, problem)
	}
	port, explicitPort, problem := urlPort(u)
	if problem == "" {
		problem = deniedPortProblem(port, opts)
	}
	if problem != "" {
		return nil, "", append(problems, problem)
	}
	if !hostAllowed(host, opts.AllowedURLHosts) {
		problems = append(problems, fmt.Sprintf("url host %q is not allowed: start the control plane with --allow-url-target=%s (or a matching pattern) to allow it", host, host))
	}
	if len(problems) > 0 {
		return nil, "", problems
	}
	hostPort = host
	if explicitPort {
		hostPort += ":" + strconv.Itoa(int(port))
	}
	return &URLTarget{Raw: raw, Scheme: u.Scheme, Host: host, Port: port}, hostPort, nil
}

// checkURLHost accepts an IP address (no IPv6 zone) or a DNS name.
func checkURLHost(host string) string {
	if host == "" {
		return "must name a host, e.g. http://10.16.0.147:8080"
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" {
			return fmt.Sprintf("host %s must not carry an IPv6 zone", quoteShort(host))
		}
		return ""
	}
	if strings.Contains(host, ":") {
		return fmt.Sprintf("host %s is not a valid IPv6 address", quoteShort(host))
	}
	if addr, ok := looseIPv4(host); ok {
		return fmt.Sprintf("host %s is not a dotted-quad IPv4 address, yet resolvers read it as %s: write the address as four decimal numbers without leading zeros, %s", quoteShort(host), addr, addr)
	}
	if !isDNSName(host) {
		return fmt.Sprintf("host %s is not a valid host name or IP address", quoteShort(host))
	}
	return ""
}

// looseIPv4 reads host the way inet_aton(3) and many resolvers do: one to
// four dot-separated numbers, each decimal, octal (leading 0) or hex (0x),
// the last filling the remaining bytes, with one trailing dot allowed. So
// 2130706433, 0x7f.0.0.1, 0177.0.0.1 and 127.1 all read as 127.0.0.1.
// Go's parsers reject these spellings; the sidecar's resolver may not.
func looseIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, part := range parts {
		n, ok := looseNumber(part)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 0xff {
				return netip.Addr{}, false
			}
			v |= n << (8 * (3 - i))
			continue
		}
		// The last part fills the 4-i bytes that are left.
		if n >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		v |= n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// looseNumber parses one part of looseIPv4.
func looseNumber(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	n, err := strconv.ParseUint(s, base, 32)
	return n, err == nil
}

// isDNSName reports whether s is a DNS name of RFC 1123 labels whose last
// label is not all digits (that would be a mistyped IPv4 address).
func isDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !dnsLabel.valid(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' })
}

// urlPort returns the URL's port, or the scheme's default.
func urlPort(u *url.URL) (port uint32, explicit bool, problem string) {
	p := u.Port()
	if p == "" {
		if strings.HasSuffix(u.Host, ":") {
			return 0, false, "has an empty port after \":\": give a port from 1 to 65535 or leave the \":\" out"
		}
		if u.Scheme == "https" {
			return 443, false, ""
		}
		return 80, false, ""
	}
	n, err := strconv.Atoi(p)
	if err != nil || len(validation.IsValidPortNum(n)) != 0 {
		return 0, false, fmt.Sprintf("port must be from 1 to 65535, got %s", quoteShort(p))
	}
	return uint32(n), true, ""
}

// hostAllowed reports whether host matches one of the --allow-url-target
// patterns: an exact host name or IP, "*.example.com" (one or more labels
// in front of example.com), or a CIDR such as "10.16.0.0/16".
func hostAllowed(host string, patterns []string) bool {
	addr, err := netip.ParseAddr(host)
	isIP := err == nil
	addr = addr.Unmap()
	for _, pat := range patterns {
		pat = normalizeHostPattern(pat)
		switch {
		case strings.Contains(pat, "/"):
			prefix, err := netip.ParsePrefix(pat)
			if err == nil && isIP && prefix.Contains(addr) {
				return true
			}
		case strings.HasPrefix(pat, "*."):
			suffix := pat[1:] // ".example.com"
			if !isIP && len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
				return true
			}
		case isIP:
			if pa, err := netip.ParseAddr(pat); err == nil && pa.Unmap() == addr {
				return true
			}
		default:
			if host == pat {
				return true
			}
		}
	}
	return false
}

func normalizeHostPattern(pat string) string {
	pat = strings.ToLower(strings.TrimSpace(pat))
	pat = strings.TrimSuffix(strings.TrimPrefix(pat, "["), "]")
	return strings.TrimSuffix(pat, ".")
}

// ValidateURLHostPattern checks one --allow-url-target value, so the control
// plane can refuse a bad flag at start-up instead of silently matching
// nothing.
func ValidateURLHostPattern(pattern string) error {
	pat := normalizeHostPattern(pattern)
	switch {
	case pat == "":
		return fmt.Errorf("empty --allow-url-target pattern: give a host name, an IP, *.example.com or a CIDR such as 10.16.0.0/16")
	case strings.Contains(pat, "/"):
		if _, err := netip.ParsePrefix(pat); err != nil {
			return fmt.Errorf("--allow-url-target=%s: not a valid CIDR such as 10.16.0.0/16: %w", pattern, err)
		}
	case strings.HasPrefix(pat, "*."):
		if !isDNSName(pat[2:]) {
			return fmt.Errorf("--allow-url-target=%s: after \"*.\" must come a DNS name such as example.com", pattern)
		}
	default:
		if problem := checkURLHost(pat); problem != "" {
			return fmt.Errorf("--allow-url-target=%s: want a host name, an IP, *.example.com or a CIDR such as 10.16.0.0/16", pattern)
		}
	}
	return nil
}
