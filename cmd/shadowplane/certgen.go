package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowplane/shadowplane/internal/certs"
)

// newCertgenCommand makes the xDS port's CA and serving certificate, either
// as Secrets in the control plane's namespace (run as a Job, idempotent: it
// is also the renewal) or as files for a local run.
func newCertgenCommand() *cobra.Command {
	var (
		kubeconfig  string
		namespace   string
		service     string
		outDir      string
		dnsNames    []string
		ips         []string
		renewBefore time.Duration
		lifetime    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "certgen",
		Short: "Create or renew the xDS CA and serving certificate (Secrets, or files with --out-dir)",
		Long: `certgen makes the certificates of the xDS port.

In a cluster (the default) it keeps two Secrets in --namespace: shadowplane-ca
(the CA, created once and then kept, so sidecars keep trusting it) and
shadowplane-xds-tls (the serving certificate for <service>.<namespace>.svc,
re-issued when it expires within --renew-before). Run it as a Job and again on
a schedule: running it again is the rotation. The control plane re-reads the
mounted files per handshake, so nothing restarts.

With --out-dir it writes ca.crt, ca.key, tls.crt and tls.key there instead,
for a local control plane (make demo does this).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var parsedIPs []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				parsedIPs = append(parsedIPs, ip)
			}
			now := time.Now()
			if outDir != "" {
				return certgenFiles(cmd, outDir, append(certs.ServingDNSNames(service, namespace), dnsNames...), parsedIPs, lifetime, now)
			}
			client, err := kubeClient(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			res, err := certs.EnsureSecrets(ctx, client, certs.GenerateOptions{
				Namespace: namespace, Service: service, ExtraDNSNames: dnsNames, IPs: parsedIPs,
				RenewBefore: renewBefore, LeafLifetime: lifetime, Now: now,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.CreatedCA {
				fmt.Fprintf(out, "created CA Secret %s/%s\n", namespace, certs.CASecretName)
			}
			if res.IssuedServing {
				fmt.Fprintf(out, "issued serving certificate in Secret %s/%s, valid until %s\n", namespace, certs.ServingSecretName, res.NotAfter.UTC().Format(time.RFC3339))
			} else {
				fmt.Fprintf(out, "serving certificate in Secret %s/%s is valid until %s; nothing to do\n", namespace, certs.ServingSecretName, res.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "shadowplane-system"), "the control plane's namespace")
	f.StringVar(&service, "service", "shadowplane", "the control plane's Service name")
	f.StringVar(&outDir, "out-dir", "", "write ca.crt, ca.key, tls.crt, tls.key into this directory instead of Secrets")
	f.StringSliceVar(&dnsNames, "dns-name", nil, "extra DNS names for the serving certificate (repeatable)")
	f.StringSliceVar(&ips, "ip", nil, "IP addresses for the serving certificate (repeatable)")
	f.DurationVar(&renewBefore, "renew-before", 30*24*time.Hour, "re-issue the serving certificate when it expires within this")
	f.DurationVar(&lifetime, "lifetime", certs.DefaultLeafLifetime, "lifetime of the serving certificate")
	return cmd
}

func certgenFiles(cmd *cobra.Command, dir string, names []string, ips []net.IP, lifetime time.Duration, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--out-dir: %w", err)
	}
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	var ca *certs.Authority
	if certPEM, err := os.ReadFile(caCert); err == nil {
		keyPEM, err := os.ReadFile(caKey)
		if err != nil {
			return fmt.Errorf("%s exists but its key does not: %w", caCert, err)
		}
		if ca, err = certs.LoadAuthority(certs.Pair{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
			return fmt.Errorf("%s: %w", caCert, err)
		}
	} else {
		if ca, err = certs.NewAuthority("shadowplane-xds-ca", certs.DefaultCALifetime, now); err != nil {
			return err
		}
		if err := certs.WriteFiles(ca.Pair, caCert, caKey); err != nil {
			return err
		}
	}
	leaf, err := ca.Issue(names, ips, lifetime, now)
	if err != nil {
		return err
	}
	if err := certs.WriteFiles(leaf, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/{ca.crt,ca.key,tls.crt,tls.key}\n", dir)
	return nil
}
