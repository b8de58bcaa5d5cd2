package watcher

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// probeInterval is how often the API server is asked whether it is back
	// while a watch is down: a restart is noticed within this long.
	probeInterval = 250 * time.Millisecond
	// probeTimeout bounds one probe, so an unreachable API server that
	// drops packets does not stall the loop.
	probeTimeout = time.Second
	// resyncTimeout bounds how long a fresh informer set may take to list;
	// past it the set is dropped and the next successful probe tries again.
	resyncTimeout = 30 * time.Second
)

// recoverWatches waits for a watch to go down, then probes the API server
// until it answers and replaces the informers with a fresh set. client-go's
// reflectors back off up to 30 s between retries, so after an outage of
// tens of seconds they would notice the API server's return seconds late; a
// fresh set lists at once.
func (w *Watcher) recoverWatches(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.health.wake:
		}
		for {
			if _, down := w.health.down(); !down {
				break // the reflectors recovered by themselves
			}
			if err := w.probe(ctx); err == nil {
				err := w.replaceInformers(ctx)
				if err == nil {
					continue
				}
				// Wait before the next try, so a failure that returns at
				// once cannot spin.
				w.opts.Logger.Warn("cannot re-establish kubernetes watches; will retry", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-w.opts.clock.After(probeInterval):
			}
		}
	}
}

// replaceInformers starts a fresh informer set, and once it has listed
// everything, makes it the one Worlds are built from and stops the old one.
func (w *Watcher) replaceInformers(ctx context.Context) error {
	fresh, err := w.newInformerSet()
	if err != nil {
		return err
	}
	fresh.start(ctx)
	syncCtx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), fresh.synced()...) {
		fresh.stop()
		return fmt.Errorf("watcher: fresh informers did not sync: %w", context.Cause(syncCtx))
	}
	old := w.informers.Swap(fresh)
	w.dirty.addAll() // the fresh caches may differ without an event
	old.stop()
	w.health.restored()
	// The fresh set's initial events may have been handled before the swap;
	// build a World from the fresh caches now.
	w.debounce.mark()
	return nil
}

// probeAPIServer returns a cheap check of whether the API server serves:
// its /readyz, or its version where the client has no REST client (fakes).
func probeAPIServer(client kubernetes.Interface) func(context.Context) error {
	rest := client.Discovery().RESTClient()
	if rest == nil {
		return func(context.Context) error {
			_, err := client.Discovery().ServerVersion()
			return err
		}
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		return rest.Get().AbsPath("/readyz").Do(ctx).Error()
	}
}
