package policy

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"
)

// maxHeaderValueBytes is the longest header value a policy may set or match;
// it is Envoy's own limit for configured header values.
const maxHeaderValueBytes = 16384

// maxHeaderNameBytes is the longest header name a policy may match or edit.
// Envoy rejects a set header whose name exceeds 16 KiB, and with it the
// whole route configuration; real header names are far shorter.
const maxHeaderNameBytes = 1024

// isHTTPToken reports whether s is an RFC 9110 token: the syntax of header
// names and of methods. httpguts checks header names by exactly that rule.
func isHTTPToken(s string) bool { return httpguts.ValidHeaderFieldName(s) }

const headerNameRule = "a valid HTTP header name: letters, digits and !#$%&'*+-.^_`|~, without spaces or colons"

// headerUse says where a header name appears, which decides the advice for
// names that cannot be used there.
type headerUse int

const (
	headerMatched headerUse = iota // match.headers
	headerEdited                   // copyHeaders
)

// parseHeaderName reads a header name and lower-cases it.
func parseHeaderName(r reporter, path string, n *yaml.Node, use headerUse) (string, bool) {
	s, ok := stringValue(r, path, n)
	if !ok {
		return "", false
	}
	if problem := headerNameProblem(s, use); problem != "" {
		r.fail(path, n, "%s", problem)
		return "", false
	}
	return strings.ToLower(s), true
}

// headerNameProblem explains why s cannot be used as a header name here.
func headerNameProblem(s string, use headerUse) string {
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(s, ":") && use == headerMatched:
		return fmt.Sprintf("%s is an HTTP/2 pseudo-header, which cannot be matched here: to select requests by path or method use match.pathPrefix or match.methods", quoteShort(s))
	case strings.HasPrefix(s, ":"):
		return fmt.Sprintf("%s is an HTTP/2 pseudo-header, which cannot be removed or set on copies", quoteShort(s))
	case lower == "host" && use == headerEdited:
		return "the host header cannot be edited here: copies to Service targets keep the Host (set hostSuffix: true to append \"-shadow\") and copies to URL targets get the URL's host"
	case len(s) > maxHeaderNameBytes:
		return fmt.Sprintf("is %d bytes long, more than the limit of %d for a header name", len(s), maxHeaderNameBytes)
	case !isHTTPToken(s):
		return fmt.Sprintf("must be %s, got %s", headerNameRule, quoteShort(s))
	}
	return ""
}

// headerValueProblem rejects what cannot travel in an HTTP header value.
func headerValueProblem(v string) string {
	if strings.ContainsAny(v, "\r\n\x00") {
		return "must not contain CR, LF or NUL characters: a header value is one line"
	}
	if len(v) > maxHeaderValueBytes {
		return fmt.Sprintf("is %d bytes long, more than the limit of %d", len(v), maxHeaderValueBytes)
	}
	return ""
}
