package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// reporter records a problem at a field; the key and policy parsers both
// implement it so the node helpers below serve both levels.
type reporter interface {
	fail(field string, n *yaml.Node, format string, args ...any)
	// line is n's line in the file the user edits.
	line(n *yaml.Node) int
}

// YAML short tags of resolved scalars.
const (
	tagNull  = "!!null"
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagBool  = "!!bool"
)

// aliasProblem is the message for any YAML alias. Aliases are refused
// outright: they are never needed in a policy, and refusing them is the
// simplest defence against alias bombs.
func aliasProblem(n *yaml.Node) string {
	return fmt.Sprintf("YAML aliases (*%s) are not supported: write the value out in full", n.Value)
}

func isNullNode(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull
}

// absentNode reports whether an optional field was left out or left empty.
func absentNode(n *yaml.Node) bool { return n == nil || isNullNode(n) }

// joinPath appends a field name to a dotted path.
func joinPath(path, field string) string {
	// Field names can be user keys (header names, unknown fields) of any
	// length; a path is for finding the spot, not for quoting it whole.
	field = shortenText(field)
	if path == "" {
		return field
	}
	return path + "." + field
}

// indexPath appends a list index to a path: "mirrors" → "mirrors[2]".
func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// describeNode says what a node holds, for "got ..." in messages.
func describeNode(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	switch tag := n.ShortTag(); tag {
	case tagNull:
		return "an empty value"
	case tagStr:
		return quoteShort(n.Value)
	case tagInt, tagFloat:
		return "the number " + shortenText(n.Value)
	case tagBool:
		return "the boolean " + n.Value
	default:
		return fmt.Sprintf("a value tagged %s (%s)", tag, quoteShort(n.Value))
	}
}

// quoteShort quotes user text for a message, cut to a readable length.
func quoteShort(s string) string { return strconv.Quote(shortenText(s)) }

func shortenText(s string) string {
	const limit = 60
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit]) + "…"
}

// mappingFields checks that n is a mapping whose keys are all among allowed,
// given once, and returns the value nodes by key. Alias values are reported
// and left out. ok is false when n is not a mapping at all.
func mappingFields(r reporter, path string, n *yaml.Node, allowed ...string) (fields map[string]*yaml.Node, ok bool) {
	if n.Kind == yaml.AliasNode {
		r.fail(path, n, "%s", aliasProblem(n))
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		r.fail(path, n, "must be a mapping with the fields %s, got %s", strings.Join(allowed, ", "), describeNode(n))
		return nil, false
	}
	fields = map[string]*yaml.Node{}
	keyLines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			r.fail(path, k, "%s", aliasProblem(k))
			continue
		}
		if k.Kind != yaml.ScalarNode {
			r.fail(path, k, "field names must be plain words, got %s as a field name; valid fields are: %s",
				describeNode(k), strings.Join(allowed, ", "))
			continue
		}
		name := k.Value
		field := joinPath(path, name)
		if k.ShortTag() == "!!merge" {
			r.fail(field, k, "YAML merge keys (<<) are not supported: write the fields out in full")
			continue
		}
		if !slices.Contains(allowed, name) {
			r.fail(field, k, "unknown field %s; valid fields are: %s%s",
				quoteShort(name), strings.Join(allowed, ", "), didYouMean(name, allowed))
			continue
		}
		if line, dup := keyLines[name]; dup {
			r.fail(field, k, "is given twice (first on line %d): keep only one", line)
			continue
		}
		keyLines[name] = r.line(k)
		if v.Kind == yaml.AliasNode {
			r.fail(field, v, "%s", aliasProblem(v))
			continue
		}
		fields[name] = v
	}
	return fields, true
}

var fieldNoise = strings.NewReplacer("_", "", "-", "")

// didYouMean suggests the valid field a misspelt one was probably meant to
// be: same letters ignoring case, "_" and "-", or a missing/extra plural s.
func didYouMean(name string, allowed []string) string {
	norm := func(s string) string { return strings.ToLower(fieldNoise.Replace(s)) }
	n := norm(name)
	for _, a := range allowed {
		an := norm(a)
		if n == an || n+"s" == an || n == an+"s" {
			return fmt.Sprintf(" (did you mean %q?)", a)
		}
	}
	return ""
}

// optionalSequence returns the items of a list field; an absent or empty
// field is an empty list. ok is false when the field is not a list.
func optionalSequence(r reporter, path string, n *yaml.Node) (items []*yaml.Node, ok bool) {
	if absentNode(n) {
		return nil, true
	}
	if n.Kind == yaml.AliasNode {
		r.fail(path, n, "%s", aliasProblem(n))
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		r.fail(path, n, "must be a list, got %s", describeNode(n))
		return nil, false
	}
	return n.Content, true
}

// stringValue returns a string scalar; anything else is reported with the
// type that was found.
func stringValue(r reporter, path string, n *yaml.Node) (string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		r.fail(path, n, "%s", aliasProblem(n))
	case n.Kind == yaml.ScalarNode && n.ShortTag() == tagStr:
		return n.Value, true
	case n.Kind == yaml.ScalarNode && (n.ShortTag() == tagInt || n.ShortTag() == tagFloat || n.ShortTag() == tagBool):
		r.fail(path, n, "must be a string, got %s: quote it (\"%s\") if you mean the text", describeNode(n), shortenText(n.Value))
	default:
		r.fail(path, n, "must be a string, got %s", describeNode(n))
	}
	return "", false
}

// boolValue returns a YAML boolean.
func boolValue(r reporter, path string, n *yaml.Node) (bool, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		r.fail(path, n, "%s", aliasProblem(n))
	case n.Kind == yaml.ScalarNode && n.ShortTag() == tagBool:
		return strings.EqualFold(n.Value, "true"), true
	case n.Kind == yaml.ScalarNode && n.ShortTag() == tagStr:
		r.fail(path, n, "must be true or false, written without quotes, got %s", describeNode(n))
	default:
		r.fail(path, n, "must be true or false, got %s", describeNode(n))
	}
	return false, false
}

var plainDecimalRE = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// intValue returns a whole number from lo to hi written as a plain decimal.
// hint, when not empty, is appended to range errors (e.g. the default).
func intValue(r reporter, path string, n *yaml.Node, lo, hi int64, hint string) (int64, bool) {
	want := fmt.Sprintf("must be a whole number from %d to %d%s", lo, hi, hint)
	if n.Kind == yaml.AliasNode {
		r.fail(path, n, "%s", aliasProblem(n))
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != tagInt && n.ShortTag() != tagFloat) {
		r.fail(path, n, "%s, got %s", want, describeNode(n))
		return 0, false
	}
	text := strings.TrimPrefix(n.Value, "+")
	if strings.HasPrefix(text, "-") && plainDecimalRE.MatchString(text[1:]) {
		r.fail(path, n, "%s, got %s", want, n.Value)
		return 0, false
	}
	if !plainDecimalRE.MatchString(text) {
		r.fail(path, n, "%s written as plain decimal digits, got %s", want, describeNode(n))
		return 0, false
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v < lo || v > hi {
		r.fail(path, n, "%s, got %s", want, shortenText(n.Value))
		return 0, false
	}
	return v, true
}

// sortedUnique returns the strings of list sorted and without repeats; nil
// for an empty list.
func sortedUnique(list []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(list)))
}
