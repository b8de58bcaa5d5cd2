package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/nodemeta"
)

func newBootstrapCommand() *cobra.Command {
	var (
		o      bootstrap.Options
		ports  string
		format string
		output string
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Render the Envoy bootstrap of a sidecar",
		Example: `  shadowplane bootstrap --service entrance --namespace default --ports 15001:8080 \
      --xds-address shadowplane.shadowplane-system.svc:18000 -o /etc/envoy/envoy.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pairs, err := nodemeta.ParsePorts(ports)
			if err != nil {
				return fmt.Errorf("--ports: %w", err)
			}
			o.Node.Ports = pairs
			if o.Node.NodeID == "" {
				o.Node.NodeID = defaultNodeID()
			}
			b, err := bootstrap.Render(o)
			if err != nil {
				return err
			}
			data, err := bootstrap.Marshal(b, format)
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			return os.WriteFile(output, data, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Node.NodeID, "node-id", "", "unique node id (default: $POD_NAME, else the host name)")
	f.StringVar(&o.Node.Namespace, "namespace", envOr("POD_NAMESPACE", "default"), "namespace of the fronted Service (default: $POD_NAMESPACE, else default)")
	f.StringVar(&o.Node.Service, "service", "", "name of the Service this sidecar fronts (required)")
	f.StringVar(&ports, "ports", "", "listen:app port pairs, comma separated, e.g. 15001:8080 (required)")
	f.StringVar(&o.Node.ListenAddress, "listen-address", "", "address the listeners bind to (default 0.0.0.0)")
	f.StringVar(&o.XDSAddress, "xds-address", "shadowplane.shadowplane-system.svc:18000", "control plane gRPC address host:port")
	f.Uint32Var(&o.AdminPort, "admin-port", bootstrap.DefaultAdminPort, "Envoy admin port, on 127.0.0.1")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	f.StringVar(&format, "format", "yaml", "output format: yaml or json")
	f.StringVarP(&output, "output", "o", "-", "file to write, - for stdout")
	_ = cmd.MarkFlagRequired("service")
	_ = cmd.MarkFlagRequired("ports")
	return cmd
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func defaultNodeID() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "sidecar"
}
