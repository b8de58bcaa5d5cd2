// Package nodemeta owns the contract between a sidecar and the control
// plane: the Envoy node through which a sidecar says which Service it fronts
// and which ports it serves. `shadowplane bootstrap` writes it into the
// sidecar's bootstrap, `shadowplane inject` checks what it will pass to
// bootstrap, and the xDS server reads it from a stream's first request to
// find the sidecar's node group. All of them go through Metadata.Validate,
// so a bootstrap the CLI renders is one the server accepts, and a rejection
// reads the same wherever it happens.
//
// The contract. The node's id is non-empty and unique per sidecar (the pod
// name). Its metadata is a Struct whose values are strings, taken exactly
// as written (nothing is trimmed):
//
//	shadowplane.io/namespace       namespace of the fronted Service: an
//	                               RFC 1123 label (lower-case letters,
//	                               digits and '-', at most 63)
//	shadowplane.io/service         name of the fronted Service: an RFC 1035
//	                               label (also starts with a letter)
//	shadowplane.io/ports           listen→app port pairs, "15001:8080,15002:9090":
//	                               1 to MaxPortPairs pairs, ports 1-65535,
//	                               no listen port twice, any order
//	shadowplane.io/listen-address  optional: the IP address (no zone) the
//	                               listeners bind to; absent or empty means
//	                               0.0.0.0
//
// The node's cluster is "<service>.<namespace>", for Envoy's own logs and
// stats; the control plane does not read it. Sidecars with the same
// namespace, Service, listen address and port pairs form one NodeGroup and
// share one xDS snapshot.
package nodemeta

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The node metadata keys.
const (
	KeyNamespace     = "shadowplane.io/namespace"
	KeyService       = "shadowplane.io/service"
	KeyPorts         = "shadowplane.io/ports"
	KeyListenAddress = "shadowplane.io/listen-address"
)

// DefaultListenAddress is where sidecar listeners bind unless told otherwise.
const DefaultListenAddress = "0.0.0.0"

// MaxPortPairs bounds a sidecar's port pairs: each pair is a listener, a
// route and a cluster in every snapshot of its group.
const MaxPortPairs = 64

// Metadata is what a sidecar's node says about it.
type Metadata struct {
	// NodeID is unique per sidecar, e.g. the pod name.
	NodeID string
	// Namespace and Service name the Service the sidecar fronts.
	Namespace string
	Service   string
	// ListenAddress is where the listeners bind; "" means
	// DefaultListenAddress.
	ListenAddress string
	// Ports are the listen→app port pairs, in any order.
	Ports []PortPair
}

// Error is a node that breaks the contract: which node, which key, and
// what is wrong. Its text is the same wherever the problem is found.
type Error struct {
	NodeID string // "" when the node has no id
	Key    string // "" when the problem is the node itself
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.NodeID != "" {
		fmt.Fprintf(&b, "node %q: ", e.NodeID)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "metadata key %q: ", e.Key)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

var (
	errNoNode   = errors.New("the request carries no node: the first request on an xDS stream must identify the node")
	errNoNodeID = errors.New("the node id is empty: every sidecar needs a unique id, e.g. its pod name")
	errMissing  = errors.New("missing or empty; render the sidecar's bootstrap with `shadowplane bootstrap`, which sets it")
)

// Validate checks the metadata against the contract and returns the first
// problem, in key order, as an *Error.
func (m Metadata) Validate() error {
	if m.NodeID == "" {
		return &Error{Err: errNoNodeID}
	}
	checks := []struct {
		key   string
		check func() error
	}{
		{KeyNamespace, func() error { return required(m.Namespace, validateNamespace) }},
		{KeyService, func() error { return required(m.Service, ValidateService) }},
		{KeyPorts, func() error { return required(m.Ports, ValidatePorts) }},
		{KeyListenAddress, func() error { return validateListenAddress(m.ListenAddress) }},
	}
	for _, c := range checks {
		if err := c.check(); err != nil {
			return &Error{NodeID: m.NodeID, Key: c.key, Err: err}
		}
	}
	return nil
}

// required reports a missing value as such, and checks a present one.
func required[T string | []PortPair](value T, check func(T) error) error {
	if len(value) == 0 {
		return errMissing
	}
	return check(value)
}

func validateNamespace(namespace string) error {
	if len(validation.IsDNS1123Label(namespace)) > 0 {
		return fmt.Errorf("%q is not a Kubernetes namespace name (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63)", namespace)
	}
	return nil
}

// ValidateService checks the name of the fronted Service.
func ValidateService(name string) error {
	if len(validation.IsDNS1035Label(name)) > 0 {
		return fmt.Errorf("%q is not a Kubernetes Service name (a lower-case letter, then lower-case letters, digits and '-', ending with a letter or digit, at most 63)", name)
	}
	return nil
}

func validateListenAddress(address string) error {
	if address == "" {
		return nil
	}
	if addr, err := netip.ParseAddr(address); err != nil || addr.Zone() != "" {
		return fmt.Errorf("%q is not an IP address such as 0.0.0.0 or ::", address)
	}
	return nil
}

// FromNode reads a sidecar's metadata from its Envoy node and validates it.
// Every error is an *Error naming the node and the key at fault.
func FromNode(node *corev3.Node) (Metadata, error) {
	if node == nil {
		return Metadata{}, &Error{Err: errNoNode}
	}
	m := Metadata{NodeID: node.GetId()}
	fields := node.GetMetadata().GetFields()
	var ports string
	for _, f := range []struct {
		key string
		to  *string
	}{
		{KeyNamespace, &m.Namespace},
		{KeyService, &m.Service},
		{KeyPorts, &ports},
		{KeyListenAddress, &m.ListenAddress},
	} {
		value, err := stringField(fields, f.key)
		if err != nil {
			return Metadata{}, &Error{NodeID: m.NodeID, Key: f.key, Err: err}
		}
		*f.to = value
	}
	pairs, err := parsePorts(ports)
	if err != nil {
		return Metadata{}, &Error{NodeID: m.NodeID, Key: KeyPorts, Err: err}
	}
	m.Ports = pairs
	// The syntax is read above; every rule of the contract is checked here,
	// exactly as before rendering a bootstrap.
	if err := m.Validate(); err != nil {
		return Metadata{}, err
	}
	return m, nil
}

// GroupFromNode reads and validates a node's metadata and returns its node
// group.
func GroupFromNode(node *corev3.Node) (NodeGroup, error) {
	m, err := FromNode(node)
	if err != nil {
		return NodeGroup{}, err
	}
	return m.Group(), nil
}

// stringField returns a metadata value, "" when absent; a value that is not
// a string is an error.
func stringField(fields map[string]*structpb.Value, key string) (string, error) {
	v, ok := fields[key]
	if !ok || v == nil {
		return "", nil
	}
	s, isString := v.GetKind().(*structpb.Value_StringValue)
	if !isString {
		return "", fmt.Errorf("must be a string, got %s", kindName(v))
	}
	return s.StringValue, nil
}

func kindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return "null"
	case *structpb.Value_NumberValue:
		return "a number"
	case *structpb.Value_BoolValue:
		return "a boolean"
	case *structpb.Value_StructValue:
		return "an object"
	case *structpb.Value_ListValue:
		return "a list"
	default:
		return "an empty value"
	}
}

// Node is the Envoy node of the sidecar: id, cluster and metadata, exactly
// as the bootstrap carries it. It does not validate; call Validate first.
func (m Metadata) Node() *corev3.Node {
	return &corev3.Node{
		Id:      m.NodeID,
		Cluster: m.Service + "." + m.Namespace,
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			KeyNamespace:     structpb.NewStringValue(m.Namespace),
			KeyService:       structpb.NewStringValue(m.Service),
			KeyPorts:         structpb.NewStringValue(FormatPorts(m.Ports)),
			KeyListenAddress: structpb.NewStringValue(m.listenAddress()),
		}},
	}
}

// Group returns the node group of valid metadata: the listen address in
// canonical form (so "::0" and "::" are one group) and the port pairs
// sorted by listen port.
func (m Metadata) Group() NodeGroup {
	listen := m.listenAddress()
	if addr, err := netip.ParseAddr(listen); err == nil {
		listen = addr.String()
	}
	return NodeGroup{
		Namespace:     m.Namespace,
		Service:       m.Service,
		ListenAddress: listen,
		Ports:         sortedPorts(m.Ports),
	}
}

// listenAddress is the listen address as written, or the default.
func (m Metadata) listenAddress() string {
	if m.ListenAddress == "" {
		return DefaultListenAddress
	}
	return m.ListenAddress
}
