package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/translator"
)

// invalidGroupPrefix starts the snapshot key of a node whose metadata names
// no valid node group. No snapshot is ever set under such a key, and the
// stream is closed on its first request.
const invalidGroupPrefix = "invalid/"

var (
	// namespaceName is a Kubernetes namespace name (RFC 1123 label).
	namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// serviceName is a Kubernetes Service name (RFC 1035 label).
	serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// NodeGroupFromNode reads a sidecar's node group from the node metadata that
// `shadowplane bootstrap` writes. Every error names the node and the
// metadata key at fault.
func NodeGroupFromNode(node *corev3.Node) (translator.NodeGroup, error) {
	if node == nil {
		return translator.NodeGroup{}, errors.New("the request carries no node: the first request on an xDS stream must identify the node")
	}
	md := nodeMetadata{id: node.GetId(), fields: node.GetMetadata().GetFields()}

	namespace, err := md.required(translator.MetadataNamespace)
	if err != nil {
		return translator.NodeGroup{}, err
	}
	if len(namespace) > 63 || !namespaceName.MatchString(namespace) {
		return translator.NodeGroup{}, md.invalid(translator.MetadataNamespace, namespace, "is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)")
	}

	service, err := md.required(translator.MetadataService)
	if err != nil {
		return translator.NodeGroup{}, err
	}
	if len(service) > 63 || !serviceName.MatchString(service) {
		return translator.NodeGroup{}, md.invalid(translator.MetadataService, service, "is not a Kubernetes Service name (a lower-case letter, then letters, digits and '-', at most 63)")
	}

	portsValue, err := md.required(translator.MetadataPorts)
	if err != nil {
		return translator.NodeGroup{}, err
	}
	ports, err := translator.ParsePorts(portsValue)
	if err != nil {
		return translator.NodeGroup{}, fmt.Errorf("node %q: metadata key %q: %w", md.id, translator.MetadataPorts, err)
	}

	listen := translator.DefaultListenAddress
	if value, ok, err := md.optional(translator.MetadataListenAddress); err != nil {
		return translator.NodeGroup{}, err
	} else if ok {
		addr, perr := netip.ParseAddr(value)
		if perr != nil || addr.Zone() != "" {
			return translator.NodeGroup{}, md.invalid(translator.MetadataListenAddress, value, "is not an IP address such as 0.0.0.0 or ::")
		}
		// The canonical form keeps "::0" and "::" in one group.
		listen = addr.String()
	}

	return translator.NodeGroup{
		Namespace:     namespace,
		Service:       service,
		ListenAddress: listen,
		Ports:         ports,
	}, nil
}

// nodeMetadata reads string values from a node's metadata.
type nodeMetadata struct {
	id     string
	fields map[string]*structpb.Value
}

func (m nodeMetadata) required(key string) (string, error) {
	value, ok, err := m.optional(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("node %q: metadata key %q is missing or empty; render the sidecar's bootstrap with `shadowplane bootstrap`, which sets it", m.id, key)
	}
	return value, nil
}

// optional returns a key's trimmed value and whether it is set and
// non-empty; a value that is not a string is an error.
func (m nodeMetadata) optional(key string) (string, bool, error) {
	v, ok := m.fields[key]
	if !ok || v == nil {
		return "", false, nil
	}
	s, isString := v.GetKind().(*structpb.Value_StringValue)
	if !isString {
		return "", false, fmt.Errorf("node %q: metadata key %q must be a string, got %s", m.id, key, kindName(v))
	}
	value := strings.TrimSpace(s.StringValue)
	return value, value != "", nil
}

func (m nodeMetadata) invalid(key, value, why string) error {
	return fmt.Errorf("node %q: metadata key %q: %q %s", m.id, key, value, why)
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

// groupHash keys the snapshot cache by node group, so all sidecars of one
// Service share one snapshot.
type groupHash struct{}

// ID returns the node group key, or "invalid/<node id>" for a node whose
// metadata names no valid group (its stream is closed by the callbacks).
func (groupHash) ID(node *corev3.Node) string {
	group, err := NodeGroupFromNode(node)
	if err != nil {
		return invalidGroupPrefix + node.GetId()
	}
	return group.Key()
}
