package harness

import (
	"errors"
	"io"
	"net"
	"sync"
)

// SwitchProxy is a TCP forwarder on loopback whose target can be switched,
// standing in for the Service in front of control-plane replicas: moving a
// sidecar from one replica to another is Switch, which also drops the open
// connections so the sidecar reconnects, to the new target.
type SwitchProxy struct {
	listener net.Listener

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	closed bool
	done   sync.WaitGroup
}

// StartSwitchProxy listens on 127.0.0.1 (any free port) and forwards to
// target.
func StartSwitchProxy(target string) (*SwitchProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &SwitchProxy{listener: l, target: target, conns: map[net.Conn]struct{}{}}
	p.done.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial.
func (p *SwitchProxy) Addr() string { return p.listener.Addr().String() }

// Switch forwards new connections to target and closes the open ones.
func (p *SwitchProxy) Switch(target string) {
	p.mu.Lock()
	p.target = target
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Close stops listening, closes every connection and waits for the
// forwarding goroutines.
func (p *SwitchProxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.listener.Close()
	p.Switch("")
	p.done.Wait()
}

func (p *SwitchProxy) accept() {
	defer p.done.Done()
	for {
		client, err := p.listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		p.mu.Lock()
		target, closed := p.target, p.closed
		p.mu.Unlock()
		if closed || target == "" {
			client.Close()
			continue
		}
		upstream, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, upstream, target) {
			continue
		}
		p.done.Add(2)
		go p.pipe(client, upstream)
		go p.pipe(upstream, client)
	}
}

// track registers a connection pair to target, unless the proxy switched
// or closed meanwhile.
func (p *SwitchProxy) track(client, upstream net.Conn, target string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.target != target {
		client.Close()
		upstream.Close()
		return false
	}
	p.conns[client] = struct{}{}
	p.conns[upstream] = struct{}{}
	return true
}

// pipe copies one direction; when it ends, both sides close.
func (p *SwitchProxy) pipe(dst, src net.Conn) {
	defer p.done.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
