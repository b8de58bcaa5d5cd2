package policy

import (
	"fmt"
	"strings"
	"testing"
)

const entranceHead = "service: entrance\n"

func mirrorYAML(fields string) string { return "mirrors:\n- {" + fields + "}\n" }

// TestParsePoliciesInvalid covers every rule with a policy that breaks it:
// the policy is dropped and an error names the field and the problem.
func TestParsePoliciesInvalid(t *testing.T) {
	tests := []struct {
		name  string
		body  string // fields of policy "p" after its name
		field string
		msg   string // substring of the message
	}{
		// policy fields
		{"unknown policy field", entranceHead + shadowMirrorYAML + "mirror: x\n", "mirror", `unknown field "mirror"; valid fields are: name, service, port, match, mirrors, routeTo, copyHeaders, markCopies, hostSuffix, guard (did you mean "mirrors"?)`},
		{"misspelt field suggestion", entranceHead + shadowMirrorYAML + "mark_copies: true\n", "mark_copies", `did you mean "markCopies"?`},
		{"field given twice", entranceHead + "service: checkout\n" + shadowMirrorYAML, "service", "is given twice (first on line 3)"},
		{"merge key", entranceHead + shadowMirrorYAML + "<<: {port: http}\n", "<<", "merge keys (<<) are not supported"},
		{"policy not a mapping", "", "", ""}, // replaced below
		{"missing service", shadowMirrorYAML, "service", `is required: name the Service in namespace "default"`},
		{"service upper case", "service: Entrance\n" + shadowMirrorYAML, "service", `must be a Service name (a lower-case RFC 1035 label)`},
		{"service starting with a digit", "service: 1entrance\n" + shadowMirrorYAML, "service", `starting with a letter`},
		{"service too long", "service: " + strings.Repeat("a", 64) + "\n" + shadowMirrorYAML, "service", `1 to 63 characters`},
		{"service a number", "service: 42\n" + shadowMirrorYAML, "service", `must be a string, got the number 42: quote it ("42")`},
		{"service a list", "service: [entrance]\n" + shadowMirrorYAML, "service", `must be a string, got a list`},
		{"port name too long", entranceHead + "port: abcdefghijklmnop\n" + shadowMirrorYAML, "port", `must be a port name (1 to 15 characters`},
		{"port name upper case", entranceHead + "port: HTTP\n" + shadowMirrorYAML, "port", `got "HTTP"`},
		{"port name double dash", entranceHead + "port: web--1\n" + shadowMirrorYAML, "port", `got "web--1"`},
		{"port zero", entranceHead + "port: 0\n" + shadowMirrorYAML, "port", `must be a whole number from 1 to 65535, got 0`},
		{"port too high", entranceHead + "port: 65536\n" + shadowMirrorYAML, "port", `from 1 to 65535, got 65536`},
		{"quoted port too high", entranceHead + "port: \"70000\"\n" + shadowMirrorYAML, "port", `or a port number from 1 to 65535, got "70000"`},
		{"port float", entranceHead + "port: 80.5\n" + shadowMirrorYAML, "port", `written as plain decimal digits`},
		{"markCopies string", entranceHead + shadowMirrorYAML + "markCopies: \"true\"\n", "markCopies", `must be true or false, written without quotes`},
		{"hostSuffix number", entranceHead + shadowMirrorYAML + "hostSuffix: 1\n", "hostSuffix", `must be true or false, got the number 1`},

		// match
		{"match not a mapping", entranceHead + shadowMirrorYAML + "match: /entrance\n", "match", `must be a mapping with the fields pathPrefix, methods, headers`},
		{"unknown match field", entranceHead + shadowMirrorYAML + "match: {path: /x}\n", "match.path", `unknown field "path"`},
		{"pathPrefix without slash", entranceHead + shadowMirrorYAML + "match: {pathPrefix: entrance}\n", "match.pathPrefix", `must start with "/", got "entrance": write "/entrance"`},
		{"pathPrefix with query", entranceHead + shadowMirrorYAML + "match: {pathPrefix: \"/a?b\"}\n", "match.pathPrefix", `must not contain "?" or "#"`},
		{"pathPrefix with fragment", entranceHead + shadowMirrorYAML + "match: {pathPrefix: \"/a#b\"}\n", "match.pathPrefix", `must not contain "?" or "#"`},
		{"pathPrefix with space", entranceHead + shadowMirrorYAML + "match: {pathPrefix: /a b}\n", "match.pathPrefix", `must not contain spaces`},
		{"pathPrefix too long", entranceHead + shadowMirrorYAML + "match: {pathPrefix: /" + strings.Repeat("a", 1024) + "}\n", "match.pathPrefix", `more than the limit of 1024`},
		{"methods not a list", entranceHead + shadowMirrorYAML + "match: {methods: GET}\n", "match.methods", `must be a list, got "GET"`},
		{"method with space", entranceHead + shadowMirrorYAML + "match: {methods: [GET, \"PO ST\"]}\n", "match.methods[1]", `must be an HTTP method`},
		{"method a number", entranceHead + shadowMirrorYAML + "match: {methods: [1]}\n", "match.methods[0]", `must be a string`},
		// Envoy 1.40 rejects the :method regex of these 20 methods (RE2 program size 108).
		{"methods too many for Envoy", entranceHead + shadowMirrorYAML + "match: {methods: [" + natoMethods + "]}\n", "match.methods", `lists 20 methods, which Envoy matches with one regex whose RE2 program size is estimated at`},
		{"header name too long", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x-" + strings.Repeat("a", maxHeaderNameBytes) + ", present: true}]}\n", "match.headers[0].name", `is 1026 bytes long, more than the limit of 1024 for a header name`},
		{"headers not a list", entranceHead + shadowMirrorYAML + "match: {headers: {name: x}}\n", "match.headers", `must be a list`},
		{"header without name", entranceHead + shadowMirrorYAML + "match: {headers: [{exact: x}]}\n", "match.headers[0].name", `is required`},
		{"header name with space", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x a, exact: x}]}\n", "match.headers[0].name", `must be a valid HTTP header name`},
		{"header name with colon", entranceHead + shadowMirrorYAML + "match: {headers: [{name: \"x:a\", exact: x}]}\n", "match.headers[0].name", `without spaces or colons`},
		{"pseudo-header", entranceHead + shadowMirrorYAML + "match: {headers: [{name: \":method\", exact: GET}]}\n", "match.headers[0].name", `":method" is an HTTP/2 pseudo-header, which cannot be matched here: to select requests by path or method use match.pathPrefix or match.methods`},
		{"header without condition", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x}]}\n", "match.headers[0]", `needs a condition: set exactly one of exact, prefix, regex or present: true`},
		{"header with two conditions", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, regex: a, present: true}]}\n", "match.headers[0]", `sets regex and present together`},
		{"header present false", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, present: false}]}\n", "match.headers[0].present", `must be true`},
		{"header empty prefix", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, prefix: \"\"}]}\n", "match.headers[0].prefix", `must not be empty`},
		{"header exact with newline", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, exact: \"a\\nb\"}]}\n", "match.headers[0].exact", `must not contain CR, LF or NUL`},
		{"bad regex", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, regex: \"a[\"}]}\n", "match.headers[0].regex", `is not a valid RE2 regular expression: error parsing regexp: missing closing ]`},
		{"perl-only regex", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, regex: \"(?=a)\"}]}\n", "match.headers[0].regex", `is not a valid RE2 regular expression`},
		{"regex too big for Envoy", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, regex: \"a{120}\"}]}\n", "match.headers[0].regex", `is too complex for Envoy`},
		{"unknown header match field", entranceHead + shadowMirrorYAML + "match: {headers: [{name: x, suffix: a}]}\n", "match.headers[0].suffix", `unknown field "suffix"`},

		// mirrors
		{"mirrors missing", entranceHead, "mirrors", `is required`},
		{"mirrors empty", entranceHead + "mirrors: []\n", "mirrors", `must list at least one mirror`},
		{"mirrors a mapping", entranceHead + "mirrors: {service: x, percent: 1}\n", "mirrors", `must be a list, got a mapping`},
		{"too many mirrors", entranceHead + manyMirrors(17), "mirrors", `holds 17 mirrors, more than the limit of 16`},
		{"mirror not a mapping", entranceHead + "mirrors: [entrance-shadow]\n", "mirrors[0]", `must be a mapping with the fields service, namespace, port, url, name, percent`},
		{"mirror unknown field", entranceHead + mirrorYAML("service: s, percent: 1, weight: 2"), "mirrors[0].weight", `unknown field "weight"`},
		{"mirror without target", entranceHead + mirrorYAML("percent: 1"), "mirrors[0]", `needs a target`},
		{"mirror with service and url", entranceHead + mirrorYAML("service: s, url: \"http://10.16.0.1\", percent: 1"), "mirrors[0]", `not both`},
		{"mirror service invalid", entranceHead + mirrorYAML("service: s_1, percent: 1"), "mirrors[0].service", `must be a Service name`},
		{"mirror service starting with a digit", entranceHead + mirrorYAML("service: 9s, percent: 1"), "mirrors[0].service", `must be a Service name`},
		{"mirror namespace invalid", entranceHead + mirrorYAML("service: s, namespace: -ns, percent: 1"), "mirrors[0].namespace", `must be a lower-case DNS label`},
		{"mirror port invalid", entranceHead + mirrorYAML("service: s, port: http_1, percent: 1"), "mirrors[0].port", `must be a port name`},
		{"mirror onto itself", entranceHead + mirrorYAML("service: entrance, percent: 1"), "mirrors[0]", `targets the policy's own Service "default/entrance" and port`},
		{"mirror onto itself explicit namespace", entranceHead + "port: 80\n" + mirrorYAML("service: entrance, namespace: default, port: 80, percent: 1"), "mirrors[0]", `copy its requests back onto itself`},
		{"mirror name invalid", entranceHead + mirrorYAML("service: s, name: a.b, percent: 1"), "mirrors[0].name", `must be 1 to 63 characters of a-z, 0-9, "-" and "_", got "a.b"`},
		{"mirror name a number", entranceHead + mirrorYAML("service: s, name: 7, percent: 1"), "mirrors[0].name", `must be a string`},
		{"mirror names clash by default", entranceHead + "mirrors:\n- {service: s, percent: 1}\n- {service: s, percent: 2}\n", "mirrors[1]", `mirror name "default.s" is already used by mirrors[0]`},
		{"mirror names clash explicitly", entranceHead + "mirrors:\n- {service: s, name: c, percent: 1}\n- {service: t, name: c, percent: 2}\n", "mirrors[1].name", `mirror name "c" is already used by mirrors[0]`},
		{"url mirrors clash by host", entranceHead + "mirrors:\n- {url: \"http://10.16.0.1\", percent: 1}\n- {url: \"https://10.16.0.1\", percent: 2}\n", "mirrors[1]", `give each of them its own "name"`},

		// percent
		{"percent missing", entranceHead + mirrorYAML("service: s"), "mirrors[0].percent", `is required`},
		{"percent over 100", entranceHead + mirrorYAML("service: s, percent: 100.0001"), "mirrors[0].percent", `must be a number from 0 to 100 with at most 4 decimals, got 100.0001`},
		{"percent huge", entranceHead + mirrorYAML("service: s, percent: 123456789012345678901234567890"), "mirrors[0].percent", `got 123456789012345678901234567890`},
		{"percent negative", entranceHead + mirrorYAML("service: s, percent: -0.5"), "mirrors[0].percent", `cannot be negative`},
		{"percent five decimals", entranceHead + mirrorYAML("service: s, percent: 0.00001"), "mirrors[0].percent", `0.0001 is the smallest step`},
		{"percent with %", entranceHead + mirrorYAML("service: s, percent: 25%"), "mirrors[0].percent", `got "25%": write 25, without %`},
		{"percent with % and decimals", entranceHead + mirrorYAML("service: s, percent: \"1.5 %\""), "mirrors[0].percent", `write 1.5, without %`},
		{"percent quoted", entranceHead + mirrorYAML("service: s, percent: \"25\""), "mirrors[0].percent", `not a string, got "25": write 25 without quotes`},
		{"percent text", entranceHead + mirrorYAML("service: s, percent: half"), "mirrors[0].percent", `got "half"`},
		{"percent infinite", entranceHead + mirrorYAML("service: s, percent: .inf"), "mirrors[0].percent", `must be a finite number`},
		{"percent not a number", entranceHead + mirrorYAML("service: s, percent: .NaN"), "mirrors[0].percent", `must be a finite number`},
		{"percent exponent", entranceHead + mirrorYAML("service: s, percent: 1e1"), "mirrors[0].percent", `write it as a plain decimal number`},
		{"percent hex", entranceHead + mirrorYAML("service: s, percent: 0x10"), "mirrors[0].percent", `write it as a plain decimal number`},
		{"percent underscores", entranceHead + mirrorYAML("service: s, percent: 1_0"), "mirrors[0].percent", `write it as a plain decimal number`},
		{"percent leading zero", entranceHead + mirrorYAML("service: s, percent: 010"), "mirrors[0].percent", `without leading zeros`},
		{"percent a list", entranceHead + mirrorYAML("service: s, percent: [1]"), "mirrors[0].percent", `got a list`},

		// url targets
		{"url empty", entranceHead + mirrorYAML("url: \"\", percent: 1"), "mirrors[0].url", `must not be empty`},
		{"url without scheme", entranceHead + mirrorYAML("url: 10.16.0.1/x, percent: 1"), "mirrors[0].url", `must start with http:// or https://`},
		{"url bad scheme", entranceHead + mirrorYAML("url: \"grpc://10.16.0.1\", percent: 1"), "mirrors[0].url", `scheme must be http or https, got "grpc"`},
		{"url opaque", entranceHead + mirrorYAML("url: \"http:10.16.0.1\", percent: 1"), "mirrors[0].url", `must look like http://host[:port]`},
		{"url unparsable", entranceHead + mirrorYAML("url: \"http://10.16.0.1:80:80\", percent: 1"), "mirrors[0].url", `is not a valid URL`},
		{"url with space", entranceHead + mirrorYAML("url: \"http://10.16.0.1/ x\", percent: 1"), "mirrors[0].url", `must not contain spaces`},
		{"url with path", entranceHead + mirrorYAML("url: \"http://10.16.0.1:8080/api\", percent: 1"), "mirrors[0].url", `has the path "/api", but Envoy's mirror policy cannot rewrite the path: the copy keeps the original request's path, so write the URL without a path, e.g. http://10.16.0.1:8080`},
		{"url with query", entranceHead + mirrorYAML("url: \"http://10.16.0.1?a=b\", percent: 1"), "mirrors[0].url", `must not have a query`},
		{"url with empty query", entranceHead + mirrorYAML("url: \"http://10.16.0.1/?\", percent: 1"), "mirrors[0].url", `must not have a query`},
		{"url with fragment", entranceHead + mirrorYAML("url: \"http://10.16.0.1/#top\", percent: 1"), "mirrors[0].url", `must not have a fragment`},
		{"url with credentials", entranceHead + mirrorYAML("url: \"http://u:hunter2@10.16.0.1\", percent: 1"), "mirrors[0].url", `must not contain a user name or password`},
		{"url without host", entranceHead + mirrorYAML("url: \"http:///x\", percent: 1"), "mirrors[0].url", `must name a host`},
		{"url bad host", entranceHead + mirrorYAML("url: \"http://bad_host.staging.example.com\", percent: 1"), "mirrors[0].url", `is not a valid host name or IP address`},
		{"url mistyped ip", entranceHead + mirrorYAML("url: \"http://10.16.0.300\", percent: 1"), "mirrors[0].url", `is not a valid host name or IP address`},
		{"url ipv6 zone", entranceHead + mirrorYAML("url: \"http://[fd00::1%25eth0]\", percent: 1"), "mirrors[0].url", `must not carry an IPv6 zone`},
		{"url port zero", entranceHead + mirrorYAML("url: \"http://10.16.0.1:0\", percent: 1"), "mirrors[0].url", `port must be from 1 to 65535, got "0"`},
		{"url empty port", entranceHead + mirrorYAML("url: \"http://10.16.0.1:\", percent: 1"), "mirrors[0].url", `has an empty port`},
		{"url host not allowed", entranceHead + mirrorYAML("url: \"http://evil.example.com\", percent: 1"), "mirrors[0].url", `url host "evil.example.com" is not allowed: start the control plane with --allow-url-target=evil.example.com (or a matching pattern) to allow it`},
		{"url ip outside cidr", entranceHead + mirrorYAML("url: \"http://10.17.0.1\", percent: 1"), "mirrors[0].url", `url host "10.17.0.1" is not allowed`},
		{"url on the deny list", entranceHead + mirrorYAML("url: \"http://[::ffff:169.254.169.254]\", percent: 1"), "mirrors[0].url", `url host "::ffff:169.254.169.254" is refused by the deny list (link-local: includes the cloud metadata service 169.254.169.254); the allowlist cannot open it`},
		{"url port on the deny list", entranceHead + mirrorYAML("url: \"http://10.16.0.1:18000\", percent: 1"), "mirrors[0].url", `url port 18000 is refused by the deny list on every host`},
		{"url odd ipv4 spelling", entranceHead + mirrorYAML("url: \"http://10.16.1\", percent: 1"), "mirrors[0].url", `host "10.16.1" is not a dotted-quad IPv4 address, yet resolvers read it as 10.16.0.1`},
		{"url wildcard needs a label", entranceHead + mirrorYAML("url: \"http://staging.example.com\", percent: 1"), "mirrors[0].url", `is not allowed`},
		{"url mirror with namespace", entranceHead + mirrorYAML("url: \"http://10.16.0.1\", namespace: x, percent: 1"), "mirrors[0].namespace", `applies only to service mirrors`},
		{"url a number", entranceHead + mirrorYAML("url: 1, percent: 1"), "mirrors[0].url", `must be a string`},

		// copyHeaders
		{"copyHeaders unknown field", entranceHead + shadowMirrorYAML + "copyHeaders: {add: {a: b}}\n", "copyHeaders.add", `unknown field "add"; valid fields are: remove, set`},
		{"remove not a list", entranceHead + shadowMirrorYAML + "copyHeaders: {remove: cookie}\n", "copyHeaders.remove", `must be a list`},
		{"remove bad name", entranceHead + shadowMirrorYAML + "copyHeaders: {remove: [\"a b\"]}\n", "copyHeaders.remove[0]", `must be a valid HTTP header name`},
		{"remove pseudo-header", entranceHead + shadowMirrorYAML + "copyHeaders: {remove: [\":authority\"]}\n", "copyHeaders.remove[0]", `cannot be removed or set on copies`},
		{"remove host", entranceHead + shadowMirrorYAML + "copyHeaders: {remove: [Host]}\n", "copyHeaders.remove[0]", `the host header cannot be edited here`},
		{"set not a mapping", entranceHead + shadowMirrorYAML + "copyHeaders: {set: [a]}\n", "copyHeaders.set", `must be a mapping of header name to value`},
		{"set host", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {host: x}}\n", "copyHeaders.set.host", `the host header cannot be edited here`},
		{"set bad name", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {\"a b\": x}}\n", "copyHeaders.set.a b", `must be a valid HTTP header name`},
		// Envoy rejects a set header name above 16 KiB; YAML needs "? " for keys above 1 KiB.
		{"set name too long", entranceHead + shadowMirrorYAML + "copyHeaders:\n  set:\n    ? " + longHeaderName + "\n    : v\n", "copyHeaders.set." + shortenText(longHeaderName), `is 17002 bytes long, more than the limit of 1024 for a header name`},
		{"set twice ignoring case", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {X-A: 1, x-a: 2}}\n", "copyHeaders.set.x-a", `header "x-a" is set twice`},
		{"set empty value", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {x-a: }}\n", "copyHeaders.set.x-a", `needs a value: write "" for an empty value`},
		{"set list value", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {x-a: [1]}}\n", "copyHeaders.set.x-a", `must be a string value, got a list`},
		{"set value with CR", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {x-a: \"1\\r2\"}}\n", "copyHeaders.set.x-a", `must not contain CR, LF or NUL`},
		{"set value with NUL", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {x-a: \"1\\x002\"}}\n", "copyHeaders.set.x-a", `must not contain CR, LF or NUL`},
		{"set value too long", entranceHead + shadowMirrorYAML + "copyHeaders: {set: {x-a: " + strings.Repeat("v", maxHeaderValueBytes+1) + "}}\n", "copyHeaders.set.x-a", `more than the limit of 16384`},
		{"removed and set", entranceHead + shadowMirrorYAML + "copyHeaders: {remove: [X-A], set: {x-a: 1}}\n", "copyHeaders.remove", `"x-a" is both removed and set`},

		// guard
		{"guard not a mapping", entranceHead + shadowMirrorYAML + "guard: 1s\n", "guard", `must be a mapping with the fields connectTimeout, maxConnections, maxPendingRequests, maxRequests, maxBodyBytes`},
		{"guard unknown field", entranceHead + shadowMirrorYAML + "guard: {timeout: 1s}\n", "guard.timeout", `unknown field "timeout"`},
		{"connectTimeout too short", entranceHead + shadowMirrorYAML + "guard: {connectTimeout: 5ms}\n", "guard.connectTimeout", `must be a duration from 10ms to 10s such as "250ms" or "1s" (leave it out for the default, 250ms), got "5ms"`},
		{"connectTimeout too long", entranceHead + shadowMirrorYAML + "guard: {connectTimeout: 11s}\n", "guard.connectTimeout", `got "11s"`},
		{"connectTimeout without unit", entranceHead + shadowMirrorYAML + "guard: {connectTimeout: 250}\n", "guard.connectTimeout", `got the number 250`},
		{"connectTimeout garbage", entranceHead + shadowMirrorYAML + "guard: {connectTimeout: soon}\n", "guard.connectTimeout", `got "soon"`},
		{"maxConnections zero", entranceHead + shadowMirrorYAML + "guard: {maxConnections: 0}\n", "guard.maxConnections", `must be a whole number from 1 to 10000 (leave it out for the default, 64), got 0`},
		{"maxPendingRequests too high", entranceHead + shadowMirrorYAML + "guard: {maxPendingRequests: 10001}\n", "guard.maxPendingRequests", `got 10001`},
		{"maxRequests negative", entranceHead + shadowMirrorYAML + "guard: {maxRequests: -1}\n", "guard.maxRequests", `got -1`},
		{"maxRequests string", entranceHead + shadowMirrorYAML + "guard: {maxRequests: \"10\"}\n", "guard.maxRequests", `got "10"`},
		{"maxBodyBytes too small", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 1023}\n", "guard.maxBodyBytes", `must be a size from 1Ki to 64Mi written as a Kubernetes quantity: a whole number of bytes, or a number with the suffix Ki or Mi (powers of 1024, e.g. "512Ki", "16Mi") or k or M (powers of 1000, e.g. "1M" = 1000000 bytes) (leave it out for the default, 4Mi), got the number 1023: that is less than 1Ki`},
		{"maxBodyBytes too large", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 65Mi}\n", "guard.maxBodyBytes", `got "65Mi": that is more than 64Mi`},
		{"maxBodyBytes zero", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 0Ki}\n", "guard.maxBodyBytes", `got "0Ki"`},
		{"maxBodyBytes not a quantity", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 16MB}\n", "guard.maxBodyBytes", `written as a Kubernetes quantity`},
		{"maxBodyBytes upper-case K", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 512K}\n", "guard.maxBodyBytes", `got "512K"`},
		{"maxBodyBytes negative", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: -1Mi}\n", "guard.maxBodyBytes", `got "-1Mi": a size cannot be negative`},
		{"maxBodyBytes fraction of a byte", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 1048576.5}\n", "guard.maxBodyBytes", `got the number 1048576.5: that is not a whole number of bytes`},
		{"maxBodyBytes milli", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 2000000m}\n", "guard.maxBodyBytes", `got "2000000m": the suffix m means thousandths, which a size in bytes has no use for; for megabytes write M (1000000 bytes) or Mi (1048576 bytes)`},
		{"maxBodyBytes boolean", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: true}\n", "guard.maxBodyBytes", `got the boolean true`},
		{"maxBodyBytes huge number", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: 99999999999999999999}\n", "guard.maxBodyBytes", `got the number 99999999999999999999: that is more than 64Mi`},
		{"maxBodyBytes list", entranceHead + shadowMirrorYAML + "guard: {maxBodyBytes: [1]}\n", "guard.maxBodyBytes", `got a list`},

		// aliases
		{"alias as a value", entranceHead + "port: &p http\nmirrors:\n- {service: s, port: *p, percent: 1}\n", "mirrors[0].port", `YAML aliases (*p) are not supported`},
		{"alias as a list item", entranceHead + shadowMirrorYAML + "match: {methods: [&m GET, *m]}\n", "match.methods[1]", `YAML aliases (*m) are not supported`},
		{"alias as a mirror", entranceHead + "mirrors:\n- &m {service: s, percent: 1}\n- *m\n", "mirrors[1]", `YAML aliases (*m) are not supported`},
		{"alias as a field name", entranceHead + shadowMirrorYAML + "x: &k port\n*k : http\n", "", `YAML aliases (*k) are not supported`},
	}
	for _, tt := range tests {
		if tt.name == "policy not a mapping" {
			continue // covered by TestOneBadPolicyKeepsTheOthers
		}
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(policies) != 0 {
				t.Errorf("policy parsed as valid: %+v", policies[0])
			}
			if !hasError(errs, "p", 0, tt.field, tt.msg) {
				t.Errorf("want an error of policy \"p\" at field %q containing %q, got:\n%s", tt.field, tt.msg, renderErrors(errs))
			}
			for _, e := range errs {
				if e.Message == "" || !strings.Contains(e.Message, "(line ") {
					t.Errorf("message without a line number: %q", e.Message)
				}
			}
		})
	}
}

// natoMethods are 20 made-up methods whose alternation is too big for
// Envoy's regex limit.
const natoMethods = "ALPHA, BRAVO, CHARLIE, DELTA, ECHO, FOXTROT, GOLF, HOTEL, INDIA, JULIET, KILO, LIMA, MIKE, NOVEMBER, OSCAR, PAPA, QUEBEC, ROMEO, SIERRA, TANGO"

var longHeaderName = "x-" + strings.Repeat("a", 17000)

func manyMirrors(n int) string {
	var b strings.Builder
	b.WriteString("mirrors:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- {service: s, name: m%d, percent: 1}\n", i)
	}
	return b.String()
}

func hasError(errs []*PolicyError, policy string, index int, field, msg string) bool {
	for _, e := range errs {
		if e.Policy == policy && e.Index == index && e.Field == field && strings.Contains(e.Message, msg) && !e.Warning {
			return true
		}
	}
	return false
}

// TestParsePoliciesReportsEveryProblem checks that one pass reports all the
// problems of a policy, not only the first.
func TestParsePoliciesReportsEveryProblem(t *testing.T) {
	body := "service: Entrance\nport: 0\nmirrors:\n- {service: s, percent: 101}\n- {url: \"ftp://x\", percent: 1}\nguard: {maxRequests: 0}\n"
	_, errs := parseKey(onePolicy(body))
	want := []string{"service", "port", "mirrors[0].percent", "mirrors[1].url", "guard.maxRequests"}
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fields = %v, want %v\n%s", got, want, renderErrors(errs))
	}
}

// TestParsePoliciesKeyWideProblems covers the problems that make a whole key
// unusable: they carry Index -1, no policy name, and no policy survives.
func TestParsePoliciesKeyWideProblems(t *testing.T) {
	valid := "policies:\n- name: ok\n  service: entrance\n  mirrors: [{service: s, percent: 1}]\n"
	tests := []struct {
		name  string
		data  string
		field string
		msg   string
	}{
		{"YAML syntax", valid + "  bad: [\n", "", "invalid YAML: line 5"},
		{"tab indentation", "policies:\n\t- name: x\n", "", "invalid YAML"},
		{"top level a list", "- name: ok\n", "", `the key must hold a mapping with one field, "policies" (a list of policies), got a list`},
		{"top level a string", "hello\n", "", `got "hello"`},
		{"unknown top-level field", valid + "version: 1\n", "version", `unknown field "version"; valid fields are: policies`},
		{"policies not a list", "policies: {name: ok}\n", "policies", "must be a list, got a mapping"},
		{"policies an alias", "x: &a []\npolicies: *a\n", "policies", `YAML aliases (*a) are not supported`},
		{"second document", valid + "---\n" + valid, "", `the key holds more than one YAML document`},
		{"too many policies", manyPolicies(MaxPoliciesPerKey + 1), "policies", "holds 201 policies, more than the limit of 200 per key"},
		{"oversized key", valid + "# " + strings.Repeat("x", MaxPolicyKeyBytes) + "\n", "", "more than the limit of 262144 (256 KiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(tt.data)
			if len(policies) != 0 {
				t.Errorf("want no policies from a broken key, got %d", len(policies))
			}
			if !hasError(errs, "", -1, tt.field, tt.msg) {
				t.Errorf("want a key-wide error at field %q containing %q, got:\n%s", tt.field, tt.msg, renderErrors(errs))
			}
			for _, e := range errs {
				if e.Index == -1 && !e.KeyWide() {
					t.Errorf("error %q has Index -1 but is not KeyWide", e.Error())
				}
			}
		})
	}
}

func manyPolicies(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- {name: p%d, service: entrance, mirrors: [{service: s, percent: 1}]}\n", i)
	}
	return b.String()
}

func TestParsePoliciesAtTheLimits(t *testing.T) {
	policies, errs := parseKey(manyPolicies(MaxPoliciesPerKey))
	if len(errs) != 0 || len(policies) != MaxPoliciesPerKey {
		t.Errorf("%d policies: got %d valid and errors:\n%s", MaxPoliciesPerKey, len(policies), renderErrors(errs))
	}
	policies, errs = parseKey(onePolicy(entranceHead + manyMirrors(MaxMirrorsPerPolicy)))
	if len(errs) != 0 || len(policies) != 1 || len(policies[0].Mirrors) != MaxMirrorsPerPolicy {
		t.Errorf("%d mirrors: want one valid policy, got errors:\n%s", MaxMirrorsPerPolicy, renderErrors(errs))
	}
}

// TestAliasBombIsRefusedQuickly feeds a billion-laughs document: it must be
// refused, not expanded.
func TestAliasBombIsRefusedQuickly(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("policies:\n- name: p\n  service: entrance\n  mirrors: *a9\n")
	policies, errs := parseKey(b.String())
	if len(policies) != 0 || len(errs) == 0 {
		t.Fatalf("alias bomb: got %d policies and %d errors", len(policies), len(errs))
	}
	if !hasError(errs, "p", 0, "mirrors", "YAML aliases (*a9) are not supported") {
		t.Errorf("want the alias refused at mirrors, got:\n%s", renderErrors(errs))
	}
}

func TestPolicyThatIsAnAliasIsRefused(t *testing.T) {
	data := "policies:\n- &p {name: p, service: entrance, mirrors: [{service: s, percent: 1}]}\n- *p\n"
	policies, errs := parseKey(data)
	if len(policies) != 1 || policies[0].Name != "p" {
		t.Errorf("want the anchored policy p to stay valid, got %d policies", len(policies))
	}
	if !hasError(errs, "", 1, "", "YAML aliases (*p) are not supported") {
		t.Errorf("want the alias at policies[1] refused, got:\n%s", renderErrors(errs))
	}
}
