// Package local is the backend that runs a job's steps as processes on this
// host. It is the embedded default and what `gantry run` uses, so that a
// pipeline runs the same way on a laptop as on the built-in agent.
//
// Each step is one process, started with the job's workspace (or StepSpec.Dir
// below it) as its working directory, in a process group of its own, with
// stdin from /dev/null, and with stdout and stderr sharing one pipe, so that
// the log shows them interleaved exactly as the step wrote them.
//
// # Environment
//
// A step's environment is clean and documented: it is exactly StepSpec.Env,
// plus each of these host variables that Env does not set and the host does:
//
//	PATH HOME USER LOGNAME SHELL LANG LC_ALL LC_CTYPE TZ TMPDIR TERM
//
// plus the variables named in Options.PassEnv, under the same rule. Nothing
// else of the agent's environment reaches a step: not its tokens, not its
// GANTRY_* settings, not whatever a developer's shell exported. That is what
// makes a step see the same variables under `gantry run` and on the server.
// The host values are read once, by New. PWD is not set; shells set it.
//
// The program, StepSpec.Command[0], is looked up in the step's PATH (the one
// in its environment, not the agent's), as a shell would; relative PATH
// entries are relative to the step's working directory.
//
// # Stopping
//
// When Exec's context ends, the step's whole process group gets SIGTERM (and
// SIGCONT, so that a stopped process can act on it); when members remain
// after Options.KillGrace, the group gets SIGKILL. Exec returns once the
// group is gone or killed, so a step's children and grandchildren do not
// outlive a cancelled or timed-out step. Processes that have already exited
// but that nobody reaps (zombies, as under a container's PID 1 that is not an
// init) count as gone. A step whose context is done before it starts does
// not start. A step still running when its job is closed is stopped the same
// way, and Exec returns a Result with Stopped set and an error saying so.
//
// A step that leaves a background process running (`server &`) returns once
// its main process has exited, or at most Options.WaitDelay later if the
// background process still holds the output pipe; after that the pipe is
// closed, so the background process's further output is lost and writing it
// fails (EPIPE or SIGPIPE): redirect it if it matters. Background processes
// keep running until the job's Close, which stops the process group of every
// step of the job in the same stages: SIGTERM, Options.KillGrace, SIGKILL.
//
// # What it does not do
//
// It does not isolate steps: a step runs as the agent's user, sees the
// host's files and network, and can leave its process group (setsid, a
// daemon that double-forks into a new session); such a process escapes both
// cancellation and Close. It sets no resource limits, runs no services and
// ignores JobSpec.Image. Use the docker backend for any of these. Process
// groups are tracked by number: a background process that exits by itself
// frees its group's number for reuse by an unrelated process before Close
// signals it, a window that only a wrap-around of process IDs can hit.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
)

// hostBasics names the host variables a step gets when its Env does not set
// them. The package doc lists them; keep the two in step.
const hostBasics = "PATH HOME USER LOGNAME SHELL LANG LC_ALL LC_CTYPE TZ TMPDIR TERM"

var _ backend.Backend = (*Backend)(nil)

// Defaults for the zero values of Options.
const (
	DefaultKillGrace = 10 * time.Second
	DefaultWaitDelay = 500 * time.Millisecond
)

// Options configure a local Backend. The zero value is ready to use.
type Options struct {
	// KillGrace is how long a step (or, on Close, a job's leftover
	// processes) has between SIGTERM and SIGKILL to clean up and exit.
	// Zero or less means DefaultKillGrace.
	KillGrace time.Duration

	// WaitDelay is how long Exec keeps reading a step's output after its
	// main process exited while a background child still holds the output
	// pipe open. Zero or less means DefaultWaitDelay.
	WaitDelay time.Duration

	// PassEnv names further host variables passed to steps, beside the
	// basics listed in the package doc, when a step's Env does not set them.
	PassEnv []string

	// Logger receives the backend's diagnostics (not build output); nil
	// discards them.
	Logger *slog.Logger
}

// Backend runs steps as processes on this host. Create it with New; its
// methods are safe for concurrent use.
type Backend struct {
	killGrace time.Duration
	waitDelay time.Duration
	log       *slog.Logger
	// host holds "NAME=value" for each passed host variable the host sets,
	// with len(NAME) in nameLen.
	host []hostVar
}

type hostVar struct {
	kv      string // NAME=value
	nameLen int
}

// New returns a local backend. It reads the host variables that steps may
// inherit now, once.
func New(opts Options) *Backend {
	b := &Backend{
		killGrace: opts.KillGrace,
		waitDelay: opts.WaitDelay,
		log:       opts.Logger,
	}
	if b.killGrace <= 0 {
		b.killGrace = DefaultKillGrace
	}
	if b.waitDelay <= 0 {
		b.waitDelay = DefaultWaitDelay
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	seen := make(map[string]bool)
	add := func(name string) {
		if name == "" || strings.Contains(name, "=") || seen[name] {
			return
		}
		seen[name] = true
		if v, ok := os.LookupEnv(name); ok {
			b.host = append(b.host, hostVar{kv: name + "=" + v, nameLen: len(name)})
		}
	}
	for _, name := range strings.Fields(hostBasics) {
		add(name)
	}
	for _, name := range opts.PassEnv {
		add(name)
	}
	return b
}

// Name returns "local".
func (b *Backend) Name() string { return "local" }

// Start checks that the job's workspace is a directory and returns the job.
// It creates nothing, so there is nothing to undo on error. JobSpec.Image is
// ignored; a job with services is refused, since this backend cannot run them.
func (b *Backend) Start(ctx context.Context, spec backend.JobSpec) (backend.Job, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("start job %q: %w", spec.Name, context.Cause(ctx))
	}
	if len(spec.Services) > 0 {
		return nil, fmt.Errorf("start job %q: the local backend cannot run services (%s)", spec.Name, spec.Services[0].Name)
	}
	if spec.Workspace == "" {
		return nil, fmt.Errorf("start job %q: no workspace", spec.Name)
	}
	ws, err := filepath.Abs(spec.Workspace)
	if err != nil {
		return nil, fmt.Errorf("start job %q: workspace: %w", spec.Name, err)
	}
	fi, err := os.Stat(ws)
	if err != nil {
		return nil, fmt.Errorf("start job %q: workspace: %w", spec.Name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("start job %q: workspace %s is not a directory", spec.Name, ws)
	}
	return &job{b: b, id: spec.ID, name: spec.Name, workspace: ws, closeDone: make(chan struct{})}, nil
}

// errClosed is what Exec reports for a step that Close stopped or that
// came after Close.
var errClosed = errors.New("job closed")

// job is a started job: a workspace and the process groups its steps made.
type job struct {
	b         *Backend
	id, name  string
	workspace string

	mu sync.Mutex
	// groups are the process groups of the running step and of the
	// finished steps that left processes behind; Close stops them.
	groups    []int
	closed    bool
	closeDone chan struct{} // closed when the first Close has finished
}

// Exec runs one step. See backend.Job.
func (j *job) Exec(ctx context.Context, step backend.StepSpec, out io.Writer) (backend.Result, error) {
	notRun := backend.Result{ExitCode: -1}
	if ctx.Err() != nil {
		return backend.Result{ExitCode: -1, Stopped: true}, fmt.Errorf("exec step %q: %w", step.Name, context.Cause(ctx))
	}
	if len(step.Command) == 0 {
		return notRun, fmt.Errorf("exec step %q: no command", step.Name)
	}
	dir := j.workspace
	if step.Dir != "" {
		dir = filepath.Join(dir, step.Dir)
	}
	env := j.b.environ(step.Env)
	prog, err := lookPath(step.Command[0], env, dir)
	if err != nil {
		return notRun, fmt.Errorf("exec step %q: %w", step.Name, err)
	}

	cmd := exec.Command(prog, step.Command[1:]...)
	cmd.Args[0] = step.Command[0]
	cmd.Dir = dir
	cmd.Env = env
	// One pipe for stdout and stderr, so that their interleaving is the
	// order the child wrote in. It is read here rather than by os/exec,
	// whose WaitDelay would close it with the child's last output still
	// unread whenever the reading goroutine is slow to run (a busy
	// machine): see copyOutput.
	pr, pw, err := os.Pipe()
	if err != nil {
		return notRun, fmt.Errorf("exec step %q: %w", step.Name, err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	// Start under the lock, so that Close either sees the new group or
	// makes us refuse to start.
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		pw.Close()
		return notRun, fmt.Errorf("exec step %q: %w", step.Name, errClosed)
	}
	err = cmd.Start()
	pw.Close() // the child has its own
	if err != nil {
		j.mu.Unlock()
		return notRun, fmt.Errorf("exec step %q: %w", step.Name, err)
	}
	pgid := cmd.Process.Pid
	j.groups = append(j.groups, pgid)
	j.mu.Unlock()
	w := &outWriter{w: out}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if _, err := io.Copy(w, pr); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			pr.Close() // nobody reads any more: the step's writes fail rather than block
		}
	}()

	var stopped chan struct{}
	if ctx.Done() != nil {
		stopped = make(chan struct{})
	}
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		j.b.log.LogAttrs(context.Background(), slog.LevelInfo, "stopping step",
			slog.String("job_id", j.id), slog.String("job", j.name), slog.String("step", step.Name), slog.Int("pgid", pgid),
			slog.String("cause", context.Cause(ctx).Error()))
		j.b.terminate([]int{pgid}, nil)
	})
	waitErr := cmd.Wait()
	cancelled := !stop()
	if cancelled {
		<-stopped // the group is gone or killed
	}
	copyOutput(pr, w, copied, j.b.waitDelay)

	res := backend.Result{ExitCode: cmd.ProcessState.ExitCode(), Stopped: cancelled}
	j.mu.Lock()
	closed := j.closed
	if !closed && (cancelled || !groupExists(pgid)) {
		j.forget(pgid)
	}
	j.mu.Unlock()

	var exitErr *exec.ExitError
	switch {
	case cancelled:
		return res, fmt.Errorf("exec step %q: %w", step.Name, context.Cause(ctx))
	case closed:
		res.Stopped = true
		return res, fmt.Errorf("exec step %q: %w", step.Name, errClosed)
	case w.err != nil:
		return res, fmt.Errorf("exec step %q: write output: %w", step.Name, w.err)
	case waitErr == nil, errors.As(waitErr, &exitErr):
		return res, nil
	default:
		return res, fmt.Errorf("exec step %q: %w", step.Name, waitErr)
	}
}

// copyOutput lets the copy of a step's output (copied closes when it
// ends) run until the pipe's last writer closes it, for at most waitDelay
// after the step's main process exited: a background process that holds
// the pipe open must not hold up the step. It then reads, without
// waiting, what is already in the pipe, so that nothing the step wrote
// before the deadline is lost to a reader that was slow to run. What a
// background process writes after that is not read: once pr is closed,
// its writes fail.
func copyOutput(pr *os.File, w io.Writer, copied <-chan struct{}, waitDelay time.Duration) {
	t := time.NewTimer(waitDelay)
	defer t.Stop()
	select {
	case <-copied:
		return
	case <-t.C:
	}
	pr.SetReadDeadline(time.Now()) // ends the copy's Read
	<-copied
	pr.SetReadDeadline(time.Time{})
	rc, err := pr.SyscallConn()
	if err != nil {
		return
	}
	// At most what a pipe holds (64 KiB by default, 1 MiB at most unless
	// raised): a background process that keeps writing cannot keep us here.
	buf := make([]byte, 64<<10)
	for left := 1 << 20; left > 0; {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf[:min(len(buf), left)])
			return true // never wait for more
		}); err != nil || rerr != nil || n <= 0 {
			return
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return
		}
		left -= n
	}
}

// forget drops pgid from j.groups. j.mu must be held.
func (j *job) forget(pgid int) {
	for i, g := range j.groups {
		if g == pgid {
			j.groups[i] = j.groups[len(j.groups)-1]
			j.groups = j.groups[:len(j.groups)-1]
			return
		}
	}
}

// Close stops the process groups of the job's steps: the running one, and
// those of finished steps that left processes behind. It returns once they
// are gone or, KillGrace after SIGTERM, have been sent SIGKILL; when ctx ends
// first it sends SIGKILL at once. Later calls wait for the first one.
func (j *job) Close(ctx context.Context) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		select {
		case <-j.closeDone:
		case <-ctx.Done():
		}
		return nil
	}
	j.closed = true
	groups := j.groups
	j.groups = nil
	j.mu.Unlock()
	defer close(j.closeDone)

	if len(groups) > 0 {
		j.b.log.LogAttrs(ctx, slog.LevelDebug, "stopping job processes",
			slog.String("job_id", j.id), slog.String("job", j.name), slog.Int("groups", len(groups)))
		j.b.terminate(groups, ctx.Done())
	}
	return nil
}

// terminate stops process groups in stages: SIGTERM to each (and SIGCONT,
// so that a stopped process, say one that read the terminal from the
// background, can act on it); then, once none has a live member left, or
// after the grace period, or at once when hurry is closed, SIGKILL to each
// that still has members. Waiting polls /proc, but only while something is
// being stopped.
func (b *Backend) terminate(groups []int, hurry <-chan struct{}) {
	left := signalGroups(groups, syscall.SIGTERM)
	if len(left) == 0 {
		return
	}
	signalGroups(left, syscall.SIGCONT)
	grace := time.NewTimer(b.killGrace)
	defer grace.Stop()
	poll := time.Millisecond
	tick := time.NewTimer(poll)
	defer tick.Stop()
	late := false
wait:
	for {
		select {
		case <-tick.C:
			if !anyAlive(left) {
				break wait
			}
			poll = min(2*poll, 50*time.Millisecond)
			tick.Reset(poll)
		case <-grace.C:
			late = true
			break wait
		case <-hurry:
			late = true
			break wait
		}
	}
	// Even when only zombies are left: SIGKILL does them no harm, their
	// group number cannot have been reused, and should /proc have misled
	// anyAlive, this is what stops the processes it missed.
	left = signalGroups(left, syscall.SIGKILL)
	if late && len(left) > 0 {
		b.log.LogAttrs(context.Background(), slog.LevelWarn, "killed processes that outlived SIGTERM",
			slog.Any("pgids", left), slog.Duration("grace", b.killGrace))
	}
}

// signalGroups sends sig to each process group and returns, in a new slice,
// those that exist.
func signalGroups(groups []int, sig syscall.Signal) []int {
	var left []int
	for _, g := range groups {
		if err := syscall.Kill(-g, sig); err != syscall.ESRCH {
			left = append(left, g)
		}
	}
	return left
}

// groupExists reports whether process group pgid has members, zombies
// included.
func groupExists(pgid int) bool {
	return syscall.Kill(-pgid, 0) != syscall.ESRCH
}

// anyAlive reports whether one of groups has a member that has not exited.
// Zombies do not count: an orphan whose reaper never waits for it (PID 1 in
// a container that is not an init) stays a zombie, and would otherwise hold
// up every stop for the whole grace period.
func anyAlive(groups []int) bool {
	var exist []int
	for _, g := range groups {
		if groupExists(g) {
			exist = append(exist, g)
		}
	}
	if len(exist) == 0 {
		return false
	}
	alive, ok := procGroupsAlive(exist)
	return alive || !ok
}

// procGroupsAlive scans /proc for a process of one of groups that is not a
// zombie. ok is false when /proc cannot be read (not Linux).
func procGroupsAlive(groups []int) (alive, ok bool) {
	d, err := os.Open("/proc")
	if err != nil {
		return false, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return false, false
	}
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		pgrp, err := strconv.Atoi(f[2])
		if err == nil && slices.Contains(groups, pgrp) {
			return true, true
		}
	}
	return false, true
}

// environ returns the step's environment: its Env, then each host variable
// that Env does not set.
func (b *Backend) environ(stepEnv []string) []string {
	env := make([]string, 0, len(stepEnv)+len(b.host))
	env = append(env, stepEnv...)
outer:
	for _, h := range b.host {
		name := h.kv[:h.nameLen+1] // "NAME="
		for _, kv := range stepEnv {
			if strings.HasPrefix(kv, name) {
				continue outer
			}
		}
		env = append(env, h.kv)
	}
	return env
}

// lookPath finds the program file as a shell would with the PATH in env,
// relative entries being relative to dir. A name with a slash is used as it
// is (os/exec resolves a relative one against dir).
func lookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	var path string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[len("PATH="):] // the last one wins, as in os/exec
		}
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d) // "" is the current directory
		}
		p := filepath.Join(d, file)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// outWriter passes a step's output on and keeps the first write error, which
// os/exec would not report when the step then dies of SIGPIPE.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}
