package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
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
		Short: "Add the shadowplane Envoy sidecar to workload manifests, without losing a request during the rollout",
		Long: `Reads Kubernetes manifests and writes them back with a shadowplane sidecar
added to every Deployment, StatefulSet, DaemonSet and Pod: an init container
that renders the Envoy bootstrap, and Envoy as a native sidecar (an init
container with restartPolicy Always; --native-sidecar=false for clusters
before Kubernetes 1.29), ready on Envoy's /ready and draining in its preStop.

The Service named by --service reaches Envoy by port name: the name of the
app's container port moves to Envoy's port in the same template change, so
during the rollout old pods map it to the app and new pods to Envoy. A
Service that targets the app's port by number is switched to that name; if
the app's port has no name, the Service stays on the app for this rollout
and inject says to run it again once the rollout is done. Workloads that
have the sidecar already are left as they are. Refused: hostNetwork pods,
ports the sidecar needs that a container uses, unnamed multi-port Services.
Other objects pass through unchanged (comments are not kept).

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
			res, err := transform(cmd, file, "injected", func(in io.Reader, out io.Writer) (inject.Result, error) {
				return inject.Manifests(in, out, o)
			})
			if err != nil {
				return err
			}
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
	f.BoolVar(&o.NativeSidecar, "native-sidecar", true, "run Envoy as a native sidecar (init container with restartPolicy Always, Kubernetes 1.29+)")
	f.Uint32Var(&o.HealthPort, "health-port", inject.DefaultHealthPort, "the sidecar's readiness (/ready) and drain (/drain) port")
	f.DurationVar(&o.DrainDelay, "drain-delay", bootstrap.DefaultDrainDelay, "how long the sidecar's preStop drains before Envoy stops: longer than the endpoint propagation delay")
	f.BoolVar(&o.Insecure, "insecure", false, "plain-text sidecars without token or CA, for a control plane run with --insecure-xds (local development only)")
	f.StringVar(&o.ShadowplaneImage, "image", "ghcr.io/shadowplane/shadowplane:"+imageTag(), "shadowplane image for the bootstrap init container")
	f.StringVar(&o.EnvoyImage, "envoy-image", "envoyproxy/envoy:v1.40.0", "Envoy image (the version shadowplane is tested with)")
	for _, name := range []string{"filename", "service", "ports"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newUninjectCommand() *cobra.Command {
	var file, service string
	cmd := &cobra.Command{
		Use:   "uninject -f FILE|- [--service NAME]",
		Short: "Remove the shadowplane sidecar from workload manifests, without losing a request during the rollout",
		Long: `Reverses inject: removes the bootstrap init container, the Envoy sidecar, their
volumes and the sidecar label, and gives each Envoy port name back to the app
port Envoy forwarded to, so the Service's named targetPort maps old pods to
Envoy and new pods to the app during the rollout. A Service named by
--service that still targets Envoy's port by number (inject before named
ports) is pointed at the name instead.`,
		Example: `  kubectl get deployment,service -o yaml entrance | shadowplane uninject -f - --service entrance | kubectl apply -f -`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := transform(cmd, file, "removed the sidecar from", func(in io.Reader, out io.Writer) (inject.Result, error) {
				return inject.Remove(in, out, service)
			})
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, - for stdin (required)")
	cmd.Flags().StringVar(&service, "service", "", "the Service the pods sit behind")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// transform runs inject or uninject from file (- for stdin) to stdout and
// reports on stderr what it did.
func transform(cmd *cobra.Command, file, verb string, run func(io.Reader, io.Writer) (inject.Result, error)) (inject.Result, error) {
	var in io.Reader = cmd.InOrStdin()
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return inject.Result{}, err
		}
		defer f.Close()
		in = f
	}
	res, err := run(in, cmd.OutOrStdout())
	if err != nil {
		return res, err
	}
	if len(res.Workloads)+len(res.Unchanged) == 0 {
		return res, fmt.Errorf("no Deployment, StatefulSet, DaemonSet or Pod in %s", file)
	}
	report(cmd.ErrOrStderr(), verb, res)
	return res, nil
}

// report says on stderr what changed, what did not, and what is left to do.
func report(w io.Writer, verb string, res inject.Result) {
	fmt.Fprintf(w, "%s %v; targetPort changed in %v\n", verb, res.Workloads, res.Services)
	if len(res.Unchanged) > 0 {
		fmt.Fprintf(w, "left as they were: %v\n", res.Unchanged)
	}
	for _, note := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", note)
	}
}

func imageTag() string {
	if version == "dev" {
		return "v0.1.0"
	}
	return version
}
