package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every connected sidecar and whether it is SYNCED, STALE or NACKED per xDS type",
		Example: `  kubectl -n shadowplane-system port-forward deploy/shadowplane 9090 &
  shadowplane status --address http://127.0.0.1:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			proxies, raw, err := fetchProxies(ctx, address)
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
	cmd.Flags().StringVar(&address, "address", "http://127.0.0.1:9090", "control plane HTTP address (its --http-address)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the control plane")
	return cmd
}

func fetchProxies(ctx context.Context, address string) ([]xds.ProxyStatus, []byte, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	url := strings.TrimRight(address, "/") + "/debug/proxies"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("control plane at %s: %w", address, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(raw)))
	}
	var proxies []xds.ProxyStatus
	if err := json.Unmarshal(raw, &proxies); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", url, err)
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
