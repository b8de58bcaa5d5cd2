// Command shadowplane is the shadowplane control plane and its tools: serve
// xDS to Envoy sidecars, render a sidecar bootstrap, validate policies
// offline, show proxy status, inject a sidecar into a manifest.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		// cobra already printed the error.
		os.Exit(exitCode(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "shadowplane",
		Short:         "Envoy xDS control plane that copies a share of live HTTP traffic to a test environment",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(
		newServeCommand(),
		newBootstrapCommand(),
		newValidateCommand(),
		newStatusCommand(),
		newTopCommand(),
		newInjectCommand(),
		newUninjectCommand(),
		newCertgenCommand(),
		newSetCommand(),
		newPromoteCommand(),
		newRollbackCommand(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintf(cmd.OutOrStdout(), "shadowplane %s\n", version)
			},
		},
	)
	return root
}

// exitError carries a specific exit code (e.g. 1 for "policies invalid")
// without cobra printing usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
