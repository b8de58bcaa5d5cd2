package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/nodemeta"
)

func newBootstrapCommand() *cobra.Command {
	var (
		o        bootstrap.Options
		ports    string
		format   string
		output   string
		insecure bool
		tlsOpts  bootstrap.TLSOptions
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
			// The node first, so a sidecar the server would refuse gets the
			// server's message whatever else is wrong.
			if err := o.Node.Validate(); err != nil {
				return err
			}
			var sdsFiles map[string][]byte
			if !insecure {
				if err := completeTLSOptions(&tlsOpts, o.XDSAddress, output); err != nil {
					return err
				}
				o.TLS = &tlsOpts
				if sdsFiles, err = tlsOpts.SDSFiles(); err != nil {
					return err
				}
			}
			b, err := bootstrap.Render(o)
			if err != nil {
				return err
			}
			data, err := bootstrap.Marshal(b, format)
			if err != nil {
				return err
			}
			for name, content := range sdsFiles {
				if err := os.WriteFile(filepath.Join(tlsOpts.SDSDir, name), content, 0o644); err != nil {
					return fmt.Errorf("write SDS file: %w", err)
				}
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
	f.Uint32Var(&o.Health.Port, "health-port", 0, "port of the listener the kubelet probes (GET "+bootstrap.ReadyPath+") and drains through (preStop GET "+bootstrap.DrainPath+"); 0: none")
	f.StringVar(&o.Health.DrainToken, "drain-token", "", "secret the preStop GET "+bootstrap.DrainPath+" must send in the header "+bootstrap.DrainTokenHeader+" (at least 16 letters or digits, random per pod; `shadowplane inject` and the webhook generate it); required with --health-port")
	f.DurationVar(&o.Health.DrainDelay, "drain-delay", bootstrap.DefaultDrainDelay, "how long GET "+bootstrap.DrainPath+" holds the preStop hook after starting a graceful drain: longer than the endpoint propagation delay")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	f.BoolVar(&insecure, "insecure", false, "talk to the control plane in plain text without a token (only a control plane run with --insecure-xds accepts it)")
	f.StringVar(&tlsOpts.ServerName, "xds-server-name", "", "DNS name the control plane's certificate must carry, also sent as SNI (default: the host of --xds-address)")
	f.StringVar(&tlsOpts.CAFile, "ca-file", bootstrap.DefaultCAFile, "CA bundle that signs the control plane's certificate (the shadowplane-ca ConfigMap, mounted)")
	f.StringVar(&tlsOpts.TokenFile, "token-file", bootstrap.DefaultTokenFile, "projected ServiceAccount token (audience \""+bootstrap.TokenAudience+"\") sent on every xDS stream")
	f.StringVar(&tlsOpts.SDSDir, "sds-dir", "", "directory for the SDS files that point Envoy at the CA and the token (default: the directory of --output)")
	f.DurationVar(&o.StatsFlushInterval, "stats-flush-interval", bootstrap.DefaultStatsFlushInterval, "how often the sidecar reports its copy stats to the control plane")
	f.BoolVar(&o.NoCopyStats, "no-copy-stats", false, "do not report copy stats to the control plane")
	f.StringVar(&format, "format", "yaml", "output format: yaml or json")
	f.StringVarP(&output, "output", "o", "-", "file to write, - for stdout")
	_ = cmd.MarkFlagRequired("service")
	_ = cmd.MarkFlagRequired("ports")
	return cmd
}

// completeTLSOptions fills the defaults that depend on other flags: the
// server name from the xDS address, the SDS directory from the output.
func completeTLSOptions(t *bootstrap.TLSOptions, xdsAddress, output string) error {
	if t.ServerName == "" {
		host, _, err := net.SplitHostPort(xdsAddress)
		if err != nil {
			return fmt.Errorf("--xds-address %q: want HOST:PORT", xdsAddress)
		}
		if net.ParseIP(host) != nil {
			return fmt.Errorf("--xds-address %q is an IP address: give --xds-server-name, the DNS name in the control plane's certificate", xdsAddress)
		}
		t.ServerName = host
	}
	if t.SDSDir == "" {
		if output == "" || output == "-" {
			return errors.New("--sds-dir is required when the bootstrap goes to stdout: Envoy reads the CA and the token through SDS files written there")
		}
		dir, err := filepath.Abs(filepath.Dir(output))
		if err != nil {
			return err
		}
		t.SDSDir = dir
	}
	return nil
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
