package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// WatchClock records when a bare client-go watch delivers each change to
// the ConfigMaps and EndpointSlices of one namespace: the floor under the
// control plane's own "watch event seen" time, which adds only its informer
// and handler to the same API server path.
type WatchClock struct {
	mu      sync.Mutex
	times   []time.Time
	watches []watch.Interface
	done    sync.WaitGroup
}

// StartWatchClock starts the watches; Stop ends them.
func (k *Kube) StartWatchClock(ctx context.Context, namespace string) (*WatchClock, error) {
	c := &WatchClock{}
	configMaps, err := k.Client.CoreV1().ConfigMaps(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watch ConfigMaps: %w", err)
	}
	slices, err := k.Client.DiscoveryV1().EndpointSlices(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		configMaps.Stop()
		return nil, fmt.Errorf("watch EndpointSlices: %w", err)
	}
	for _, w := range []watch.Interface{configMaps, slices} {
		c.watches = append(c.watches, w)
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			for e := range w.ResultChan() {
				if e.Type == watch.Modified {
					now := time.Now()
					c.mu.Lock()
					c.times = append(c.times, now)
					c.mu.Unlock()
				}
			}
		}()
	}
	return c, nil
}

// After is the first change delivered at or after t.
func (c *WatchClock) After(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.times {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// Stop ends the watches and waits for their readers.
func (c *WatchClock) Stop() {
	for _, w := range c.watches {
		w.Stop()
	}
	c.done.Wait()
}
