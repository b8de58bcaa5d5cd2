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
		o      inject.Options
		file   string
		ports  string
		caFile string
	)
	cmd := &cobra.Command{
		Use:   "inject -f FILE|- --service NAME --ports LISTEN:APP",
		Short: "Add the shadowplane Envoy sidecar to workload manifests and swap the Service's targetPort",
		Long: `Reads Kubernetes manifests and writes them back with a shadowplane sidecar
added to every Deployment, StatefulSet, DaemonSet and Pod: an init container
that renders the Envoy bootstrap, and the Envoy container. The Service named
by --service gets its targetPort swapped from the app port to Envoy's listen
port. Other objects pass through unchanged (comments are not kept).

The sidecar talks to the control plane over TLS: it trusts the CA in
ConfigMap shadowplane-ca (mounted at /etc/shadowplane/ca) and presents a
projected ServiceAccount token for audience "shadowplane" (mounted at
/var/run/secrets/shadowplane). --ca-file also writes that ConfigMap for each
namespace of the injected workloads. The pods get the label
shadowplane.io/sidecar=true, which the control plane's NetworkPolicy admits.`,
		Example: `  kubectl -n shadowplane-system get secret shadowplane-xds-tls -o jsonpath='{.data.ca\.crt}' | base64 -d > ca.crt
  shadowplane inject -f app.yaml --service entrance --ports 15001:8080 --ca-file ca.crt | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pairs, err := nodemeta.ParsePorts(ports)
			if err != nil {
				return fmt.Errorf("--ports: %w", err)
			}
			o.Ports = pairs
			if caFile != "" {
				if o.CABundle, err = os.ReadFile(caFile); err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
			}
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
			if len(res.CAConfigMaps) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "CA published in ConfigMaps %v\n", res.CAConfigMaps)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "manifest file, - for stdin (required)")
	f.StringVar(&o.Service, "service", "", "the Service the pods sit behind (required)")
	f.StringVar(&ports, "ports", "", "listen:app port pairs, e.g. 15001:8080 (required)")
	f.StringVar(&o.XDSAddress, "xds-address", "shadowplane.shadowplane-system.svc:18000", "control plane gRPC address")
	f.BoolVar(&o.Delta, "delta", false, "sidecars use incremental (delta) xDS")
	f.StringVar(&o.XDSServerName, "xds-server-name", "", "DNS name the control plane's certificate must carry (default: the host of --xds-address)")
	f.StringVar(&caFile, "ca-file", "", "PEM CA bundle to publish as ConfigMap shadowplane-ca in each workload namespace (the ca.crt of Secret shadowplane-xds-tls)")
	f.BoolVar(&o.Insecure, "insecure", false, "plain-text sidecars without token or CA, for a control plane run with --insecure-xds (local development only)")
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
