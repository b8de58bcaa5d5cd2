package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ModifyRuntime sets runtime keys in Envoy's admin layer (POST
// /runtime_modify), which overrides the RTDS layer. Tests use it to change
// Envoy's own limits, e.g. re2.max_program_size.error_level, so that a
// config the control plane accepts is rejected by Envoy: a real NACK.
func (e *Envoy) ModifyRuntime(ctx context.Context, values map[string]string) error {
	q := url.Values{}
	for k, v := range values {
		q.Set(k, v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.AdminAddr+"/runtime_modify?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("envoy admin runtime_modify: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("envoy admin runtime_modify: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
