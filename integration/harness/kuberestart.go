package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// StopAPIServer stops the kube-apiserver process, leaving etcd running, and
// remembers its command line so StartAPIServer can start it again on the
// same port with the same certificates and data: clients and tokens stay
// valid across the restart.
func (k *Kube) StopAPIServer() error {
	if k.apiserver != nil {
		if k.apiserver.Exited() {
			return errors.New("kube-apiserver is not running")
		}
		k.apiserver.Stop()
		return nil
	}
	// The first stop: the process envtest started. It is found by its own
	// certificate directory, which no other process names.
	server := k.env.ControlPlane.APIServer
	pid, argv, err := findProcess(server.Path, "--cert-dir="+server.CertDir)
	if err != nil {
		return err
	}
	k.apiserverArgv = argv
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop kube-apiserver (pid %d): %w", pid, err)
	}
	// envtest's own goroutine reaps it. kube-apiserver closes its port at
	// once but may drain for long after; a crash-like stop is as good an
	// outage.
	if !waitGone(pid, 5*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 10*time.Second) {
			return fmt.Errorf("kube-apiserver (pid %d) did not stop", pid)
		}
	}
	return nil
}

// StartAPIServer starts the kube-apiserver stopped by StopAPIServer again,
// with its log in dir, and waits until it is ready.
func (k *Kube) StartAPIServer(ctx context.Context, dir string) error {
	if k.apiserverArgv == nil {
		return errors.New("StartAPIServer without StopAPIServer")
	}
	p, err := StartProcess(exec.Command(k.apiserverArgv[0], k.apiserverArgv[1:]...), filepath.Join(dir, "kube-apiserver-restarted.log"))
	if err != nil {
		return err
	}
	k.apiserver = p
	return WaitUntil(ctx, 90*time.Second, func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("restarted kube-apiserver exited: %v\n%s", p.Err(), p.LogTail(20))
		}
		return k.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error() == nil, nil
	})
}

// findProcess finds the one process running path with arg among its
// arguments and returns its pid and command line.
func findProcess(path, arg string) (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		var argv []string
		for _, a := range bytes.Split(bytes.TrimSuffix(raw, []byte{0}), []byte{0}) {
			argv = append(argv, string(a))
		}
		if argv[0] != path {
			continue
		}
		for _, a := range argv[1:] {
			if a == arg {
				return pid, argv, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("no process %s with argument %s", path, arg)
}

// waitGone waits up to timeout for pid to end.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// processAlive reports whether pid is running (not gone, not a zombie).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
