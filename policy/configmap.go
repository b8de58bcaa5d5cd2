package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PolicyConfigMapLabel marks the ConfigMaps shadowplane reads policies from;
// its value must be "true".
const PolicyConfigMapLabel = "shadowplane.io/policy"

// maxPolicyFileBytes bounds the files ParseConfigMapFile reads.
const maxPolicyFileBytes = 4 << 20

// ParseConfigMapFile parses a YAML or JSON file holding ConfigMap manifests
// (a kind: List of them too) or bare policy files ({policies: [...]}),
// several documents separated by "---" allowed; it backs the offline
// `shadowplane validate -f` command. For a bare file the namespace is
// "default" and the ConfigMap name and key are the file's name. Only data
// keys ending in ".yaml" or ".yml" hold policies; other keys and documents
// of other kinds are ignored. A ConfigMap without the policy label yields a
// warning and is not parsed, as the control plane would ignore it. Policy
// names must be unique within a namespace across the whole file.
func ParseConfigMapFile(fileName string, data []byte, opts ParseOptions) ([]*Policy, []*PolicyError) {
	if fileName == "" {
		fileName = "stdin"
	}
	f := &fileParser{fileName: fileName, size: len(data), opts: opts}
	if len(data) > maxPolicyFileBytes {
		f.fail("default", fileName, "", nil, fmt.Sprintf("the file holds %d bytes, more than the limit of %d", len(data), maxPolicyFileBytes))
		return nil, f.errs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decodeNode(dec, &doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.fail("default", fileName, "", nil, "invalid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
			break
		}
		if !isEmptyDocument(&doc) {
			f.parseDocument(doc.Content[0])
		}
	}
	return f.dropDuplicateNames(), f.errs
}

// fileParser collects the policies and problems of a whole file.
type fileParser struct {
	fileName string
	size     int
	opts     ParseOptions
	policies []*Policy
	errs     []*PolicyError
}

// fail records a problem outside any data key.
func (f *fileParser) fail(namespace, configMap, field string, n *yaml.Node, msg string) *PolicyError {
	if n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	e := &PolicyError{Namespace: namespace, ConfigMap: configMap, Index: -1, Field: field, Message: msg}
	f.errs = append(f.errs, e)
	return e
}

func (f *fileParser) parseDocument(root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		f.fail("default", f.fileName, "", root, fmt.Sprintf("each document must be a ConfigMap manifest or a policy file ({policies: [...]}), got %s", describeNode(root)))
		return
	}
	top := plainFields(root)
	if top["kind"] == nil && top["apiVersion"] == nil {
		f.parseBareDocument(root, top)
		return
	}
	f.parseManifest(root, top)
}

// parseBareDocument parses a policy file that is not wrapped in a ConfigMap.
func (f *fileParser) parseBareDocument(root *yaml.Node, top map[string]*yaml.Node) {
	key := filepath.Base(f.fileName)
	if top["policies"] == nil {
		f.fail("default", f.fileName, "", root, "the document is neither a ConfigMap manifest (apiVersion: v1, kind: ConfigMap) nor a policy file (policies: [...])")
		return
	}
	k := &keyParser{namespace: "default", configMap: f.fileName, key: key, opts: f.opts}
	if f.size > MaxPolicyKeyBytes {
		k.fail("", nil, "the file holds %d bytes, more than the limit of %d (256 KiB) for one policy key: split the policies over several keys or ConfigMaps",
			f.size, MaxPolicyKeyBytes)
		f.errs = append(f.errs, k.errs...)
		return
	}
	policies, errs := k.parseDocument(root)
	f.policies = append(f.policies, policies...)
	f.errs = append(f.errs, errs...)
}

// parseManifest handles one Kubernetes object: a ConfigMap, a List of
// objects, or anything else (ignored).
func (f *fileParser) parseManifest(root *yaml.Node, top map[string]*yaml.Node) {
	kind := scalarText(top["kind"])
	switch kind {
	case "ConfigMap":
	case "List":
		items := top["items"]
		if items == nil || items.Kind != yaml.SequenceNode {
			f.fail("default", f.fileName, "items", root, "a List must have an items list")
			return
		}
		for _, item := range items.Content {
			f.parseDocument(item)
		}
		return
	case "":
		f.fail("default", f.fileName, "kind", root, "is required: a manifest needs kind: ConfigMap")
		return
	default:
		return // other objects of a bundle are none of our business
	}
	meta := plainFields(top["metadata"])
	name := scalarText(meta["name"])
	namespace := scalarText(meta["namespace"])
	if namespace == "" {
		namespace = "default"
	}
	if name == "" {
		f.fail(namespace, f.fileName, "metadata.name", root, "is required: name the ConfigMap")
		return
	}
	if apiVersion := scalarText(top["apiVersion"]); apiVersion != "v1" {
		f.fail(namespace, name, "apiVersion", top["apiVersion"], fmt.Sprintf("must be v1 for a ConfigMap, got %s", quoteShort(apiVersion)))
		return
	}
	if label := scalarText(plainFields(meta["labels"])[PolicyConfigMapLabel]); label != "true" {
		warning := f.fail(namespace, name, "metadata.labels", meta["labels"],
			fmt.Sprintf("the ConfigMap lacks the label %s: \"true\", so shadowplane ignores it; add the label to put its policies in force", PolicyConfigMapLabel))
		warning.Warning = true
		return
	}
	f.parseData(namespace, name, top["data"])
}

// parseData parses every policy key of a ConfigMap's data, in key order as
// the control plane does.
func (f *fileParser) parseData(namespace, name string, data *yaml.Node) {
	if absentNode(data) {
		return
	}
	if data.Kind != yaml.MappingNode {
		f.fail(namespace, name, "data", data, fmt.Sprintf("must be a mapping of key to text, got %s", describeNode(data)))
		return
	}
	values := plainFields(data)
	keys := make([]string, 0, len(values))
	for key := range values {
		if IsPolicyKey(key) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		value := values[key]
		k := &keyParser{namespace: namespace, configMap: name, key: key, opts: f.opts}
		if value.Kind != yaml.ScalarNode || isNullNode(value) {
			k.fail("", value, "the value must be text holding the policies (write it as a block: %q followed by indented YAML), got %s", key+": |", describeNode(value))
			f.errs = append(f.errs, k.errs...)
			continue
		}
		if value.Style&yaml.LiteralStyle != 0 {
			// A literal block keeps its lines, so messages can point at
			// lines of the file: its text starts on the line after "|".
			k.lineOffset = value.Line
		}
		policies, errs := k.parseBytes([]byte(value.Value))
		f.policies = append(f.policies, policies...)
		f.errs = append(f.errs, errs...)
	}
}

// dropDuplicateNames enforces unique policy names per namespace across the
// file, as the control plane does across ConfigMaps: every policy whose name
// was already used is an error, and none of the same-named policies is kept.
func (f *fileParser) dropDuplicateNames() []*Policy {
	type id struct{ namespace, name string }
	first := map[id]*Policy{}
	duplicated := map[id]bool{}
	for _, p := range f.policies {
		key := id{p.Namespace, p.Name}
		if prev, seen := first[key]; seen {
			duplicated[key] = true
			f.errs = append(f.errs, &PolicyError{
				Namespace: p.Namespace, ConfigMap: p.Source.ConfigMap, Key: p.Source.Key,
				Policy: p.Name, Index: p.Source.Index, Field: "name",
				Message: fmt.Sprintf("policy name %q is already used in configmap %q key %q: policy names must be unique within a namespace, so none of them is used until you rename or remove one",
					p.Name, prev.Namespace+"/"+prev.Source.ConfigMap, prev.Source.Key),
			})
			continue
		}
		first[key] = p
	}
	var out []*Policy
	for _, p := range f.policies {
		if !duplicated[id{p.Namespace, p.Name}] {
			out = append(out, p)
		}
	}
	return out
}

// plainFields indexes a mapping by its scalar keys, without any checks:
// manifests carry many fields that are not ours to judge.
func plainFields(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n == nil || n.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode {
			if _, dup := out[k.Value]; !dup {
				out[k.Value] = n.Content[i+1]
			}
		}
	}
	return out
}

// scalarText is a scalar's text, "" for anything else.
func scalarText(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode || isNullNode(n) {
		return ""
	}
	return n.Value
}

// IsPolicyKey reports whether a ConfigMap data key holds policies: keys
// ending in ".yaml" or ".yml"; other keys are left alone.
func IsPolicyKey(key string) bool {
	return strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml")
}
