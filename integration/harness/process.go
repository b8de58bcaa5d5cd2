package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before SIGKILL; it covers
// `shadowplane serve`'s default 5 s shutdown delay.
const StopGrace = 10 * time.Second

// Process is a child process started by our code (Envoy, nginx, the
// shadowplane binary). It runs in its own process group, so stopping it
// reaches everything it forked; it is killed if this process dies; its
// stdout and stderr go to a log file.
type Process struct {
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done closes
	grace   time.Duration
	stopMu  sync.Mutex
}

// StartProcess starts cmd with its output in a new file at logPath.
func StartProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file for %s: %w", cmd.Path, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Own process group: Stop signals the group, and ^C on the test does
	// not reach the child before the test's cleanup does.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &Process{LogPath: logPath, cmd: cmd, done: make(chan struct{}), grace: StopGrace}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// StartProcessT is StartProcess for a test or benchmark: failing to start
// fails it, and the process is stopped when it ends.
func StartProcessT(tb testing.TB, cmd *exec.Cmd, logPath string) *Process {
	tb.Helper()
	p, err := StartProcess(cmd, logPath)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

// PID is the process id (and process group id).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil for exit status 0); call it after Done.
func (p *Process) Err() error {
	<-p.done
	return p.waitErr
}

// Signal sends sig to the process group, unless it has ended.
func (p *Process) Signal(sig syscall.Signal) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.Exited() {
		return errors.New("process already ended")
	}
	return syscall.Kill(-p.PID(), sig)
}

// Stop ends the process group: SIGTERM, then SIGKILL after StopGrace. It
// returns once the process has been reaped; calling it again is harmless.
func (p *Process) Stop() {
	if p.Signal(syscall.SIGTERM) != nil {
		return
	}
	select {
	case <-p.done:
	case <-time.After(p.grace):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Log is everything the process has written so far.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

// LogTail is the last n lines of the log.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
