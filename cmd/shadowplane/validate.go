package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

func newValidateCommand() *cobra.Command {
	var (
		file     string
		allowURL []string
	)
	cmd := &cobra.Command{
		Use:   "validate -f FILE|-",
		Short: "Check a policy ConfigMap or policy file offline, with the control plane's own parser",
		Long: `Check a policy ConfigMap manifest (or a bare {policies: [...]} file) with exactly
the code the control plane runs. Prints one line per problem and exits 1 when
any policy is invalid. References to Services are not checked (that needs the
cluster); the control plane reports them as TargetMissing events.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				data []byte
				err  error
				name = filepath.Base(file)
			)
			if file == "-" {
				name = "stdin"
				data, err = readBounded(cmd.InOrStdin(), name)
			} else {
				var f *os.File
				if f, err = os.Open(file); err == nil {
					data, err = readBounded(f, file)
					f.Close()
				}
			}
			if err != nil {
				return fmt.Errorf("read policies: %w", err)
			}
			policies, problems := policy.ParseConfigMapFile(name, data, policy.ParseOptions{AllowedURLHosts: allowURL})
			capped := translator.CheckRouteCap(policies)
			problems = append(problems, capped...)
			policies = withoutCapped(policies, capped)
			out := cmd.OutOrStdout()
			errorCount := 0
			for _, p := range problems {
				level := "error"
				if p.Warning {
					level = "warning"
				} else {
					errorCount++
				}
				fmt.Fprintf(out, "%s: %s\n", level, p.Error())
			}
			for _, p := range policies {
				fmt.Fprintf(out, "policy %q is valid (configmap %q key %q)\n", p.Namespace+"/"+p.Name, p.Namespace+"/"+p.Source.ConfigMap, p.Source.Key)
			}
			if errorCount > 0 {
				source := file
				if file == "-" {
					source = "stdin"
				}
				return &exitError{code: 1, err: fmt.Errorf("%d problem(s) in %s", errorCount, source)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file holding the ConfigMap or policies, - for stdin (required)")
	cmd.Flags().StringArrayVar(&allowURL, "allow-url-target", nil, "URL target host patterns to allow, as for serve")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// withoutCapped drops the policies the route cap keeps out of force.
func withoutCapped(policies []*policy.Policy, capped []*policy.PolicyError) []*policy.Policy {
	out := policies[:0:0]
	for _, p := range policies {
		if !slices.ContainsFunc(capped, func(e *policy.PolicyError) bool { return e.Namespace == p.Namespace && e.Policy == p.Name }) {
			out = append(out, p)
		}
	}
	return out
}

// maxConfigMapBytes is the most a ConfigMap can hold (the API server's
// limit on an object's data); policies beyond it could never be applied.
const maxConfigMapBytes = 1 << 20

// readBounded reads at most maxConfigMapBytes, so `validate -f /dev/zero`
// ends with a message instead of exhausting memory.
func readBounded(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigMapBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigMapBytes {
		return nil, fmt.Errorf("%s is larger than 1 MiB, the most a Kubernetes ConfigMap can hold: split the policies across ConfigMaps", name)
	}
	return data, nil
}
