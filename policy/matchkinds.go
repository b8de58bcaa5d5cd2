package policy

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// matchKind is one kind of named request value a match can test: a header,
// a cookie or a query parameter. They share the condition syntax (exact,
// prefix, regex, present) and differ in how names and values are checked.
type matchKind struct {
	noun, example string
	parseName     func(r reporter, path string, n *yaml.Node) (string, bool)
	// valueProblem explains why s cannot be matched as the given condition
	// ("exact", "prefix" or "regex"); "" when it can.
	valueProblem func(condition, s string) string
}

var (
	headerKind = matchKind{
		noun: "header", example: "x-tenant",
		parseName: func(r reporter, path string, n *yaml.Node) (string, bool) {
			return parseHeaderName(r, path, n, headerMatched)
		},
		valueProblem: func(_, s string) string { return headerValueProblem(s) },
	}
	cookieKind = matchKind{
		noun: "cookie", example: "gray",
		parseName:    parseCookieName,
		valueProblem: cookieValueProblem,
	}
	queryKind = matchKind{
		noun: "query parameter", example: "ticket",
		parseName:    parseQueryName,
		valueProblem: func(_, s string) string { return headerValueProblem(s) },
	}
)

// parseCookieName reads a cookie name: an RFC 6265 token, case-sensitive.
func parseCookieName(r reporter, path string, n *yaml.Node) (string, bool) {
	return parseMatchName(r, path, n, isHTTPToken,
		"must be a cookie name (letters, digits and !#$%%&'*+-.^_`|~)")
}

// parseMatchName reads the name of a cookie or query parameter, as
// written: it must be valid and at most maxHeaderNameBytes long.
func parseMatchName(r reporter, path string, n *yaml.Node, valid func(string) bool, rule string) (string, bool) {
	s, ok := stringValue(r, path, n)
	if !ok {
		return "", false
	}
	switch {
	case s == "" || !valid(s):
		r.fail(path, n, rule+", got %s", quoteShort(s))
		return "", false
	case len(s) > maxHeaderNameBytes:
		r.fail(path, n, "is %d bytes long, more than the limit of %d", len(s), maxHeaderNameBytes)
		return "", false
	}
	return s, true
}

// cookieValueProblem refuses exact and prefix values that cannot be a
// cookie value (RFC 6265 cookie-octets), since they could never match.
func cookieValueProblem(condition, s string) string {
	if problem := headerValueProblem(s); problem != "" {
		return problem
	}
	if condition != "regex" && strings.ContainsAny(s, "; ,\t\"\\") {
		return fmt.Sprintf("a cookie value cannot contain spaces, \";\", \",\", quotes or backslashes, got %s", quoteShort(s))
	}
	return ""
}

// parseQueryName reads a query parameter name, matched as written
// (case-sensitive, not URL-decoded).
func parseQueryName(r reporter, path string, n *yaml.Node) (string, bool) {
	return parseMatchName(r, path, n, func(s string) bool { return !strings.ContainsAny(s, "&=#?% \t\r\n\x00") },
		"must be a query parameter name as it appears in URLs, without \"&\", \"=\", \"#\", \"?\", \"%%\" or spaces")
}

// CookieRegex is the regex the translator has Envoy match the whole Cookie
// header against for one cookie condition: the cookie is found among the
// others, separated by ";" (or "," where Envoy joined several Cookie
// headers). A regex condition must match the whole cookie value. The
// parser checks its size, so it lives beside the schema.
func CookieRegex(c HeaderMatch) string {
	var value string
	switch {
	case c.Present:
		value = `[^;,]*`
	case c.Regex != "":
		value = "(?:" + c.Regex + ")"
	case c.Prefix != "":
		value = regexp.QuoteMeta(c.Prefix) + `[^;,]*`
	default:
		value = regexp.QuoteMeta(c.Exact)
	}
	return `(?:.*[;,])?\s*` + regexp.QuoteMeta(c.Name) + "=" + value + `\s*(?:[;,].*)?`
}
