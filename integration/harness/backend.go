package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Request is what a backend saw of one request.
type Request struct {
	Method     string
	Path       string
	RawQuery   string
	Host       string
	Header     http.Header
	BodySHA256 string
	BodyLen    int64
	BodyErr    string // set when reading the body failed (e.g. a truncated copy)
	At         time.Time
	// Over TLS: the SNI the client sent, and the common name of its
	// client certificate ("" without one).
	TLSServerName    string
	ClientCommonName string
}

// Behaviour is how a backend answers.
type Behaviour int32

const (
	// Answer at once with 200.
	Answer Behaviour = iota
	// Delay answers after the backend's Delay.
	Delay
	// Hang accepts requests and never answers (until the backend stops).
	Hang
	// Stall accepts requests but reads neither their body nor answers
	// (until the backend stops): a backed-up target whose TCP window
	// closes, so whoever sends a body to it must buffer or wait. Its
	// requests are recorded with BodyLen 0.
	Stall
)

// Backend is an HTTP server on a local address that records every request.
type Backend struct {
	Name string
	Addr string // host:port
	Host string
	Port int32

	behaviour atomic.Int32
	delay     atomic.Int64
	server    *http.Server
	listener  net.Listener
	stopping  chan struct{}

	// inFlight and maxInFlight count requests being served, to show
	// circuit breakers bounding what reaches a target.
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	// tlsHandshakeErrors counts failed handshakes of a TLS backend.
	tlsHandshakeErrors atomic.Int64

	mu       sync.Mutex
	requests []Request
}

// StartBackend listens on host:0 and serves until Stop.
func StartBackend(name, host string) (*Backend, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	b := &Backend{Name: name, Addr: l.Addr().String(), Host: host, Port: int32(l.Addr().(*net.TCPAddr).Port), listener: l, stopping: make(chan struct{})}
	b.server = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.server.Serve(l) }()
	return b, nil
}

// SetBehaviour switches how the backend answers from now on.
func (b *Backend) SetBehaviour(behaviour Behaviour, delay time.Duration) {
	b.delay.Store(int64(delay))
	b.behaviour.Store(int32(behaviour))
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		top := b.maxInFlight.Load()
		if n <= top || b.maxInFlight.CompareAndSwap(top, n) {
			break
		}
	}
	if Behaviour(b.behaviour.Load()) == Stall {
		b.record(Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone(), At: time.Now()})
		select {
		case <-b.stopping:
		case <-r.Context().Done():
		}
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	rec := Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), BodySHA256: hex.EncodeToString(h.Sum(nil)), BodyLen: n, At: time.Now(),
	}
	if err != nil {
		rec.BodyErr = err.Error()
	}
	if r.TLS != nil {
		rec.TLSServerName = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			rec.ClientCommonName = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	b.record(rec)

	switch Behaviour(b.behaviour.Load()) {
	case Delay:
		select {
		case <-time.After(time.Duration(b.delay.Load())):
		case <-b.stopping:
			return
		case <-r.Context().Done():
			return
		}
	case Hang:
		select {
		case <-b.stopping:
		case <-r.Context().Done():
		}
		return
	}
	w.Header().Set("x-backend", b.Name)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, b.Name+"\n")
}

func (b *Backend) record(rec Request) {
	b.mu.Lock()
	b.requests = append(b.requests, rec)
	b.mu.Unlock()
}

// MaxInFlight is the largest number of requests the backend has served at
// once since it started or was last Reset.
func (b *Backend) MaxInFlight() int { return int(b.maxInFlight.Load()) }

// Requests returns a copy of everything recorded so far.
func (b *Backend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// Count returns how many requests the backend has seen.
func (b *Backend) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// CountWhere counts the recorded requests for which match holds.
func (b *Backend) CountWhere(match func(Request) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, r := range b.requests {
		if match(r) {
			n++
		}
	}
	return n
}

// Reset forgets the recorded requests and the in-flight high-water mark.
func (b *Backend) Reset() {
	b.mu.Lock()
	b.requests = nil
	b.mu.Unlock()
	b.maxInFlight.Store(b.inFlight.Load())
}

// WaitCount waits until the backend has seen at least n requests and then
// settle more with no new one (copies trail their originals), or until no
// request has arrived for idle; it returns the final count.
func (b *Backend) WaitCount(ctx context.Context, n int, settle time.Duration) int {
	const idle = 3 * time.Second
	last, lastChange := -1, time.Now()
	for {
		c := b.Count()
		if c != last {
			last, lastChange = c, time.Now()
		}
		quiet := time.Since(lastChange)
		if (c >= n && quiet >= settle) || quiet >= idle {
			return c
		}
		select {
		case <-ctx.Done():
			return c
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop closes the backend, ending hung requests.
func (b *Backend) Stop() {
	select {
	case <-b.stopping:
		return
	default:
	}
	close(b.stopping)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.server.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = b.server.Close()
	}
	_ = b.server.Close()
}

// ClosedPort returns host:port of a port on host that refuses connections:
// it binds one and closes it at once.
func ClosedPort(host string) (int32, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return int32(port), nil
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (uint32, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port), nil
}
