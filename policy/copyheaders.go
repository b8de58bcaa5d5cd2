package policy

import (
	"sort"

	"go.yaml.in/yaml/v3"
)

var copyHeadersFields = []string{"remove", "set"}

// parseCopyHeaders reads the header edits applied to copies only.
func (p *policyParser) parseCopyHeaders(path string, n *yaml.Node) CopyHeaders {
	var ch CopyHeaders
	if absentNode(n) {
		return ch
	}
	fields, ok := mappingFields(p, path, n, copyHeadersFields...)
	if !ok {
		return ch
	}
	removePath := joinPath(path, "remove")
	removed := map[string]*yaml.Node{}
	items, _ := optionalSequence(p, removePath, fields["remove"])
	for i, item := range items {
		if name, ok := parseHeaderName(p, indexPath(removePath, i), item, headerEdited); ok {
			ch.Remove = append(ch.Remove, name)
			removed[name] = item
		}
	}
	ch.Remove = sortedUnique(ch.Remove)
	ch.Set = p.parseSetHeaders(joinPath(path, "set"), fields["set"])
	for _, hv := range ch.Set {
		if _, clash := removed[hv.Name]; clash {
			p.fail(removePath, removed[hv.Name], "%q is both removed and set: a set header already replaces the request's value, so take it out of remove", hv.Name)
		}
	}
	return ch
}

// parseSetHeaders reads the "set" mapping of header name to value, sorted
// by name. Names are compared lower-cased, so X-A and x-a clash.
func (p *policyParser) parseSetHeaders(path string, n *yaml.Node) []HeaderValue {
	if absentNode(n) {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		p.fail(path, n, "%s", aliasProblem(n))
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.fail(path, n, "must be a mapping of header name to value, e.g. {x-shadowplane-env: staging}, got %s", describeNode(n))
		return nil
	}
	var out []HeaderValue
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.fail(path, k, "header names must be strings, got %s", describeNode(k))
			continue
		}
		field := joinPath(path, k.Value)
		name, ok := parseHeaderName(p, field, k, headerEdited)
		if !ok {
			continue
		}
		if line, dup := firstLine[name]; dup {
			p.fail(field, k, "header %q is set twice (first on line %d; names are not case-sensitive): keep one", name, line)
			continue
		}
		firstLine[name] = p.line(k)
		value, ok := headerSetValue(p, field, v)
		if !ok {
			continue
		}
		out = append(out, HeaderValue{Name: name, Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// headerSetValue reads a header value. Unquoted numbers and booleans are
// taken as written: `x-copy: 1` means the text "1".
func headerSetValue(p *policyParser, path string, n *yaml.Node) (string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		p.fail(path, n, "%s", aliasProblem(n))
		return "", false
	case isNullNode(n):
		p.fail(path, n, "needs a value: write \"\" for an empty value")
		return "", false
	case n.Kind != yaml.ScalarNode:
		p.fail(path, n, "must be a string value, got %s", describeNode(n))
		return "", false
	}
	switch n.ShortTag() {
	case tagStr, tagInt, tagFloat, tagBool:
	default:
		p.fail(path, n, "must be a string value, got %s", describeNode(n))
		return "", false
	}
	if problem := headerValueProblem(n.Value); problem != "" {
		p.fail(path, n, "%s", problem)
		return "", false
	}
	return n.Value, true
}
