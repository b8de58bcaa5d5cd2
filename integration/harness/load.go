package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Result is the outcome of one load-generator request.
type Result struct {
	Latency time.Duration
	Status  int
	Err     error
}

// Results summarises a load run.
type Results struct {
	All []Result
}

// Errors counts failed requests: transport errors (resets, refused) and
// non-2xx answers.
func (r Results) Errors() int {
	n := 0
	for _, x := range r.All {
		if x.Err != nil || x.Status < 200 || x.Status > 299 {
			n++
		}
	}
	return n
}

// FirstError describes the first failure, for messages.
func (r Results) FirstError() string {
	for _, x := range r.All {
		if x.Err != nil {
			return x.Err.Error()
		}
		if x.Status < 200 || x.Status > 299 {
			return fmt.Sprintf("HTTP %d", x.Status)
		}
	}
	return ""
}

// Percentile returns the p-th percentile latency (0 < p ≤ 100) of
// successful requests.
func (r Results) Percentile(p float64) time.Duration {
	var lat []time.Duration
	for _, x := range r.All {
		if x.Err == nil {
			lat = append(lat, x.Latency)
		}
	}
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	idx := int(float64(len(lat))*p/100+0.5) - 1
	if idx < 0 {
		idx = 0
	}
	if idx >= len(lat) {
		idx = len(lat) - 1
	}
	return lat[idx]
}

// NewKeepAliveClient is an HTTP/1.1 client that reuses connections, like the
// production clients whose keep-alive connections a slow mirror must not
// stall.
func NewKeepAliveClient(maxConns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        maxConns,
			MaxIdleConnsPerHost: maxConns,
			MaxConnsPerHost:     maxConns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// Do sends one request and drains the answer.
func Do(client *http.Client, req *http.Request) Result {
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return Result{Latency: time.Since(start), Err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return Result{Latency: time.Since(start), Status: resp.StatusCode, Err: err}
}

// SendN sends n requests built by build(i) with the given concurrency and
// waits for all answers.
func SendN(ctx context.Context, client *http.Client, n, concurrency int, build func(ctx context.Context, i int) *http.Request) Results {
	results := make([]Result, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = Do(client, build(ctx, i))
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			for j := i; j < n; j++ {
				results[j] = Result{Err: ctx.Err()}
			}
			i = n
		}
	}
	close(next)
	wg.Wait()
	return Results{All: results}
}

// RunAtRate sends requests at a fixed rate (open loop: a slow answer does not
// slow the sender, so stalls show up as latency) for the given duration and
// waits for the answers.
func RunAtRate(ctx context.Context, client *http.Client, rate int, duration time.Duration, build func(ctx context.Context, i int) *http.Request) Results {
	interval := time.Second / time.Duration(rate)
	total := int(duration / interval)
	results := make([]Result, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				for j := i; j < total; j++ {
					results[j] = Result{Err: ctx.Err()}
				}
				wg.Wait()
				return Results{All: results}
			}
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = Do(client, build(ctx, i))
		}(i)
	}
	wg.Wait()
	return Results{All: results}
}
