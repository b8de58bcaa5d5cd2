package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// Writes whose propagation tests and benchmarks time. Each reads the object
// first and returns the time taken just before the Update call, so the
// read's latency is never counted as propagation.

// DeleteEndpointSlice deletes the EndpointSlice name.
func (k *Kube) DeleteEndpointSlice(ctx context.Context, namespace, name string) error {
	if err := k.Client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete EndpointSlice %s/%s: %w", namespace, name, err)
	}
	return nil
}

// UpdatePolicyConfigMapTimed replaces the data of an existing policy
// ConfigMap with one key holding yaml, as `shadowplane set` does: an
// Update carrying the resourceVersion it read, read and tried again when
// the control plane's status patch came in between. It returns when the
// Update call that succeeded was made.
func (k *Kube) UpdatePolicyConfigMapTimed(ctx context.Context, namespace, name, key, yaml string) (time.Time, error) {
	api := k.Client.CoreV1().ConfigMaps(namespace)
	var start time.Time
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get ConfigMap %s/%s: %w", namespace, name, err)
		}
		cm.Data = map[string]string{key: yaml}
		start = time.Now()
		_, err = api.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return start, fmt.Errorf("update ConfigMap %s/%s: %w", namespace, name, err)
	}
	return start, nil
}

// UpdateEndpointSliceTimed replaces the port and the endpoints of an
// existing EndpointSlice, and returns when the Update call was made.
func (k *Kube) UpdateEndpointSliceTimed(ctx context.Context, namespace, name, portName string, port int32, endpoints ...SliceEndpoint) (time.Time, error) {
	api := k.Client.DiscoveryV1().EndpointSlices(namespace)
	slice, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("get EndpointSlice %s/%s: %w", namespace, name, err)
	}
	proto := corev1.ProtocolTCP
	slice.Ports = []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}}
	slice.Endpoints = nil
	for _, e := range endpoints {
		ready := e.Ready
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.Address},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	start := time.Now()
	if _, err := api.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		return start, fmt.Errorf("update EndpointSlice %s/%s: %w", namespace, name, err)
	}
	return start, nil
}

// PollUntil calls cond every interval until it returns true, and returns
// the time it first held. For measuring, keep interval well below the
// latency measured (e.g. 1 ms); WaitUntil is the 10 ms form for waiting.
func PollUntil(ctx context.Context, interval, timeout time.Duration, cond func() (bool, error)) (time.Time, error) {
	check, err := PollOn(ctx, nil, interval, timeout, cond)
	return check.End, err
}

// Check is when the successful call of a PollOn condition started and
// returned.
type Check struct{ Start, End time.Time }

// PollOn calls cond on every signal from wake and every interval until it
// returns true, and returns when that call started and ended; without a
// wake channel it also calls cond at once. Waking on an event (e.g. an xDS
// ACK) instead of a short interval lets a benchmark see a change without
// adding a polling interval, or the load of polling, to what it measures;
// and a change that cannot show before the event is not probed before it,
// while it is on its way.
func PollOn(ctx context.Context, wake <-chan struct{}, interval, timeout time.Duration, cond func() (bool, error)) (Check, error) {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var lastErr error
	for first := true; ; first = false {
		if !first || wake != nil {
			select {
			case <-ctx.Done():
				return Check{End: time.Now()}, ctx.Err()
			case <-wake:
			case <-ticker.C:
			}
		}
		start := time.Now()
		ok, err := cond()
		now := time.Now()
		if ok {
			return Check{Start: start, End: now}, nil
		}
		lastErr = err
		if now.After(deadline) {
			if lastErr != nil {
				return Check{End: now}, fmt.Errorf("timed out after %s: %w", timeout, lastErr)
			}
			return Check{End: now}, fmt.Errorf("timed out after %s", timeout)
		}
	}
}
