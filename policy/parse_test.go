package policy

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// parseTestOptions allow the URL hosts the valid cases use.
var parseTestOptions = ParseOptions{AllowedURLHosts: []string{
	"10.16.0.0/16", "*.staging.example.com", "shadow.example.org", "fd00::/8",
}}

// parseKey parses data as the key "policies.yaml" of default/mirror-policies.
func parseKey(data string) ([]*Policy, []*PolicyError) {
	return ParsePolicies("default", "mirror-policies", "policies.yaml", []byte(data), parseTestOptions)
}

// onePolicy wraps the body of one policy (its fields after name) into a key.
func onePolicy(body string) string {
	return "policies:\n- name: p\n" + indentLines(body, "  ")
}

func indentLines(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString(prefix)
		}
		b.WriteString(line)
	}
	return b.String()
}

// basePolicy is what onePolicy yields before the case's own fields.
func basePolicy() *Policy {
	return &Policy{
		Namespace: "default", Name: "p",
		Source:     Source{ConfigMap: "mirror-policies", Key: "policies.yaml", Index: 0},
		Service:    "entrance",
		MarkCopies: true,
	}
}

func shadowMirror(ppm uint32) Mirror {
	return Mirror{Name: "default.entrance-shadow", Service: "entrance-shadow", Namespace: "default", PartsPerMillion: ppm}
}

const shadowMirrorYAML = "mirrors:\n- {service: entrance-shadow, percent: 25}\n"

func TestParsePoliciesValid(t *testing.T) {
	tests := []struct {
		name string
		body string // fields of policy "p" after its name
		want func(p *Policy)
	}{
		{
			name: "minimal policy takes the defaults",
			body: "service: entrance\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
		{
			name: "port by name",
			body: "service: entrance\nport: http\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Port = PortRef{Name: "http"}; p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
		{
			name: "port by number",
			body: "service: entrance\nport: 8080\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Port = PortRef{Number: 8080}; p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
		{
			name: "quoted port digits are a number",
			body: "service: entrance\nport: \"8080\"\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Port = PortRef{Number: 8080}; p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
		{
			name: "service mirror in another namespace with a named port",
			body: "service: entrance\nmirrors:\n- {service: entrance, namespace: staging, port: http, percent: 10}\n",
			want: func(p *Policy) {
				p.Mirrors = []Mirror{{Name: "staging.entrance.http", Service: "entrance", Namespace: "staging", Port: PortRef{Name: "http"}, PartsPerMillion: 100000}}
			},
		},
		{
			name: "same service on another port is not a self mirror",
			body: "service: entrance\nport: http\nmirrors:\n- {service: entrance, port: 8081, percent: 1}\n",
			want: func(p *Policy) {
				p.Port = PortRef{Name: "http"}
				p.Mirrors = []Mirror{{Name: "default.entrance.8081", Service: "entrance", Namespace: "default", Port: PortRef{Number: 8081}, PartsPerMillion: 10000}}
			},
		},
		{
			name: "explicit mirror names let two mirrors share a target",
			body: "service: entrance\nmirrors:\n- {service: entrance-shadow, name: copy-a, percent: 1}\n- {service: entrance-shadow, name: copy_b, percent: 2}\n",
			want: func(p *Policy) {
				a, b := shadowMirror(10000), shadowMirror(20000)
				a.Name, b.Name = "copy-a", "copy_b"
				p.Mirrors = []Mirror{a, b}
			},
		},
		{
			name: "url targets: default port, explicit port, https, IPv6, upper case host",
			body: `service: entrance
mirrors:
- {url: http://10.16.0.147, percent: 1}
- {url: "http://10.16.0.148:8080/", percent: 2}
- {url: https://Shadow.Staging.Example.com, percent: 3}
- {url: "https://a.b.staging.example.com:8443", percent: 4}
- {url: "http://[fd00::1]:8080", percent: 5}
- {url: "HTTP://shadow.example.org", percent: 6}
`,
			want: func(p *Policy) {
				p.Mirrors = []Mirror{
					{Name: "10.16.0.147", URL: &URLTarget{Raw: "http://10.16.0.147", Scheme: "http", Host: "10.16.0.147", Port: 80}, PartsPerMillion: 10000},
					{Name: "10.16.0.148_8080", URL: &URLTarget{Raw: "http://10.16.0.148:8080/", Scheme: "http", Host: "10.16.0.148", Port: 8080}, PartsPerMillion: 20000},
					{Name: "shadow.staging.example.com", URL: &URLTarget{Raw: "https://Shadow.Staging.Example.com", Scheme: "https", Host: "shadow.staging.example.com", Port: 443}, PartsPerMillion: 30000},
					{Name: "a.b.staging.example.com_8443", URL: &URLTarget{Raw: "https://a.b.staging.example.com:8443", Scheme: "https", Host: "a.b.staging.example.com", Port: 8443}, PartsPerMillion: 40000},
					{Name: "fd00__1_8080", URL: &URLTarget{Raw: "http://[fd00::1]:8080", Scheme: "http", Host: "fd00::1", Port: 8080}, PartsPerMillion: 50000},
					{Name: "shadow.example.org", URL: &URLTarget{Raw: "HTTP://shadow.example.org", Scheme: "http", Host: "shadow.example.org", Port: 80}, PartsPerMillion: 60000},
				}
			},
		},
		{
			name: "match is normalised: methods upper-cased, sorted, unique; headers lower-cased, sorted, unique",
			body: `service: entrance
match:
  pathPrefix: /entrance/
  methods: [post, GET, get, PURGE]
  headers:
  - {name: X-Tenant, exact: beta}
  - {name: x-tenant, exact: beta}
  - {name: x-canary, present: true}
  - {name: x-tenant, regex: "^b.*"}
  - {name: x-tenant, prefix: b}
  - {name: x-empty, exact: ""}
` + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Match = Match{
					PathPrefix: "/entrance/",
					Methods:    []string{"GET", "POST", "PURGE"},
					Headers: []HeaderMatch{
						{Name: "x-canary", Present: true},
						{Name: "x-empty"},
						{Name: "x-tenant", Exact: "beta"},
						{Name: "x-tenant", Prefix: "b"},
						{Name: "x-tenant", Regex: "^b.*"},
					},
				}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "every standard and WebDAV method fits Envoy's regex limit",
			body: "service: entrance\nmatch: {methods: [CONNECT, COPY, DELETE, GET, HEAD, LOCK, MKCOL, MOVE, OPTIONS, PATCH, POST, PROPFIND, PROPPATCH, PUT, TRACE, UNLOCK]}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Match = Match{Methods: []string{"CONNECT", "COPY", "DELETE", "GET", "HEAD", "LOCK", "MKCOL", "MOVE", "OPTIONS", "PATCH", "POST", "PROPFIND", "PROPPATCH", "PUT", "TRACE", "UNLOCK"}}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "copyHeaders are lower-cased and sorted; scalar values kept as written",
			body: `service: entrance
copyHeaders:
  remove: [Cookie, authorization, cookie]
  set:
    X-Env: staging
    x-copy: 1
    x-flag: true
    x-empty: ""
` + shadowMirrorYAML,
			want: func(p *Policy) {
				p.CopyHeaders = CopyHeaders{
					Remove: []string{"authorization", "cookie"},
					Set: []HeaderValue{
						{Name: "x-copy", Value: "1"}, {Name: "x-empty", Value: ""},
						{Name: "x-env", Value: "staging"}, {Name: "x-flag", Value: "true"},
					},
				}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "markCopies, hostSuffix and guard",
			body: "service: entrance\nmarkCopies: false\nhostSuffix: true\nguard: {connectTimeout: 1s, maxConnections: 1, maxPendingRequests: 10000, maxRequests: 500}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.MarkCopies = false
				p.HostSuffix = true
				p.Guard = Guard{ConnectTimeout: time.Second, MaxConnections: 1, MaxPendingRequests: 10000, MaxRequests: 500}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "guard bounds are inclusive",
			body: "service: entrance\nguard: {connectTimeout: 10ms}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{ConnectTimeout: 10 * time.Millisecond}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes in bytes",
			body: "service: entrance\nguard: {maxBodyBytes: 1024}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 1024}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes in Ki",
			body: "service: entrance\nguard: {maxBodyBytes: 512Ki}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 512 << 10}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes with a decimal suffix, as in Kubernetes",
			body: "service: entrance\nguard: {maxBodyBytes: 1M}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 1_000_000}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes as a fraction that is a whole number of bytes",
			body: "service: entrance\nguard: {maxBodyBytes: 1.5Mi}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 1536 << 10}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes in k, powers of 1000",
			body: "service: entrance\nguard: {maxBodyBytes: 64k}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 64_000}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "maxBodyBytes in Mi, quoted, at the upper bound",
			body: "service: entrance\nguard: {maxBodyBytes: \"64Mi\"}\n" + shadowMirrorYAML,
			want: func(p *Policy) {
				p.Guard = Guard{MaxBodyBytes: 64 << 20}
				p.Mirrors = []Mirror{shadowMirror(250000)}
			},
		},
		{
			name: "empty optional fields count as left out",
			body: "service: entrance\nport:\nmatch:\ncopyHeaders: ~\nmarkCopies: null\nhostSuffix:\nguard:\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
		{
			name: "empty lists match everything",
			body: "service: entrance\nmatch: {methods: [], headers: []}\ncopyHeaders: {remove: [], set: {}}\n" + shadowMirrorYAML,
			want: func(p *Policy) { p.Mirrors = []Mirror{shadowMirror(250000)} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parseKey(onePolicy(tt.body))
			if len(errs) != 0 {
				t.Fatalf("unexpected errors:\n%s", renderErrors(errs))
			}
			want := basePolicy()
			tt.want(want)
			if diff := cmp.Diff([]*Policy{want}, policies); diff != "" {
				t.Errorf("policy mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		literal string
		want    uint32
	}{
		{"0", 0}, {"25", 250000}, {"1.5", 15000}, {"0.0001", 1}, {"100", 1000000},
		{"100.0000", 1000000}, {"99.9999", 999999}, {"1.50000", 15000}, {".5", 5000},
		{"+3", 30000}, {"7.", 70000}, {"0.1", 1000}, {"33.3333", 333333},
	}
	for _, tt := range tests {
		t.Run(tt.literal, func(t *testing.T) {
			policies, errs := parseKey(onePolicy("service: entrance\nmirrors:\n- service: entrance-shadow\n  percent: " + tt.literal + "\n"))
			if len(errs) != 0 {
				t.Fatalf("unexpected errors:\n%s", renderErrors(errs))
			}
			if got := policies[0].Mirrors[0].PartsPerMillion; got != tt.want {
				t.Errorf("percent %s = %d parts per million, want %d", tt.literal, got, tt.want)
			}
		})
	}
}

func TestParsePoliciesEmptyKeys(t *testing.T) {
	for _, data := range []string{"", "# nothing yet\n", "policies:\n", "policies: []\n", "{}\n", "null\n", "---\n"} {
		policies, errs := parseKey(data)
		if len(policies) != 0 || len(errs) != 0 {
			t.Errorf("%q: want no policies and no errors, got %d policies and:\n%s", data, len(policies), renderErrors(errs))
		}
	}
}

func TestParsePoliciesJSON(t *testing.T) {
	data := `{"policies": [{"name": "p", "service": "entrance", "mirrors": [{"service": "entrance-shadow", "percent": 12.5}]}]}`
	policies, errs := parseKey(data)
	if len(errs) != 0 {
		t.Fatalf("unexpected errors:\n%s", renderErrors(errs))
	}
	want := basePolicy()
	want.Mirrors = []Mirror{shadowMirror(125000)}
	if diff := cmp.Diff([]*Policy{want}, policies); diff != "" {
		t.Errorf("policy mismatch (-want +got):\n%s", diff)
	}
}

// TestOneBadPolicyKeepsTheOthers checks that problems stay with their policy.
func TestOneBadPolicyKeepsTheOthers(t *testing.T) {
	data := `policies:
- name: good-one
  service: entrance
  mirrors: [{service: entrance-shadow, percent: 1}]
- name: bad
  service: entrance
  mirrors: [{service: entrance-shadow, percent: 101}]
- 42
- service: entrance
  mirrors: [{service: entrance-shadow, percent: 1}]
- name: good-two
  service: checkout
  mirrors: [{url: "http://10.16.0.1", percent: 2}]
`
	policies, errs := parseKey(data)
	var names []string
	for _, p := range policies {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"good-one", "good-two"}, names); diff != "" {
		t.Errorf("valid policies (-want +got):\n%s", diff)
	}
	if policies[1].Source.Index != 4 {
		t.Errorf("good-two Source.Index = %d, want 4", policies[1].Source.Index)
	}
	type where struct {
		policy string
		index  int
		field  string
	}
	var got []where
	for _, e := range errs {
		got = append(got, where{e.Policy, e.Index, e.Field})
	}
	want := []where{{"bad", 1, "mirrors[0].percent"}, {"", 2, ""}, {"", 3, "name"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(where{})); diff != "" {
		t.Errorf("errors (-want +got):\n%s\n%s", diff, renderErrors(errs))
	}
	if msg := errs[2].Error(); !strings.Contains(msg, "policies[3] (unnamed): name: is required") {
		t.Errorf("unnamed policy error = %q, want it to name policies[3]", msg)
	}
}

func TestDuplicatePolicyNamesDropEveryCopy(t *testing.T) {
	data := `policies:
- name: twin
  service: entrance
  mirrors: [{service: entrance-shadow, percent: 1}]
- name: other
  service: entrance
  mirrors: [{service: entrance-shadow, percent: 1}]
- name: twin
  service: checkout
  mirrors: [{service: checkout-shadow, percent: 1}]
- name: twin
  service: cart
  mirrors: [{service: cart-shadow, percent: 1}]
`
	policies, errs := parseKey(data)
	if len(policies) != 1 || policies[0].Name != "other" {
		t.Fatalf("want only policy other, got %d policies", len(policies))
	}
	if len(errs) != 2 {
		t.Fatalf("want 2 errors (second and third twin), got:\n%s", renderErrors(errs))
	}
	for i, e := range errs {
		if e.Policy != "twin" || e.Index != 2+i || e.Field != "name" || !strings.Contains(e.Message, "already used by policies[0]") {
			t.Errorf("error %d = %+v, want a duplicate-name error for twin at index %d", i, e, 2+i)
		}
	}
}

func TestPolicyErrorString(t *testing.T) {
	tests := []struct {
		err  PolicyError
		want string
	}{
		{
			PolicyError{Namespace: "default", ConfigMap: "mirror-policies", Key: "policies.yaml", Policy: "entrance-to-staging", Index: 0, Field: "mirrors[1].percent", Message: "must be x"},
			`configmap "default/mirror-policies" key "policies.yaml" policy "entrance-to-staging": mirrors[1].percent: must be x`,
		},
		{
			PolicyError{Namespace: "default", ConfigMap: "cm", Key: "policies.yaml", Index: 2, Field: "name", Message: "is required"},
			`configmap "default/cm" key "policies.yaml" policies[2] (unnamed): name: is required`,
		},
		{
			PolicyError{Namespace: "default", ConfigMap: "cm", Key: "policies.yaml", Index: -1, Message: "invalid YAML: line 3: oops"},
			`configmap "default/cm" key "policies.yaml": invalid YAML: line 3: oops`,
		},
		{
			PolicyError{Namespace: "shop", ConfigMap: "cm", Index: -1, Field: "metadata.name", Message: "is required"},
			`configmap "shop/cm": metadata.name: is required`,
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestValidFullExample pins the parse of the example that uses every field.
func TestValidFullExample(t *testing.T) {
	data, err := os.ReadFile("testdata/parse/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opts := ParseOptions{AllowedURLHosts: []string{"10.16.0.0/16", "*.example.com"}}
	policies, errs := ParseConfigMapFile("valid-full.yaml", data, opts)
	if len(errs) != 0 {
		t.Fatalf("unexpected errors:\n%s", renderErrors(errs))
	}
	src := Source{ConfigMap: "mirror-policies", Key: "policies.yaml"}
	full := &Policy{
		Namespace: "shop", Name: "entrance-to-staging", Source: src,
		Service: "entrance", Port: PortRef{Name: "http"},
		Match: Match{
			PathPrefix: "/entrance/",
			Methods:    []string{"GET", "POST"},
			Headers: []HeaderMatch{
				{Name: "user-agent", Prefix: "Mozilla/"},
				{Name: "x-canary", Present: true},
				{Name: "x-request-class", Regex: "^(batch|bulk)-[0-9]+$"},
				{Name: "x-tenant", Exact: "beta"},
			},
		},
		Mirrors: []Mirror{
			{Name: "staging.entrance.8080", Service: "entrance", Namespace: "staging", Port: PortRef{Number: 8080}, PartsPerMillion: 250000},
			{Name: "shop.entrance-shadow", Service: "entrance-shadow", Namespace: "shop", PartsPerMillion: 1},
			{Name: "10.16.0.147_8080", URL: &URLTarget{Raw: "http://10.16.0.147:8080", Scheme: "http", Host: "10.16.0.147", Port: 8080}, PartsPerMillion: 15000},
			{Name: "external-copy", URL: &URLTarget{Raw: "https://shadow.test.example.com/", Scheme: "https", Host: "shadow.test.example.com", Port: 443}, PartsPerMillion: 1000000},
		},
		CopyHeaders: CopyHeaders{
			Remove: []string{"authorization", "cookie"},
			Set:    []HeaderValue{{Name: "x-debug", Value: "1"}, {Name: "x-shadowplane-env", Value: "staging"}},
		},
		MarkCopies: false,
		HostSuffix: true,
		Guard:      Guard{ConnectTimeout: 500 * time.Millisecond, MaxConnections: 100, MaxPendingRequests: 50, MaxRequests: 200, MaxBodyBytes: 16 << 20},
	}
	paused := &Policy{
		Namespace: "shop", Name: "checkout-paused", Source: Source{ConfigMap: "mirror-policies", Key: "policies.yaml", Index: 1},
		Service:    "checkout",
		Mirrors:    []Mirror{{Name: "shop.checkout-shadow", Service: "checkout-shadow", Namespace: "shop", PartsPerMillion: 0}},
		MarkCopies: true,
	}
	if diff := cmp.Diff([]*Policy{full, paused}, policies); diff != "" {
		t.Errorf("policies mismatch (-want +got):\n%s", diff)
	}
}
