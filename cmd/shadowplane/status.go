package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowplane/shadowplane/xds"
)

// statusColumns are the xDS types shown, in Envoy's order of dependency.
var statusColumns = []struct{ header, typ string }{
	{"LDS", "listener"}, {"RDS", "route"}, {"CDS", "cluster"}, {"EDS", "endpoint"}, {"RTDS", "runtime"},
}

func newStatusCommand() *cobra.Command {
	var (
		address string
		group   string
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every connected sidecar and whether it is SYNCED, STALE or NACKED per xDS type",
		Long: `Show every connected sidecar and whether it is SYNCED, STALE or NACKED per xDS type.

It reads /debug/proxies from the control plane's debug listener (serve
--debug-address), which listens on the pod's loopback only: reach it with
kubectl port-forward. The answer is capped at 1 MiB; when not every proxy
fits, a warning says how many were left out, and --group narrows the list.`,
		Example: `  kubectl -n shadowplane-system port-forward deploy/shadowplane 9091 &
  shadowplane status
  shadowplane status --group 'shop/entrance@0.0.0.0|15001:8080' -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			proxies, raw, err := fetchProxies(ctx, address, group, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			case "table", "":
				return printStatusTable(cmd.OutOrStdout(), proxies)
			default:
				return fmt.Errorf("--output %q: want table or json", output)
			}
		},
	}
	cmd.Flags().StringVar(&address, "address", "http://127.0.0.1:9091", "control plane debug address (its serve --debug-address), e.g. a port-forward")
	cmd.Flags().StringVar(&group, "group", "", "show only the proxies of this node group (the GROUP column)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the control plane")
	return cmd
}

// fetchProxies GETs /debug/proxies (of one group, if given) and warns on
// warnings when the control plane left proxies out to stay within its
// response cap.
func fetchProxies(ctx context.Context, address, group string, warnings io.Writer) ([]xds.ProxyStatus, []byte, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	endpoint := strings.TrimRight(address, "/") + "/debug/proxies"
	if group != "" {
		endpoint += "?" + url.Values{"group": {group}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("control plane debug listener at %s (a port-forward to its --debug-address?): %w", address, err)
	}
	defer resp.Body.Close()
	// The server caps its answer at xds.MaxDebugBody; read one byte more to
	// notice a server that does not.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, xds.MaxDebugBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %s", endpoint, resp.Status, strings.TrimSpace(string(raw)))
	}
	if len(raw) > xds.MaxDebugBody {
		return nil, nil, fmt.Errorf("GET %s: answer over %d bytes", endpoint, xds.MaxDebugBody)
	}
	var proxies []xds.ProxyStatus
	if err := json.Unmarshal(raw, &proxies); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", endpoint, err)
	}
	if shown, total := resp.Header.Get(xds.HeaderShown), resp.Header.Get(xds.HeaderTotal); shown != total {
		fmt.Fprintf(warnings, "warning: the control plane listed %s of %s proxies (its answer is capped at %d bytes); narrow with --group\n", shown, total, xds.MaxDebugBody)
	}
	return proxies, raw, nil
}

func printStatusTable(out io.Writer, proxies []xds.ProxyStatus) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := []string{"NAME", "GROUP", "MODE"}
	for _, c := range statusColumns {
		header = append(header, c.header)
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	var nacks []string
	for _, p := range proxies {
		mode := "SotW"
		if p.Delta {
			mode = "Delta"
		}
		row := []string{p.ID, p.Group, mode}
		for _, c := range statusColumns {
			ts, ok := p.Types[c.typ]
			if !ok {
				row = append(row, "NOT SENT")
				continue
			}
			row = append(row, ts.Status)
			if ts.LastNack != nil && ts.Status == xds.StatusNacked {
				nacks = append(nacks, fmt.Sprintf("%s %s rejected version %s: %s", p.ID, c.header, ts.LastNack.Version, ts.LastNack.Message))
			}
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(proxies) == 0 {
		fmt.Fprintln(out, "no proxies connected")
	}
	for _, n := range nacks {
		fmt.Fprintln(out, "NACK:", n)
	}
	return nil
}
