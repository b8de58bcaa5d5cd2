package policy

import (
	"strconv"
	"time"
)

// Policy is one validated mirror policy (schema v1): copy a share of the
// requests a Service receives on one port to one or more targets.
//
// Values here are already validated and defaulted by ParsePolicies; the
// translator trusts them.
type Policy struct {
	// Namespace is the ConfigMap's namespace; Service lives there too.
	Namespace string
	Name      string
	// Source says where the policy was read from, for messages.
	Source Source

	// Service whose incoming requests are copied, and which of its ports.
	Service string
	Port    PortRef

	// Match selects the requests to copy; the zero value copies all.
	Match Match

	// Mirrors are the copy targets, at least one.
	Mirrors []Mirror

	// CopyHeaders edits applied to the copies only.
	CopyHeaders CopyHeaders

	// MarkCopies adds the header CopyMarkerHeader: "<namespace>/<name>" to
	// every copy (default true).
	MarkCopies bool

	// HostSuffix asks Envoy to append "-shadow" to the Host of copies to
	// Service targets (default false: Host is kept as is).
	HostSuffix bool

	// Guard overrides the default protections of shadow clusters.
	Guard Guard
}

// CopyMarkerHeader is added to copies unless a policy sets markCopies: false.
const CopyMarkerHeader = "x-shadowplane-copy"

// Source locates a policy in Kubernetes.
type Source struct {
	ConfigMap string // ConfigMap name
	Key       string // data key, e.g. "policies.yaml"
	Index     int    // position in the key's policies list
}

// Match selects requests. All given conditions must hold.
type Match struct {
	// PathPrefix, when set, starts with "/".
	PathPrefix string
	// Methods in upper case, sorted, no duplicates; empty means any method.
	Methods []string
	// Headers, all of which must match, sorted by name then kind.
	Headers []HeaderMatch
}

// IsZero reports whether the match selects every request.
func (m Match) IsZero() bool {
	return m.PathPrefix == "" && len(m.Methods) == 0 && len(m.Headers) == 0
}

// HeaderMatch matches one request header. Exactly one of Exact, Prefix,
// Regex is set, or Present is true.
type HeaderMatch struct {
	Name    string // lower case
	Exact   string
	Prefix  string
	Regex   string // RE2
	Present bool
}

// Mirror is one copy target: a Service in the cluster (Service != "") or a
// URL outside it (URL != "").
type Mirror struct {
	// Name is stable and unique within the policy; it is part of the
	// runtime key. Defaults to "<namespace>.<service>.<port>" for Service
	// targets and the URL's host[:port] for URL targets, with characters
	// outside [a-z0-9-_.] replaced by "_".
	Name string

	// Service target.
	Service   string
	Namespace string // defaults to the policy's namespace
	Port      PortRef

	// URL target, already parsed.
	URL *URLTarget
	// TLS, for an https URL target only: CA, client certificate and SNI;
	// nil means the system trust store, no client certificate and the
	// URL's host as SNI.
	TLS *MirrorTLS

	// Host, when set, is the Host (:authority) of the copies, host[:port]
	// lower-cased; else Service targets keep the request's Host and URL
	// targets get the URL's.
	Host string

	// PartsPerMillion is the share of matching requests copied:
	// percent × 10,000 (so 25% = 250000, 1.5% = 15000, 0.0001% = 1).
	PartsPerMillion uint32
}

// URLTarget is a parsed URL mirror target.
type URLTarget struct {
	Raw    string // as written
	Scheme string // "http" or "https"
	Host   string // host name or IP, no port
	Port   uint32 // explicit or the scheme's default
}

// CopyHeaders are header edits applied only to copies.
type CopyHeaders struct {
	// Remove lists header names (lower case, sorted) removed from copies.
	Remove []string
	// Set lists headers (names lower case, sorted by name) set on copies,
	// replacing any value the request had.
	Set []HeaderValue
}

// HeaderValue is one header name and value.
type HeaderValue struct {
	Name  string
	Value string
}

// Guard holds the limits that keep a slow or dead shadow from hurting
// production. Zero fields take the defaults below.
type Guard struct {
	ConnectTimeout     time.Duration
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	// MaxBodyBytes is the largest request body copied: a copy is held in
	// Envoy until its body is complete and dropped when the body grows
	// past this, so a backed-up target can never slow the client's upload.
	MaxBodyBytes uint32
}

// Default guard values for shadow clusters.
const (
	DefaultConnectTimeout     = 250 * time.Millisecond
	DefaultMaxConnections     = 64
	DefaultMaxPendingRequests = 32
	DefaultMaxRequests        = 128
	DefaultMaxBodyBytes       = 4 << 20 // 4 MiB
)

// WithDefaults returns g with every zero field set to its default.
func (g Guard) WithDefaults() Guard {
	if g.ConnectTimeout == 0 {
		g.ConnectTimeout = DefaultConnectTimeout
	}
	if g.MaxConnections == 0 {
		g.MaxConnections = DefaultMaxConnections
	}
	if g.MaxPendingRequests == 0 {
		g.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if g.MaxRequests == 0 {
		g.MaxRequests = DefaultMaxRequests
	}
	if g.MaxBodyBytes == 0 {
		g.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return g
}

// RuntimeKey is the stable, readable runtime key holding the share of a
// mirror: "shadowplane.<namespace>.<policy>.<mirror>".
func RuntimeKey(p *Policy, m Mirror) string {
	return "shadowplane." + p.Namespace + "." + p.Name + "." + m.Name
}

// PortRef names a Service port by name or number; the zero value means "the
// Service's only port".
type PortRef struct {
	Name   string
	Number int32
}

// IsZero reports whether the reference names no port.
func (r PortRef) IsZero() bool { return r.Name == "" && r.Number == 0 }

func (r PortRef) String() string {
	if r.Name != "" {
		return r.Name
	}
	if r.Number != 0 {
		return strconv.Itoa(int(r.Number))
	}
	return ""
}
