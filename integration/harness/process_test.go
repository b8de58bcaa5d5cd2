package harness

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startShell runs a shell script as a Process whose log is in a temp dir.
func startShell(t *testing.T, script string) *Process {
	t.Helper()
	return StartProcessT(t, exec.Command("sh", "-c", script), filepath.Join(t.TempDir(), "sh.log"))
}

// waitLog waits until the process has logged a first line and returns it.
func waitLog(t *testing.T, p *Process) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if line, _, ok := strings.Cut(p.Log(), "\n"); ok {
			return line
		}
	}
	t.Fatalf("nothing logged by %d", p.PID())
	return ""
}

// alive reports whether pid is running: neither gone nor a zombie waiting
// for init to reap it.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, afterName, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(afterName, "Z")
}

func TestProcessStopEndsTheWholeGroup(t *testing.T) {
	p := startShell(t, `sleep 60 & echo $!; wait`)
	child, err := strconv.Atoi(waitLog(t, p))
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if !p.Exited() {
		t.Fatal("Stop returned before the process ended")
	}
	// The signal reaches the sleep at the same time but it is not ours to
	// wait for: give it a moment.
	for deadline := time.Now().Add(2 * time.Second); alive(child) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) {
		t.Errorf("child %d of the process group survived Stop", child)
	}
	p.Stop() // again: harmless
}

func TestProcessStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	p := startShell(t, `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	p.grace = 200 * time.Millisecond
	waitLog(t, p)
	start := time.Now()
	p.Stop()
	var exit *exec.ExitError
	if err := p.Err(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("ended with %v, want killed by SIGKILL", err)
	}
	if took := time.Since(start); took < p.grace {
		t.Errorf("killed after %s, before the %s grace period", took, p.grace)
	}
}

func TestProcessReportsExitAndLog(t *testing.T) {
	p := startShell(t, `echo to-stdout; echo to-stderr >&2; exit 3`)
	var exit *exec.ExitError
	if err := p.Err(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", err)
	}
	if got := p.Log(); got != "to-stdout\nto-stderr\n" {
		t.Errorf("log = %q", got)
	}
	if got := p.LogTail(1); got != "to-stderr" {
		t.Errorf("LogTail(1) = %q", got)
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal after exit succeeded")
	}
}
