package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/nodemeta"
)

func newInjectCommand() *cobra.Command {
	var (
		o     inject.Options
		file  string
		ports string
	)
	cmd := &cobra.Command{
		Use:   "inject -f FILE|- --service NAME --ports LISTEN:APP",
		Short: "Add the shadowplane Envoy sidecar to workload manifests and swap the Service's targetPort",
		Long: `Reads Kubernetes manifests and writes them back with a shadowplane sidecar
added to every Deployment, StatefulSet, DaemonSet and Pod: an init container
that renders the Envoy bootstrap, and the Envoy container. The Service named
by --service gets its targetPort swapped from the app port to Envoy's listen
port. Other objects pass through unchanged (comments are not kept).`,
		Example: `  shadowplane inject -f app.yaml --service entrance --ports 15001:8080 | kubectl apply -f -`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pairs, err := nodemeta.ParsePorts(ports)
			if err != nil {
				return fmt.Errorf("--ports: %w", err)
			}
			o.Ports = pairs
			var in io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			res, err := inject.Manifests(in, cmd.OutOrStdout(), o)
			if err != nil {
				return err
			}
			if len(res.Workloads) == 0 {
				return fmt.Errorf("no Deployment, StatefulSet, DaemonSet or Pod in %s", file)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "injected %v; swapped targetPort of %v\n", res.Workloads, res.Services)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "manifest file, - for stdin (required)")
	f.StringVar(&o.Service, "service", "", "the Service the pods sit behind (required)")
	f.StringVar(&ports, "ports", "", "listen:app port pairs, e.g. 15001:8080 (required)")
	f.StringVar(&o.XDSAddress, "xds-address", "shadowplane.shadowplane-system.svc:18000", "control plane gRPC address")
	f.BoolVar(&o.Delta, "delta", false, "sidecars use incremental (delta) xDS")
	f.StringVar(&o.ShadowplaneImage, "image", "ghcr.io/shadowplane/shadowplane:"+imageTag(), "shadowplane image for the bootstrap init container")
	f.StringVar(&o.EnvoyImage, "envoy-image", "envoyproxy/envoy:v1.40.0", "Envoy image (the version shadowplane is tested with)")
	for _, name := range []string{"filename", "service", "ports"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func imageTag() string {
	if version == "dev" {
		return "v0.1.0"
	}
	return version
}
