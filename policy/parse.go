package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits of one policy data key. They keep a single ConfigMap from making the
// control plane slow or its xDS resources huge.
const (
	// MaxPolicyKeyBytes is the largest data key that is parsed.
	MaxPolicyKeyBytes = 256 << 10
	// MaxPoliciesPerKey is the most policies one data key may hold.
	MaxPoliciesPerKey = 200
	// MaxMirrorsPerPolicy is the most mirrors one policy may have.
	MaxMirrorsPerPolicy = 16
)

// ParseOptions carries the control plane's settings that affect validation.
type ParseOptions struct {
	// AllowedURLHosts are the --allow-url-target patterns: exact host names
	// or IPs, "*.example.com" wildcards (one or more labels), or CIDRs like
	// "10.16.0.0/16". A URL target whose host matches none is rejected.
	// No pattern opens a host or port on the deny list (see denylist.go).
	AllowedURLHosts []string
	// DeniedAddresses are the control plane's own addresses (its pod IP,
	// a specific xDS listen IP), refused as URL targets like the built-in
	// deny list. IPv4 addresses must be given as IPv4 prefixes.
	DeniedAddresses []netip.Prefix
	// DeniedPorts are ports the control plane serves on (its xDS port when
	// not the default 18000), refused as URL target ports on every host.
	DeniedPorts []uint32
}

// PolicyError is one problem found in a policy ConfigMap.
type PolicyError struct {
	Namespace, ConfigMap, Key string
	// Policy is the policy's name as written; "" when the problem is not
	// inside one named policy. With Index -1 the whole key is unusable
	// (YAML syntax, oversized key, a bad top level); with Index >= 0 the
	// policy at that position has no usable name.
	Policy string
	// Index is the position in the policies list, -1 when the problem is
	// not inside one policy.
	Index int
	// Field is the dotted path inside the policy, e.g. "mirrors[1].percent",
	// or a top-level path like "policies"; "" when the problem concerns the
	// whole policy or key.
	Field string
	// Message says what is wrong and what would be valid.
	Message string
	// Warning marks a problem that keeps the policy in force (a target
	// that does not exist yet).
	Warning bool
}

// Error renders the problem kubectl-style:
// configmap "default/mirror-policies" key "policies.yaml" policy "p": mirrors[1].percent: must be ...
func (e *PolicyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "configmap %q", e.Namespace+"/"+e.ConfigMap)
	if e.Key != "" {
		fmt.Fprintf(&b, " key %q", e.Key)
	}
	switch {
	case e.Policy != "":
		fmt.Fprintf(&b, " policy %q", e.Policy)
	case e.Index >= 0:
		fmt.Fprintf(&b, " policies[%d] (unnamed)", e.Index)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// KeyWide reports whether the problem makes the whole data key unusable, so
// that no policy of the key can be trusted.
func (e *PolicyError) KeyWide() bool { return e.Index < 0 && !e.Warning }

// ParsePolicies parses one data key (e.g. "policies.yaml") of the policy
// ConfigMap namespace/configMap. It returns every valid policy and one
// *PolicyError per problem. A problem in one policy never drops the valid
// policies beside it; a problem of the whole key (see PolicyError.KeyWide)
// yields no policies.
func ParsePolicies(namespace, configMap, key string, data []byte, opts ParseOptions) ([]*Policy, []*PolicyError) {
	k := &keyParser{namespace: namespace, configMap: configMap, key: key, opts: opts}
	return k.parseBytes(data)
}

// keyParser collects the policies and problems of one data key.
type keyParser struct {
	namespace, configMap, key string
	opts                      ParseOptions
	// lineOffset is added to YAML line numbers so that messages point into
	// the file a user edits (a key embedded in a ConfigMap manifest).
	lineOffset int
	errs       []*PolicyError
}

// fail records a problem of the whole key.
func (k *keyParser) fail(field string, n *yaml.Node, format string, args ...any) {
	k.errs = append(k.errs, k.newError("", -1, field, n, fmt.Sprintf(format, args...)))
}

func (k *keyParser) newError(policy string, index int, field string, n *yaml.Node, msg string) *PolicyError {
	return &PolicyError{
		Namespace: k.namespace, ConfigMap: k.configMap, Key: k.key,
		Policy: policy, Index: index, Field: field,
		Message: msg + k.lineSuffix(n),
	}
}

// line is n's line in the file the user edits.
func (k *keyParser) line(n *yaml.Node) int { return n.Line + k.lineOffset }

// lineSuffix is " (line N)" for a node with a known position.
func (k *keyParser) lineSuffix(n *yaml.Node) string {
	if n == nil || n.Line <= 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d)", k.line(n))
}

func (k *keyParser) hasKeyWideError() bool {
	for _, e := range k.errs {
		if e.KeyWide() {
			return true
		}
	}
	return false
}

// parseBytes decodes one data key holding exactly one YAML document.
func (k *keyParser) parseBytes(data []byte) ([]*Policy, []*PolicyError) {
	if len(data) > MaxPolicyKeyBytes {
		k.fail("", nil, "the key holds %d bytes, more than the limit of %d (256 KiB): split the policies over several keys or ConfigMaps",
			len(data), MaxPolicyKeyBytes)
		return nil, k.errs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty key holds no policies
		}
		k.fail("", nil, "invalid YAML: %s", k.yamlErrorText(err))
		return nil, k.errs
	}
	var extra yaml.Node
	switch err := decodeNode(dec, &extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		k.fail("", nil, "invalid YAML: %s", k.yamlErrorText(err))
	case !isEmptyDocument(&extra):
		k.fail("", &extra, "the key holds more than one YAML document: remove the \"---\" and put all policies in one \"policies\" list")
	}
	return k.parseDocument(&doc)
}

// parseDocument parses a decoded document whose top level is {policies: [...]}.
func (k *keyParser) parseDocument(doc *yaml.Node) ([]*Policy, []*PolicyError) {
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, k.errs
		}
		root = doc.Content[0]
	}
	if isNullNode(root) {
		return nil, k.errs
	}
	if root.Kind != yaml.MappingNode {
		k.fail("", root, "the key must hold a mapping with one field, \"policies\" (a list of policies), got %s", describeNode(root))
		return nil, k.errs
	}
	fields, _ := mappingFields(k, "", root, "policies")
	items, ok := optionalSequence(k, "policies", fields["policies"])
	if !ok {
		return nil, k.errs
	}
	if len(items) > MaxPoliciesPerKey {
		k.fail("policies", fields["policies"], "holds %d policies, more than the limit of %d per key: split them over several keys or ConfigMaps",
			len(items), MaxPoliciesPerKey)
		return nil, k.errs
	}
	policies := k.parsePolicyList(items)
	if k.hasKeyWideError() {
		return nil, k.errs
	}
	return policies, k.errs
}

// parsePolicyList parses each policy on its own, then drops every policy
// whose name is used more than once in the key: which one the user meant is
// unknowable, so none of them replaces the version in force.
func (k *keyParser) parsePolicyList(items []*yaml.Node) []*Policy {
	firstIndex := map[string]int{}
	duplicated := map[string]bool{}
	var parsed []*Policy
	for i, item := range items {
		pp := &policyParser{k: k, index: i, node: item}
		pp.name = peekName(item)
		if pp.name != "" {
			if first, seen := firstIndex[pp.name]; seen {
				duplicated[pp.name] = true
				pp.fail("name", nameNode(item),
					"policy name %q is already used by policies[%d] in this key: policy names must be unique, so none of the policies named %q is used until you rename or remove one",
					pp.name, first, pp.name)
			} else {
				firstIndex[pp.name] = i
			}
		}
		if p := pp.parse(); p != nil {
			parsed = append(parsed, p)
		}
	}
	var out []*Policy
	for _, p := range parsed {
		if !duplicated[p.Name] {
			out = append(out, p)
		}
	}
	return out
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlErrorText strips the library prefix from a YAML error and shifts its
// line numbers by the key's offset in the file.
func (k *keyParser) yamlErrorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if k.lineOffset == 0 {
		return msg
	}
	return yamlLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, convErr := strconv.Atoi(strings.TrimPrefix(s, "line "))
		if convErr != nil {
			return s
		}
		return "line " + strconv.Itoa(n+k.lineOffset)
	})
}

// decodeNode decodes the next document, turning a panic inside the YAML
// library into an error: a malformed ConfigMap must never crash the
// control plane.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// isEmptyDocument reports whether a decoded document holds nothing but null.
func isEmptyDocument(doc *yaml.Node) bool {
	if doc.Kind != yaml.DocumentNode {
		return isNullNode(doc)
	}
	return len(doc.Content) == 0 || isNullNode(doc.Content[0])
}
