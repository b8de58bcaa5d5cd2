package policy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

var (
	matchFields       = []string{"pathPrefix", "methods", "headers", "cookies", "query"}
	headerMatchFields = []string{"name", "exact", "prefix", "regex", "present"}
)

// maxPathPrefixBytes bounds match.pathPrefix.
const maxPathPrefixBytes = 1024

// parseMatch reads the optional match block; absent, it matches every request.
func (p *policyParser) parseMatch(path string, n *yaml.Node) Match {
	var m Match
	if absentNode(n) {
		return m
	}
	fields, ok := mappingFields(p, path, n, matchFields...)
	if !ok {
		return m
	}
	if f := fields["pathPrefix"]; !absentNode(f) {
		m.PathPrefix = p.parsePathPrefix(joinPath(path, "pathPrefix"), f)
	}
	m.Methods = p.parseMethods(joinPath(path, "methods"), fields["methods"])
	m.Headers = p.parseHeaderMatches(joinPath(path, "headers"), fields["headers"], headerKind)
	m.Cookies = p.parseHeaderMatches(joinPath(path, "cookies"), fields["cookies"], cookieKind)
	m.Query = p.parseHeaderMatches(joinPath(path, "query"), fields["query"], queryKind)
	return m
}

func (p *policyParser) parsePathPrefix(path string, n *yaml.Node) string {
	s, ok := stringValue(p, path, n)
	if !ok {
		return ""
	}
	switch {
	case !strings.HasPrefix(s, "/"):
		p.fail(path, n, "must start with \"/\", got %s: write %s", quoteShort(s), quoteShort("/"+s))
	case strings.ContainsAny(s, "?#"):
		p.fail(path, n, "must not contain \"?\" or \"#\": a prefix matches the path only, never the query or fragment, got %s", quoteShort(s))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		p.fail(path, n, "must not contain spaces or control characters (write a space as %%20), got %s", quoteShort(s))
	case len(s) > maxPathPrefixBytes:
		p.fail(path, n, "is %d bytes long, more than the limit of %d", len(s), maxPathPrefixBytes)
	default:
		return s
	}
	return ""
}

// parseMethods reads HTTP methods: upper-cased, sorted, without repeats.
func (p *policyParser) parseMethods(path string, n *yaml.Node) []string {
	items, ok := optionalSequence(p, path, n)
	if !ok {
		return nil
	}
	var methods []string
	for i, item := range items {
		itemPath := indexPath(path, i)
		s, ok := stringValue(p, itemPath, item)
		if !ok {
			continue
		}
		if !isHTTPToken(s) {
			p.fail(itemPath, item, "must be an HTTP method such as GET, HEAD, POST, PUT, DELETE, PATCH or OPTIONS (letters, digits and !#$%%&'*+-.^_`|~), got %s", quoteShort(s))
			continue
		}
		methods = append(methods, strings.ToUpper(s))
	}
	methods = sortedUnique(methods)
	if problem := methodsProblem(methods); problem != "" {
		p.fail(path, n, "%s", problem)
		return nil
	}
	return methods
}

// MethodsRegex is the regex the translator has Envoy match the :method
// header against when a policy lists several methods; the parser checks its
// size, so it lives beside the schema.
func MethodsRegex(methods []string) string {
	quoted := make([]string, len(methods))
	for i, m := range methods {
		quoted[i] = regexp.QuoteMeta(m)
	}
	return "^(" + strings.Join(quoted, "|") + ")$"
}

// methodsProblem refuses a methods list whose regex Envoy would reject as
// too large (and with it the whole route configuration).
func methodsProblem(methods []string) string {
	if len(methods) < 2 {
		return ""
	}
	size, err := re2ProgramSize(MethodsRegex(methods))
	if err != nil {
		return fmt.Sprintf("cannot be matched: %v", err)
	}
	if size > envoyRegexProgramLimit {
		return fmt.Sprintf("lists %d methods, which Envoy matches with one regex whose RE2 program size is estimated at %d, above Envoy's limit of %d: list fewer or shorter methods, or leave methods out to copy requests of every method",
			len(methods), size, envoyRegexProgramLimit)
	}
	return ""
}

// parseHeaderMatches reads header, cookie or query conditions, sorted by
// name, then kind, then value, without repeats.
func (p *policyParser) parseHeaderMatches(path string, n *yaml.Node, kind matchKind) []HeaderMatch {
	items, ok := optionalSequence(p, path, n)
	if !ok {
		return nil
	}
	var out []HeaderMatch
	for i, item := range items {
		if hm, ok := p.parseHeaderMatch(indexPath(path, i), item, kind); ok {
			out = append(out, hm)
		}
	}
	slices.SortFunc(out, compareHeaderMatches)
	return slices.Compact(out)
}

func (p *policyParser) parseHeaderMatch(path string, n *yaml.Node, kind matchKind) (HeaderMatch, bool) {
	fields, ok := mappingFields(p, path, n, headerMatchFields...)
	if !ok {
		return HeaderMatch{}, false
	}
	before := len(p.k.errs)
	var hm HeaderMatch
	if absentNode(fields["name"]) {
		p.fail(joinPath(path, "name"), n, "is required: the %s to look at, e.g. %s", kind.noun, kind.example)
	} else {
		hm.Name, _ = kind.parseName(p, joinPath(path, "name"), fields["name"])
	}
	var kinds []string
	for _, kind := range []string{"exact", "prefix", "regex", "present"} {
		if !absentNode(fields[kind]) {
			kinds = append(kinds, kind)
		}
	}
	switch len(kinds) {
	case 0:
		p.fail(path, n, "needs a condition: set exactly one of exact, prefix, regex or present: true")
	case 1:
		p.parseHeaderCondition(joinPath(path, kinds[0]), kinds[0], fields[kinds[0]], &hm, kind)
	default:
		p.fail(path, n, "sets %s together: set exactly one of exact, prefix, regex or present: true (use several header entries to require several conditions)",
			strings.Join(kinds, " and "))
	}
	return hm, len(p.k.errs) == before
}

// parseHeaderCondition fills the one condition of a header match.
func (p *policyParser) parseHeaderCondition(path, kind string, n *yaml.Node, hm *HeaderMatch, mk matchKind) {
	if kind == "present" {
		present, ok := boolValue(p, path, n)
		if ok && !present {
			p.fail(path, n, "must be true: to select requests regardless of this %s, leave the condition out", mk.noun)
		}
		hm.Present = present
		return
	}
	s, ok := stringValue(p, path, n)
	if !ok {
		return
	}
	if problem := mk.valueProblem(kind, s); problem != "" {
		p.fail(path, n, "%s", problem)
		return
	}
	switch kind {
	case "exact":
		hm.Exact = s
	case "prefix":
		if s == "" {
			p.fail(path, n, "must not be empty: to require only that the header exists, use present: true")
			return
		}
		hm.Prefix = s
	case "regex":
		if problem := regexProblem(s); problem != "" {
			p.fail(path, n, "%s", problem)
			return
		}
		hm.Regex = s
	}
	if mk.noun == cookieKind.noun {
		// The cookie is matched by one regex over the whole Cookie header;
		// Envoy refuses it when too large.
		if problem := regexProblem(CookieRegex(*hm)); problem != "" {
			p.fail(path, n, "cannot be matched: the regex that finds this cookie in the Cookie header %s", problem)
		}
	}
}

// headerMatchKindRank orders the kinds of condition: exact, prefix, regex,
// present.
func headerMatchKindRank(h HeaderMatch) int {
	switch {
	case h.Present:
		return 3
	case h.Regex != "":
		return 2
	case h.Prefix != "":
		return 1
	}
	return 0
}

// compareHeaderMatches orders by name, then kind, then value.
func compareHeaderMatches(a, b HeaderMatch) int {
	return cmp.Or(
		strings.Compare(a.Name, b.Name),
		cmp.Compare(headerMatchKindRank(a), headerMatchKindRank(b)),
		strings.Compare(headerMatchValue(a), headerMatchValue(b)),
	)
}

func headerMatchValue(h HeaderMatch) string { return h.Exact + h.Prefix + h.Regex }
