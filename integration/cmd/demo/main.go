// Command demo runs shadowplane end to end on this machine: a real
// kube-apiserver with etcd, the shadowplane control plane (the real binary),
// a primary and a shadow backend, and a real Envoy sidecar. The sidecar
// takes the secure path, as in a cluster: xDS over TLS with the certificate
// `shadowplane certgen` makes, and a ServiceAccount token bound to the
// sidecar's Pod that the control plane verifies with a TokenReview. It
// applies a mirror policy, sends traffic, prints what each backend got,
// changes the percentage live and prints again. Everything stops on exit or
// Ctrl-C.
//
// `make demo` runs it through hack/netns-exec, in a private network
// namespace whose lo has the test address 198.18.0.1 for the shadow
// backend; with HOLD=1 it prints how to enter that namespace.
//
//	make demo            # scripted run
//	make demo HOLD=1     # then keep running for your own kubectl/curl
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

func main() {
	hold := flag.Bool("hold", os.Getenv("HOLD") != "", "keep everything running after the script until Ctrl-C")
	rate := flag.Int("rate", 200, "requests per second sent through the sidecar")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *hold, *rate); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(ctx context.Context, hold bool, rate int) error {
	root := testtools.RepoRoot()
	bin := testtools.BinDir()
	dir := filepath.Join(root, ".demo")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	step("starting kube-apiserver and etcd (real binaries from .tools/bin)")
	kube, err := harness.StartKube(bin, dir)
	if err != nil {
		return err
	}
	defer kube.Stop()
	fmt.Printf("    API server %s, kubeconfig %s\n", kube.Config.Host, kube.KubeconfigPath)

	endpointHost, err := harness.EndpointHost()
	if err != nil {
		return err
	}
	enter := namespaceEntry()
	if enter != "" {
		fmt.Printf("    in a private network namespace (lo: 127.0.0.1 and %s); nothing listens on this machine's interfaces\n", endpointHost)
	}
	primary, err := harness.StartBackend("primary", "127.0.0.1")
	if err != nil {
		return err
	}
	defer primary.Stop()
	shadow, err := harness.StartBackend("shadow", endpointHost)
	if err != nil {
		return err
	}
	defer shadow.Stop()
	listenPort, err := harness.FreePort()
	if err != nil {
		return err
	}
	step("backends: primary app on %s, shadow (test environment) on %s", primary.Addr, shadow.Addr)

	step("creating Service entrance (targetPort = Envoy %d) and Service staging/entrance with an EndpointSlice", listenPort)
	for _, ns := range []string{"demo", "staging"} {
		if err := kube.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if err := kube.ApplyService(ctx, "demo", "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}); err != nil {
		return err
	}
	if err := kube.ApplyService(ctx, "staging", "entrance", harness.ServicePort{Name: "http", Port: 8080, TargetPort: shadow.Port}); err != nil {
		return err
	}
	if err := kube.ApplyEndpointSlice(ctx, "staging", "entrance", "http", shadow.Port, harness.SliceEndpoint{Address: endpointHost, Ready: true}); err != nil {
		return err
	}

	shadowplane := filepath.Join(root, "bin", "shadowplane")
	tlsDir := filepath.Join(dir, "xds-tls")
	step("making the xDS certificates: bin/shadowplane certgen --out-dir %s --ip 127.0.0.1", tlsDir)
	out, err := exec.CommandContext(ctx, shadowplane, "certgen", "--out-dir", tlsDir, "--ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		return fmt.Errorf("certgen: %w\n%s", err, out)
	}
	fmt.Printf("    %s: a CA, and a serving certificate for %s (the name sidecars dial in a cluster)\n", strings.TrimSpace(string(out)), harness.XDSServerName)

	xdsPort, _ := harness.FreePort()
	httpPort, _ := harness.FreePort()
	debugPort, _ := harness.FreePort()
	step("starting the control plane: bin/shadowplane serve (xDS over TLS :%d, HTTP :%d, debug :%d)", xdsPort, httpPort, debugPort)
	cp, err := harness.StartProcess(exec.Command(shadowplane, "serve",
		"--kubeconfig", kube.KubeconfigPath,
		"--xds-address", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--xds-tls-cert-file", filepath.Join(tlsDir, "tls.crt"),
		"--xds-tls-key-file", filepath.Join(tlsDir, "tls.key"),
		"--http-address", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--debug-address", fmt.Sprintf("127.0.0.1:%d", debugPort),
		"--shutdown-delay", "0s"), // no other replica to hand sidecars to
		filepath.Join(dir, "shadowplane.log"))
	if err != nil {
		return err
	}
	defer cp.Stop()
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))
		return err == nil, err
	}); err != nil {
		return fmt.Errorf("control plane not ready (log: %s): %w", cp.LogPath, err)
	}

	step("the sidecar's identity, as a pod has it: ServiceAccount demo/entrance, Pod entrance-demo-0, a token bound to the Pod")
	id, err := kube.NewSidecarIdentity(ctx, "demo", "entrance", "entrance", "entrance-demo-0", filepath.Join(dir, "identity"))
	if err != nil {
		return err
	}
	// The CA as a pod sees it: ConfigMap shadowplane-ca, mounted.
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		return err
	}
	caDir := filepath.Join(dir, "ca")
	if err := harness.WriteProjected(caDir, map[string][]byte{"ca.crt": caPEM}); err != nil {
		return err
	}
	fmt.Printf("    token for audience shadowplane in %s (the kubelet would refresh it; so does this demo)\n", id.TokenFile)
	go refreshToken(ctx, kube, id)

	step("starting a real Envoy sidecar from `shadowplane bootstrap` (listens :%d, app %s, xDS over TLS to %s)", listenPort, primary.Addr, harness.XDSServerName)
	sidecar, err := harness.StartSidecar(ctx, harness.SidecarOptions{
		Shadowplane: shadowplane, Envoy: filepath.Join(bin, "envoy"), Dir: dir,
		XDSAddress: fmt.Sprintf("127.0.0.1:%d", xdsPort), NodeID: id.PodName,
		Namespace: "demo", Service: "entrance", ListenPort: listenPort, AppPort: uint32(primary.Port),
		Secure: &harness.SidecarTLS{CAFile: filepath.Join(caDir, "ca.crt"), TokenFile: id.TokenFile},
	})
	if err != nil {
		return err
	}
	defer sidecar.Stop()
	fmt.Printf("    Envoy admin http://%s, log %s\n", sidecar.AdminAddr, sidecar.LogPath)
	xdsTLS, _ := sidecar.Stats(ctx, `^cluster\.shadowplane_xds\.(ssl\.handshake|ssl\.versions\..*|upstream_cx_active)$`)
	fmt.Printf("    Envoy's xDS connection: %s\n", formatStats(xdsTLS))
	fmt.Printf("    control plane: %s\n", metricLines(ctx, httpPort, "shadowplane_xds_insecure", "shadowplane_xds_refused_streams_total"))

	policy := func(percent string) string {
		return `policies:
- name: entrance-to-staging
  service: entrance
  port: http
  match:
    pathPrefix: /entrance/
  mirrors:
  - service: entrance
    namespace: staging
    port: http
    name: staging
    percent: ` + percent + `
  copyHeaders:
    remove: [authorization, cookie]
`
	}
	key := "shadowplane.demo.entrance-to-staging.staging"
	client := harness.NewKeepAliveClient(32)
	send := func(seconds int) {
		primary.Reset()
		shadow.Reset()
		res := harness.RunAtRate(ctx, client, rate, time.Duration(seconds)*time.Second, func(ctx context.Context, i int) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/entrance/%d", sidecar.URL, i), nil)
			req.Header.Set("authorization", "Bearer production-secret")
			return req
		})
		time.Sleep(300 * time.Millisecond) // copies trail their originals
		fmt.Printf("    sent %d requests: %d errors, primary got %d, shadow got %d copies (%.1f %%), p99 %s\n",
			len(res.All), res.Errors(), primary.Count(), shadow.Count(),
			100*float64(shadow.Count())/float64(max(1, primary.Count())), res.Percentile(99).Round(10*time.Microsecond))
		if reqs := shadow.Requests(); len(reqs) > 0 {
			fmt.Printf("    a copy's headers: authorization=%q x-shadowplane-copy=%q\n", reqs[0].Header.Get("authorization"), reqs[0].Header.Get("x-shadowplane-copy"))
		}
	}

	firstChange := time.Now()
	for _, percent := range []string{"10", "50", "0"} {
		step("kubectl apply: policy entrance-to-staging at %s %%", percent)
		start := time.Now()
		if err := kube.ApplyPolicyConfigMap(ctx, "demo", "mirror-policies", "policies.yaml", policy(percent)); err != nil {
			return err
		}
		ppm := map[string]uint32{"10": 100_000, "50": 500_000, "0": 0}[percent]
		if err := harness.WaitUntil(ctx, 10*time.Second, func() (bool, error) {
			v, _, err := sidecar.RuntimeValue(ctx, key)
			return harness.RuntimeShareIs(v, ppm), err
		}); err != nil {
			return fmt.Errorf("envoy never applied %s %%: %w", percent, err)
		}
		v, _, _ := sidecar.RuntimeValue(ctx, key)
		share, _ := harness.RuntimeShare(v)
		fmt.Printf("    Envoy /runtime %s = %d/1000000 (%.4g %%) after %s (no restart, no drain)\n",
			key, share, float64(share)/10000, time.Since(start).Round(time.Millisecond))
		send(3)
	}
	stats, _ := sidecar.Stats(ctx, "listener_manager.listener_modified|listener_manager.total_listeners_draining|cluster_manager.cluster_modified")
	step("Envoy stats after three live changes")
	fmt.Println("    " + formatStats(stats))
	// /server_info computes the uptime when asked (the server.uptime stat
	// moves only at stats flushes); it restarts from zero if Envoy does.
	if info, err := sidecar.ServerInfo(ctx); err == nil {
		since := time.Since(firstChange)
		verdict := "one process throughout, never restarted"
		if info.Uptime+time.Second < since { // Envoy reports whole seconds
			verdict = "ENVOY RESTARTED during the changes"
		}
		fmt.Printf("    Envoy pid %d is %s, up %s; the first change was %s ago: %s\n",
			sidecar.PID(), info.State, info.Uptime, since.Round(100*time.Millisecond), verdict)
	}

	if hold {
		step("holding; Ctrl-C to stop. Everything listens inside the demo's network namespace, so run your commands there:")
		if enter == "" {
			fmt.Println("    (no namespace: this machine's own network; run the commands as they are)")
		} else {
			fmt.Printf("    enter it with:  %s\n", enter)
			enter += " "
		}
		fmt.Printf("    %senv KUBECONFIG=%s kubectl -n demo edit configmap mirror-policies\n", enter, kube.KubeconfigPath)
		fmt.Printf("    %scurl %s/entrance/x\n", enter, sidecar.URL)
		fmt.Printf("    %scurl http://127.0.0.1:%d/debug/proxies    (debug listener; readiness and metrics are on :%d)\n", enter, debugPort, httpPort)
		<-ctx.Done()
	}
	step("stopping everything")
	return nil
}

// refreshToken mints a new token for the sidecar every 20 minutes, as the
// kubelet does, so a held demo outlives the token's hour: the control
// plane ends each connection after 30 minutes and checks the token again.
func refreshToken(ctx context.Context, kube *harness.Kube, id *harness.SidecarIdentity) {
	ticker := time.NewTicker(20 * time.Minute)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := kube.RefreshToken(ctx, id); err != nil {
				fmt.Fprintln(os.Stderr, "demo: refresh the sidecar's token:", err)
			}
		}
	}
}

// metricLines are the control plane's /metrics lines of the named
// metrics, without comments.
func metricLines(ctx context.Context, httpPort uint32, names ...string) string {
	body, err := harness.GetJSON(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, name := range names {
			if strings.HasPrefix(line, name) && !strings.HasPrefix(line, "#") {
				lines = append(lines, line)
			}
		}
	}
	return strings.Join(lines, ", ")
}

// namespaceEntry is the command that runs a program in the network
// namespace hack/netns-exec made for this process, or "" outside one.
func namespaceEntry() string {
	pid := os.Getpid()
	switch os.Getenv("SHADOWPLANE_NETNS") {
	case "netns": // unshare -n, as root
		return fmt.Sprintf("nsenter --net=/proc/%d/ns/net", pid)
	case "userns": // unshare -r -n: the namespace belongs to a user namespace
		return fmt.Sprintf("nsenter --target %d --user --net --preserve-credentials", pid)
	}
	return ""
}

func formatStats(stats map[string]uint64) string {
	var parts []string
	for k, v := range stats {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
