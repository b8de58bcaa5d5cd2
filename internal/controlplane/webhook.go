package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/internal/webhook"
)

// WebhookConfig turns on the admission webhooks.
type WebhookConfig struct {
	// Address is the HTTPS listen address, e.g. ":9443"; "" serves none.
	Address string
	// CertFile and KeyFile are the serving certificate (default: the xDS
	// one, which certgen issues for the shadowplane Service's DNS names),
	// re-read when they change.
	CertFile, KeyFile string
	// ConfigurationName names the Mutating- and
	// ValidatingWebhookConfiguration whose caBundle is kept equal to
	// CAFile; either empty leaves them alone.
	ConfigurationName string
	CAFile            string
	// Inject is what injected pods get (address, images, native sidecar).
	Inject inject.Options
	// MissedInterval is how often pods that ask for the sidecar and run
	// without it are looked for (default webhook.DefaultMissedInterval).
	MissedInterval time.Duration
}

// addWebhook listens and adds the webhook server to the web servers, and
// the caBundle keeper to the background parts.
func (cp *ControlPlane) addWebhook(cfg Config, registry prometheus.Registerer) error {
	w := cfg.Webhook
	certFile, keyFile := w.CertFile, w.KeyFile
	if certFile == "" && keyFile == "" {
		certFile, keyFile = cfg.TLSCertFile, cfg.TLSKeyFile
	}
	if certFile == "" || keyFile == "" {
		return fmt.Errorf("the admission webhooks need a serving certificate and key: the API server calls them over HTTPS only")
	}
	source, err := certs.NewFileSource(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("webhook TLS: %w", err)
	}
	tlsConfig := source.ServerTLSConfig()
	// Served by net/http over a TLS listener: HTTP/1.1, which every API
	// server speaks.
	tlsConfig.NextProtos = []string{"http/1.1"}
	l, err := net.Listen("tcp", w.Address)
	if err != nil {
		return fmt.Errorf("listen for webhooks on %s: %w", w.Address, err)
	}
	cp.WebhookAddr = l.Addr()
	if w.Inject.NativeSidecar {
		// Native sidecars where the cluster has them, ordinary containers
		// where it does not.
		info, err := cfg.Client.Discovery().ServerVersion()
		supported, verr := false, err
		if err == nil {
			supported, verr = webhook.SupportsNativeSidecars(info)
		}
		if !supported {
			cfg.Logger.Warn("injecting Envoy as an ordinary container: the API server does not run native sidecars (Kubernetes 1.29+)", "error", verr)
			w.Inject.NativeSidecar = false
		}
	}
	server := webhook.New(webhook.Options{
		Inject:       w.Inject,
		ParseOptions: ownParseOptions(cfg),
		Logger:       cfg.Logger.Named("webhook"),
		Registry:     registry,
	})
	cp.web = append(cp.web, webServer{name: "webhook server", listener: tls.NewListener(l, tlsConfig), server: newHTTPServer(server.Handler())})
	missed := webhook.NewMissed(cfg.Client, cfg.Namespaces, cp.Watcher.Leader, w.MissedInterval, cfg.Logger.Named("webhook"), registry)
	cp.background = append(cp.background, missed.Run)
	if w.ConfigurationName != "" && w.CAFile != "" {
		cp.background = append(cp.background, func(ctx context.Context) error {
			return webhook.KeepCABundle(ctx, cfg.Client, w.ConfigurationName, w.CAFile, cfg.Logger.Named("webhook"))
		})
	}
	return nil
}
