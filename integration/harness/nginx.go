package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// NginxMirror describes the classic nginx traffic-copy setup that
// shadowplane replaces: every request is proxied to the primary and, with
// Mirror, also copied to the shadow by nginx's mirror module, both over
// keep-alive upstream connections.
type NginxMirror struct {
	ListenPort uint32
	Primary    string // host:port
	Shadow     string // host:port
	Mirror     bool   // false: plain proxy, no copies
	Workers    int    // worker processes (default 2, like Envoy's workers on 2 cores)
}

// Config renders the nginx.conf of the setup; dir holds the pid file and
// nginx's temporary files.
func (m NginxMirror) Config(dir string) string {
	workers := m.Workers
	if workers == 0 {
		workers = 2
	}
	mirror := ""
	if m.Mirror {
		mirror = "            mirror /mirror;\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `daemon off;
worker_processes %d;
pid %s;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    upstream primary { server %s; keepalive 64; }
    upstream shadow { server %s; keepalive 64; }
    server {
        listen 127.0.0.1:%d;
        location / {
%s            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://primary;
        }
        location = /mirror {
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://shadow$request_uri;
        }
    }
}
`, workers, filepath.Join(dir, "nginx.pid"),
		filepath.Join(dir, "body"), filepath.Join(dir, "proxy"), filepath.Join(dir, "fastcgi"),
		filepath.Join(dir, "uwsgi"), filepath.Join(dir, "scgi"),
		m.Primary, m.Shadow, m.ListenPort, mirror)
	return b.String()
}

// Nginx is a running nginx master process (in the foreground) and its
// workers, in their own process group.
type Nginx struct {
	*Process
	URL string // http://127.0.0.1:<listen>
}

// StartNginx writes the setup's config into dir, starts nginx from the
// binary at path and waits until it accepts connections.
func StartNginx(ctx context.Context, path, dir string, m NginxMirror) (*Nginx, error) {
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(m.Config(dir)), 0o644); err != nil {
		return nil, fmt.Errorf("write nginx.conf: %w", err)
	}
	logPath := filepath.Join(dir, "error.log")
	// -e: nginx opens its compiled-in error log before reading the config
	// unless told otherwise, and that one (/var/log/nginx) is not ours.
	proc, err := StartProcess(exec.Command(path, "-p", dir, "-c", confPath, "-e", logPath), logPath)
	if err != nil {
		return nil, err
	}
	n := &Nginx{Process: proc, URL: fmt.Sprintf("http://127.0.0.1:%d", m.ListenPort)}
	addr := fmt.Sprintf("127.0.0.1:%d", m.ListenPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return n, nil
		}
		select {
		case <-n.Done():
			return nil, fmt.Errorf("nginx exited at start: %s", n.LogTail(20))
		case <-ctx.Done():
			n.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Stop()
			return nil, fmt.Errorf("nginx did not listen on %s in 10s: %s", addr, n.LogTail(20))
		}
	}
}

// NginxVersion returns the version `nginx -v` prints, e.g. "1.22.1".
func NginxVersion(path string) string {
	out, err := exec.Command(path, "-v").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: nginx/")
}
