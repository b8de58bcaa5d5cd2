package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/policy"
)

// repoRelPath is a path relative to the repository root (tests run in
// cmd/shadowplane).
func repoRelPath(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// runCLI runs the shadowplane command in-process with args and stdin and
// returns its output and the exit code main would use.
func runCLI(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		code = exitCode(err)
	}
	return out.String(), errOut.String(), code
}

// corpusExpect reads the "# expect: <substring>" first line of a
// corpus file.
func corpusExpect(t *testing.T, data []byte) string {
	t.Helper()
	first, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	expect, ok := strings.CutPrefix(string(first), "# expect: ")
	if !ok {
		t.Fatalf("first line must be \"# expect: <substring>\", got %q", first)
	}
	return expect
}

// needsCluster are corpus files whose problem only the control plane can
// see: validate does not know the cluster's Services.
var needsCluster = map[string]bool{"42-port-not-on-service.yaml": true}

// keyWide are corpus files whose problem spoils the whole data key, so the
// message cannot name a policy.
var keyWide = map[string]bool{
	"01-yaml-syntax-indent.yaml":        true,
	"02-yaml-syntax-unclosed-flow.yaml": true,
	"04-unknown-top-level-field.yaml":   true,
	"05-policies-not-list.yaml":         true,
	"52-second-document-in-key.yaml":    true,
	"53-oversized-key.yaml":             true,
}

// TestValidateCorpus runs `validate -f` over every broken ConfigMap of the
// translator's corpus: each exits 1 with a kubectl-style "error: " line
// that names the ConfigMap, the key (and the policy) and contains the
// problem the file announces.
func TestValidateCorpus(t *testing.T) {
	files, err := filepath.Glob(repoRelPath("policy", "testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("want the whole corpus (50+ files), found %d", len(files))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			expect := corpusExpect(t, data)
			stdout, stderr, code := runCLI(t, nil, "validate", "-f", file, "--allow-url-target=10.16.0.147")
			if needsCluster[name] {
				if code != 0 || !strings.Contains(stdout, `policy "default/entrance-to-staging" is valid`) {
					t.Fatalf("offline validate cannot see Service ports; want exit 0 and the policy valid, got exit %d:\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 1 {
				t.Errorf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, expect) {
				t.Errorf("output does not contain %q:\n%s", expect, stdout)
			}
			if strings.Contains(stdout, "is valid") {
				t.Errorf("output reports a valid policy:\n%s", stdout)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			for _, line := range lines {
				if !strings.HasPrefix(line, "error: ") {
					t.Errorf("line without the \"error: \" prefix: %q", line)
				}
				if !strings.Contains(line, `configmap "default/mirror-policies" key "policies.yaml"`) {
					t.Errorf("line does not name the ConfigMap and key: %q", line)
				}
				if !keyWide[name] && !strings.Contains(line, `policy "entrance-to-staging"`) {
					t.Errorf("line does not name the policy: %q", line)
				}
			}
			if !strings.Contains(stderr, "problem(s) in "+file) {
				t.Errorf("stderr lacks the summary: %q", stderr)
			}
		})
	}
}

// TestValidateCommand covers the valid example, stdin, warnings and
// usage errors.
func TestValidateCommand(t *testing.T) {
	example := repoRelPath("deploy", "examples", "policy.yaml")
	exampleData, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	bare := "policies:\n- name: p\n  service: entrance\n  mirrors:\n  - {service: entrance-shadow, percent: 1.5}\n"
	unlabelled := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: shop}\ndata:\n  policies.yaml: |\n    policies: []\n"
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		// want are substrings of stdout, in order; wantErr of stderr.
		want    []string
		wantErr string
	}{
		{
			name:     "valid example with its URL target allowed",
			args:     []string{"validate", "-f", example, "--allow-url-target=10.16.0.147"},
			wantCode: 0,
			want:     []string{`policy "default/entrance-to-staging" is valid (configmap "default/mirror-policies" key "policies.yaml")`},
		},
		{
			name:     "valid example from stdin",
			stdin:    string(exampleData),
			args:     []string{"validate", "-f", "-", "--allow-url-target=10.16.0.0/16"},
			wantCode: 0,
			want:     []string{`policy "default/entrance-to-staging" is valid`},
		},
		{
			name:     "example without the URL target allowed",
			args:     []string{"validate", "-f", example},
			wantCode: 1,
			want: []string{`error: configmap "default/mirror-policies" key "policies.yaml" policy "entrance-to-staging": mirrors[1].url: url host "10.16.0.147" is not allowed: start the control plane with --allow-url-target=10.16.0.147`,
				"(line 28)"},
			wantErr: "1 problem(s) in " + example,
		},
		{
			name:     "bare policy file from stdin",
			stdin:    bare,
			args:     []string{"validate", "-f", "-"},
			wantCode: 0,
			want:     []string{`policy "default/p" is valid (configmap "default/stdin" key "stdin")`},
		},
		{
			name:     "bare policy with an error from stdin",
			stdin:    strings.Replace(bare, "1.5", "150", 1),
			args:     []string{"validate", "-f", "-"},
			wantCode: 1,
			want:     []string{`error: configmap "default/stdin" key "stdin" policy "p": mirrors[0].percent: must be a number from 0 to 100 with at most 4 decimals, got 150 (line 5)`},
			wantErr:  "1 problem(s) in stdin",
		},
		{
			name:     "deny list applies whatever --allow-url-target says",
			stdin:    "policies:\n- name: p\n  service: entrance\n  mirrors:\n  - {url: \"http://169.254.169.254\", percent: 1}\n  - {url: \"http://[::1]:8080\", percent: 1}\n  - {url: \"http://10.16.0.147:15000\", percent: 1}\n",
			args:     []string{"validate", "-f", "-", "--allow-url-target=0.0.0.0/0", "--allow-url-target=::/0"},
			wantCode: 1,
			want: []string{
				`error: configmap "default/stdin" key "stdin" policy "p": mirrors[0].url: url host "169.254.169.254" is refused by the deny list (link-local: includes the cloud metadata service 169.254.169.254); the allowlist cannot open it`,
				`mirrors[1].url: url host "::1" is refused by the deny list (loopback)`,
				`mirrors[2].url: url port 15000 is refused by the deny list on every host`,
			},
			wantErr: "3 problem(s) in stdin",
		},
		{
			name:     "unlabelled ConfigMap is a warning only",
			stdin:    unlabelled,
			args:     []string{"validate", "-f", "-"},
			wantCode: 0,
			want:     []string{`warning: configmap "shop/other": metadata.labels: the ConfigMap lacks the label shadowplane.io/policy: "true", so shadowplane ignores it`},
		},
		{
			name:     "missing file",
			args:     []string{"validate", "-f", filepath.Join(t.TempDir(), "nope.yaml")},
			wantCode: 1,
			wantErr:  "read policies:",
		},
		{
			name:     "no -f",
			args:     []string{"validate"},
			wantCode: 1,
			wantErr:  `required flag(s) "filename" not set`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, []byte(tt.stdin), tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			rest := stdout
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("stdout lacks %q (in order):\n%s", w, stdout)
					break
				}
				rest = rest[i+len(w):]
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, stderr)
			}
		})
	}
}

// TestDenyListPortsAreTheDefaults: the ports the deny list refuses on
// every host are the defaults that the commands actually use, so a change
// of a default cannot leave the deny list behind.
func TestDenyListPortsAreTheDefaults(t *testing.T) {
	if bootstrap.DefaultAdminPort != policy.EnvoyAdminPort {
		t.Errorf("bootstrap.DefaultAdminPort = %d, but the deny list refuses %d", bootstrap.DefaultAdminPort, policy.EnvoyAdminPort)
	}
	for _, cmd := range []*cobra.Command{newServeCommand(), newBootstrapCommand(), newInjectCommand()} {
		def := cmd.Flags().Lookup("xds-address").DefValue
		_, port, err := net.SplitHostPort(def)
		if err != nil || port != strconv.Itoa(policy.DefaultXDSPort) {
			t.Errorf("%s --xds-address defaults to %q, but the deny list refuses port %d", cmd.Name(), def, policy.DefaultXDSPort)
		}
	}
	if def := newBootstrapCommand().Flags().Lookup("admin-port").DefValue; def != strconv.Itoa(policy.EnvoyAdminPort) {
		t.Errorf("bootstrap --admin-port defaults to %s, but the deny list refuses %d", def, policy.EnvoyAdminPort)
	}
}

// TestValidateRefusesInputOverTheConfigMapLimit: endless or huge input is
// refused after 1 MiB with a message, not read into memory whole.
func TestValidateRefusesInputOverTheConfigMapLimit(t *testing.T) {
	for name, args := range map[string][]string{
		"/dev/zero": {"validate", "-f", "/dev/zero"},
		"stdin":     {"validate", "-f", "-"},
	} {
		t.Run(name, func(t *testing.T) {
			var in []byte
			if name == "stdin" {
				in = bytes.Repeat([]byte("# padding\n"), (1<<20)/10+1)
			}
			_, stderr, code := runCLI(t, in, args...)
			if code == 0 || !strings.Contains(stderr, "larger than 1 MiB") {
				t.Fatalf("exit %d, stderr %q; want a refusal naming the 1 MiB limit", code, stderr)
			}
		})
	}
}
