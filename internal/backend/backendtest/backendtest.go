// Package backendtest is the conformance suite that every backend passes:
// the same tests, with real processes, on the local backend and on docker.
// It asserts what a user sees: exit codes, output byte for byte, the
// environment, the working directory, and that stopping a step or closing a
// job leaves nothing running.
//
// A backend's own test calls Run:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			return local.New(local.Options{KillGrace: 300 * time.Millisecond, WaitDelay: 100 * time.Millisecond})
//		}, backendtest.Options{KillGrace: 300 * time.Millisecond, WaitDelay: 100 * time.Millisecond, HostEnv: ...})
//
// The steps are POSIX shell scripts and need sh, env, sleep, cat, yes and
// head in the step's PATH. To tell whether a step's processes are gone, the
// suite has them hold the write end of a FIFO in the workspace and waits for
// end of file on its read end: a process's descriptors are closed when it
// exits, zombie or not, and this works across PID namespaces (a container's
// process IDs mean nothing on the host) as long as the workspace is the same
// directory for both, as backend.JobSpec requires.
//
// The suite does not test isolation, resource limits or services, which
// differ by backend.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/google/go-cmp/cmp"
)

// Options tell the suite what it cannot learn from the backend itself.
type Options struct {
	// Shell is the command a step's script is appended to; nil means
	// {"sh", "-c"}.
	Shell []string

	// Image is put in every JobSpec; empty for the local backend.
	Image string

	// HostEnv names the variables the backend may add to a step's
	// environment when the step's Env does not set them: for the local
	// backend its host basics and PassEnv, for docker the image's ENV. Every
	// other variable a step sees must come from its Env.
	HostEnv []string

	// KillGrace is the grace period between SIGTERM and SIGKILL of the
	// backends newBackend returns. Required; keep it short (a few hundred
	// milliseconds), as the suite waits it out in several tests.
	KillGrace time.Duration

	// WaitDelay is the longest the backends newBackend returns keep reading
	// a step's output after its main process exited while a background
	// process holds the output open. Required; keep it short.
	WaitDelay time.Duration

	// SignalExitCodes says that the backend reports a step killed by
	// signal N as exit code 128+N, as a shell and the Docker Engine do,
	// rather than -1 (a stopped step's is still -1).
	SignalExitCodes bool

	// Slack is the time allowed on top of KillGrace and WaitDelay for the
	// machinery: starting a process or a container exec, a loaded machine.
	// Zero means 2s.
	Slack time.Duration
}

// Run runs the conformance suite against the backends newBackend returns;
// each test calls it for a fresh backend. The tests run in parallel.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend, opts Options) {
	if opts.KillGrace <= 0 || opts.WaitDelay <= 0 {
		t.Fatal("backendtest: Options.KillGrace and Options.WaitDelay must be set to the backend's")
	}
	if opts.Shell == nil {
		opts.Shell = []string{"sh", "-c"}
	}
	if opts.Slack <= 0 {
		opts.Slack = 2 * time.Second
	}
	s := &suite{newBackend: newBackend, opts: opts}
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"Name", s.testName},
		{"StartMissingWorkspace", s.testStartMissingWorkspace},
		{"StartCancelled", s.testStartCancelled},
		{"ConcurrentJobs", s.testConcurrentJobs},
		{"ExitCode", s.testExitCode},
		{"Output", s.testOutput},
		{"OutputLarge", s.testOutputLarge},
		{"OutputAfterReturn", s.testOutputAfterReturn},
		{"Stdin", s.testStdin},
		{"Env", s.testEnv},
		{"EnvOverridesHost", s.testEnvOverridesHost},
		{"EnvPATH", s.testEnvPATH},
		{"Dir", s.testDir},
		{"DirMissing", s.testDirMissing},
		{"MissingCommand", s.testMissingCommand},
		{"StopTimeout", s.testStopTimeout},
		{"StopBeforeStart", s.testStopBeforeStart},
		{"StopTrapTERM", s.testStopTrapTERM},
		{"StopIgnoreTERM", s.testStopIgnoreTERM},
		{"StopDescendants", s.testStopDescendants},
		{"Background", s.testBackground},
		{"CloseDuringExec", s.testCloseDuringExec},
		{"CloseTwice", s.testCloseTwice},
		{"CloseConcurrent", s.testCloseConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t)
		})
	}
}

type suite struct {
	newBackend func(t *testing.T) backend.Backend
	opts       Options
	jobs       atomic.Int64
}

// errCause is the cause the suite cancels steps with; errSafety ends a step
// that a broken backend would otherwise leave hanging.
var (
	errCause  = errors.New("backendtest: cancelled on purpose")
	errSafety = errors.New("backendtest: safety timeout")
)

// safety bounds every step, and a backend that does not honour it fails the
// test rather than hanging it.
const safety = 60 * time.Second

// start starts a job with a fresh workspace on a fresh backend and closes
// it when the test ends.
func (s *suite) start(t *testing.T) (backend.Job, string) {
	t.Helper()
	return s.startOn(t, s.newBackend(t))
}

func (s *suite) startOn(t *testing.T, b backend.Backend) (backend.Job, string) {
	t.Helper()
	ws := t.TempDir()
	spec := backend.JobSpec{
		ID:        fmt.Sprintf("backendtest-%d-%d", os.Getpid(), s.jobs.Add(1)),
		Name:      t.Name(),
		Workspace: ws,
		Image:     s.opts.Image,
	}
	j, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start(%+v) = %v, want a job", spec, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.KillGrace+s.opts.Slack)
		defer cancel()
		if err := j.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return j, ws
}

// script is a step that runs a shell script.
func (s *suite) script(script string, env ...string) backend.StepSpec {
	return backend.StepSpec{
		Name:    "script",
		Command: append(slices.Clip(s.opts.Shell), script),
		Env:     env,
	}
}

// run is one Exec's outcome.
type run struct {
	res     backend.Result
	err     error
	out     string
	elapsed time.Duration
}

// execStep runs step on j under ctx, bounded by the safety timeout.
func execStep(t *testing.T, ctx context.Context, j backend.Job, step backend.StepSpec, out *output) run {
	t.Helper()
	done := make(chan run, 1)
	go func() { done <- execRaw(ctx, j, step, out) }()
	select {
	case r := <-done:
		return r
	case <-time.After(safety + 5*time.Second):
		t.Fatalf("Exec(%q) still running %v after its context ended", step.Command, 5*time.Second)
		panic("unreachable")
	}
}

// execRaw is execStep without the check that Exec honours its context.
func execRaw(ctx context.Context, j backend.Job, step backend.StepSpec, out *output) run {
	ctx, cancel := context.WithTimeoutCause(ctx, safety, errSafety)
	defer cancel()
	if out == nil {
		out = newOutput("")
	}
	t0 := time.Now()
	res, err := j.Exec(ctx, step, out)
	return run{res: res, err: err, out: out.String(), elapsed: time.Since(t0)}
}

// ok runs a step that must exit by itself, and returns its result and output.
func (s *suite) ok(t *testing.T, j backend.Job, step backend.StepSpec) (backend.Result, string) {
	t.Helper()
	r := execStep(t, context.Background(), j, step, nil)
	if r.err != nil {
		t.Fatalf("Exec(%q) = %+v, %v, want no error; output:\n%s", step.Command, r.res, r.err, r.out)
	}
	return r.res, r.out
}

// output is the io.Writer a step writes to. It closes ready once the output
// contains its marker, and records writes that come after Exec returned.
type output struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	marker   []byte
	ready    chan struct{}
	onReady  func()
	returned bool
	late     int
}

func newOutput(marker string) *output {
	return &output{marker: []byte(marker), ready: make(chan struct{})}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.returned {
		o.late += len(p)
	}
	o.buf.Write(p)
	if len(o.marker) > 0 && o.ready != nil && bytes.Contains(o.buf.Bytes(), o.marker) {
		close(o.ready)
		o.ready = nil
		if o.onReady != nil {
			o.onReady()
		}
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// readyChan returns the channel closed when the marker appears.
func (o *output) readyChan() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return o.ready
}

// fifo is a named pipe in a workspace whose write end the processes under
// test hold: its read end sees end of file once every holder has exited.
type fifo struct {
	path string
	r    *os.File
}

func newFIFO(t *testing.T, dir string) *fifo {
	t.Helper()
	path := filepath.Join(dir, "holders.fifo")
	if err := syscall.Mkfifo(path, 0o666); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	// Non-blocking, so that opening does not wait for a writer; the Go
	// runtime polls it, so read deadlines work.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { r.Close() })
	return &fifo{path: path, r: r}
}

// env is the variable that gives the FIFO's path to a script.
func (f *fifo) env() string { return "FIFO=" + f.path }

// held reports whether a process still holds the FIFO's write end after
// waiting up to d for all to close it. Call it only once a writer has
// opened it: before that, reads see end of file too.
func (f *fifo) held(t *testing.T, d time.Duration) bool {
	t.Helper()
	if err := f.r.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatalf("set deadline on %s: %v", f.path, err)
	}
	var buf [64]byte
	for {
		n, err := f.r.Read(buf[:])
		switch {
		case n > 0:
			continue // nobody should write, but it does not matter
		case err == io.EOF:
			return false
		case errors.Is(err, os.ErrDeadlineExceeded):
			return true
		default:
			t.Fatalf("read %s: %v", f.path, err)
		}
	}
}

// waitGone fails the test if a process still holds f a moment later: the
// processes must have been killed, only their exit may still be under way.
// The moment, half the grace period, is short enough to catch a backend that
// returns before it sends SIGKILL.
func (s *suite) waitGone(t *testing.T, f *fifo, what string) {
	t.Helper()
	if f.held(t, s.opts.KillGrace/2) {
		t.Errorf("%s: a process the step started is still running", what)
	}
}

func (s *suite) testName(t *testing.T) {
	if name := s.newBackend(t).Name(); name == "" {
		t.Error(`Name() = "", want a name`)
	}
}

func (s *suite) testStartMissingWorkspace(t *testing.T) {
	b := s.newBackend(t)
	ws := filepath.Join(t.TempDir(), "missing")
	spec := backend.JobSpec{ID: "backendtest-missing", Name: "missing", Workspace: ws, Image: s.opts.Image}
	j, err := b.Start(context.Background(), spec)
	if err == nil {
		j.Close(context.Background())
		t.Fatalf("Start with workspace %s = a job, want an error", ws)
	}
	if !strings.Contains(err.Error(), ws) {
		t.Errorf("Start with workspace %s = %q, want an error that names it", ws, err)
	}
}

func (s *suite) testStartCancelled(t *testing.T) {
	b := s.newBackend(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errCause)
	spec := backend.JobSpec{ID: "backendtest-cancelled", Name: "cancelled", Workspace: t.TempDir(), Image: s.opts.Image}
	j, err := b.Start(ctx, spec)
	if err == nil {
		j.Close(context.Background())
		t.Fatal("Start(cancelled ctx) = a job, want an error")
	}
}

// testConcurrentJobs starts jobs on one backend at once and runs a step in
// each: jobs do not mix their output or environment.
func (s *suite) testConcurrentJobs(t *testing.T) {
	b := s.newBackend(t)
	const n = 8
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				j, _ := s.startOn(t, b)
				_, outs[i] = s.ok(t, j, s.script(`echo "job $N"`, fmt.Sprintf("N=%d", i)))
			})
		})
	}
	wg.Wait()
	for i, out := range outs {
		if want := fmt.Sprintf("job %d\n", i); out != want {
			t.Errorf("job %d: output %q, want %q", i, out, want)
		}
	}
}

func (s *suite) testExitCode(t *testing.T) {
	j, _ := s.start(t)
	killed := -1
	if s.opts.SignalExitCodes {
		killed = 128 + int(syscall.SIGKILL)
	}
	for _, tt := range []struct {
		script string
		want   int
	}{
		{"true", 0},
		{"exit 1", 1},
		{"exit 42", 42},
		{"false", 1},
		{"kill -KILL $$", killed}, // ended by a signal
	} {
		res, _ := s.ok(t, j, s.script(tt.script))
		if want := (backend.Result{ExitCode: tt.want}); res != want {
			t.Errorf("Exec(%q) = %+v, want %+v", tt.script, res, want)
		}
	}
}

func (s *suite) testOutput(t *testing.T) {
	var many, manyWant strings.Builder
	many.WriteString(`i=0; while [ $i -lt 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`)
	for i := range 300 {
		fmt.Fprintf(&manyWant, "out %d\nerr %d\n", i, i)
	}
	j, _ := s.start(t)
	for _, tt := range []struct {
		script, want string
	}{
		{`echo a; echo b >&2; echo c`, "a\nb\nc\n"},
		{`printf 'no newline'`, "no newline"},
		{`printf 'x\000y\377z\r\n'`, "x\x00y\xffz\r\n"},
		{`true`, ""},
		{`echo out; echo err >&2; exit 3`, "out\nerr\n"},
		{many.String(), manyWant.String()},
	} {
		_, out := s.ok(t, j, s.script(tt.script))
		if out != tt.want {
			t.Errorf("Exec(%.60q) output differs (-want +got):\n%s", tt.script, cmp.Diff(tt.want, out))
		}
	}
}

func (s *suite) testOutputLarge(t *testing.T) {
	const size = 10 << 20
	line := "0123456789abcdef\n"
	want := append(bytes.Repeat([]byte(line), size/len(line)+1)[:size], "end\n"...)
	j, _ := s.start(t)
	res, out := s.ok(t, j, s.script(fmt.Sprintf(`yes %s | head -c %d; echo end >&2`, strings.TrimSuffix(line, "\n"), size)))
	if res != (backend.Result{}) {
		t.Errorf("Exec = %+v, want exit 0", res)
	}
	if out != string(want) {
		i := 0
		for i < len(out) && i < len(want) && out[i] == want[i] {
			i++
		}
		t.Errorf("output is %d bytes, want %d; first difference at byte %d", len(out), len(want), i)
	}
}

// testOutputAfterReturn: once Exec has returned, a background process that
// keeps writing no longer writes to the step's output.
func (s *suite) testOutputAfterReturn(t *testing.T) {
	j, _ := s.start(t)
	out := newOutput("")
	r := execStep(t, context.Background(), j, s.script(`(while :; do echo tick; sleep 0.02; done) & echo started`), out)
	out.mu.Lock()
	out.returned = true
	out.mu.Unlock()
	if r.err != nil || r.res != (backend.Result{}) || !strings.Contains(r.out, "started\n") {
		t.Fatalf("Exec = %+v, %v, output %q; want exit 0 and %q", r.res, r.err, r.out, "started\n")
	}
	if max := s.opts.WaitDelay + s.opts.Slack; r.elapsed > max {
		t.Errorf("Exec took %v, want at most %v", r.elapsed, max)
	}
	time.Sleep(200 * time.Millisecond)
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.late > 0 {
		t.Errorf("%d bytes were written to the output after Exec returned", out.late)
	}
}

func (s *suite) testStdin(t *testing.T) {
	j, _ := s.start(t)
	r := execStep(t, context.Background(), j, s.script(`cat; echo done`), nil)
	if r.err != nil || r.res != (backend.Result{}) || r.out != "done\n" {
		t.Errorf("Exec(cat) = %+v, %v, output %q; want exit 0 and %q (stdin empty)", r.res, r.err, r.out, "done\n")
	}
}

// stepEnv runs env(1), not a shell, which would add variables of its own.
func (s *suite) stepEnv(t *testing.T, env ...string) map[string][]string {
	t.Helper()
	j, _ := s.start(t)
	_, out := s.ok(t, j, backend.StepSpec{Name: "env", Command: []string{"env"}, Env: env})
	got := make(map[string][]string)
	name := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	for _, line := range strings.Split(out, "\n") {
		if m := name.FindString(line); m != "" { // else a value's continuation
			k := strings.TrimSuffix(m, "=")
			got[k] = append(got[k], line[len(m):])
		}
	}
	return got
}

func (s *suite) testEnv(t *testing.T) {
	want := map[string]string{
		"GANTRY_A":      "1",
		"GANTRY_EMPTY":  "",
		"GANTRY_SPACES": " a  b=c ",
	}
	var env []string
	for k, v := range want {
		env = append(env, k+"="+v)
	}
	got := s.stepEnv(t, env...)
	for k, v := range want {
		if !slices.Equal(got[k], []string{v}) {
			t.Errorf("step sees %s = %q, want [%q]", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !slices.Contains(s.opts.HostEnv, k) {
			t.Errorf("step sees %s=%q, which neither its Env nor Options.HostEnv has", k, got[k])
		}
	}
}

func (s *suite) testEnvOverridesHost(t *testing.T) {
	got := s.stepEnv(t, "HOME=/gantry/home", "LANG=C", "TZ=UTC")
	for k, v := range map[string]string{"HOME": "/gantry/home", "LANG": "C", "TZ": "UTC"} {
		if !slices.Equal(got[k], []string{v}) {
			t.Errorf("step sees %s = %q, want [%q]", k, got[k], v)
		}
	}
}

// testEnvPATH: the program is looked up in the step's PATH, as a shell would.
func (s *suite) testEnvPATH(t *testing.T) {
	j, ws := s.start(t)
	bin := filepath.Join(ws, "bin")
	if err := os.Mkdir(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "gantry-hello"), []byte("#!/bin/sh\necho hello \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	step := backend.StepSpec{
		Name:    "hello",
		Command: []string{"gantry-hello", "world"},
		Env:     []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin"},
	}
	res, out := s.ok(t, j, step)
	if res != (backend.Result{}) || out != "hello world\n" {
		t.Errorf("Exec(%q) = %+v, output %q; want exit 0, %q", step.Command, res, out, "hello world\n")
	}
}

func (s *suite) testDir(t *testing.T) {
	j, ws := s.start(t)
	s.ok(t, j, s.script(`mkdir -p sub/dir && echo shared > sub/dir/file`))
	for _, tt := range []struct{ dir, want string }{
		{"", ws},
		{"sub/dir", filepath.Join(ws, "sub", "dir")},
	} {
		step := s.script(`pwd -P`)
		step.Dir = tt.dir
		_, out := s.ok(t, j, step)
		pwd := strings.TrimSuffix(out, "\n")
		real, err := filepath.EvalSymlinks(tt.want)
		if err != nil {
			t.Fatal(err)
		}
		if pwd != tt.want && pwd != real {
			t.Errorf("Dir %q: step runs in %q, want %q", tt.dir, pwd, tt.want)
		}
	}
	step := s.script(`cat file`)
	step.Dir = "sub/dir"
	if _, out := s.ok(t, j, step); out != "shared\n" {
		t.Errorf("second step reads %q from the first step's file, want %q", out, "shared\n")
	}
}

func (s *suite) testDirMissing(t *testing.T) {
	j, _ := s.start(t)
	step := s.script(`true`)
	step.Dir = "no/such/dir"
	r := execStep(t, context.Background(), j, step, nil)
	if r.err == nil {
		t.Errorf("Exec with Dir %q = %+v, nil; want an error", step.Dir, r.res)
	}
}

func (s *suite) testMissingCommand(t *testing.T) {
	j, ws := s.start(t)
	for _, prog := range []string{
		"gantry-backendtest-no-such-program",
		filepath.Join(ws, "no-such-program"),
	} {
		r := execStep(t, context.Background(), j, backend.StepSpec{Name: "missing", Command: []string{prog, "arg"}}, nil)
		if r.err == nil || !strings.Contains(r.err.Error(), prog) {
			t.Errorf("Exec(%q) = %+v, %v; want an error that names the program", prog, r.res, r.err)
		}
		if r.res.ExitCode != -1 {
			t.Errorf("Exec(%q) = %+v, want ExitCode -1", prog, r.res)
		}
	}
	r := execStep(t, context.Background(), j, backend.StepSpec{Name: "empty"}, nil)
	if r.err == nil {
		t.Errorf("Exec(no command) = %+v, nil; want an error", r.res)
	}
	// The job still works.
	if res, _ := s.ok(t, j, s.script("exit 5")); res.ExitCode != 5 {
		t.Errorf("Exec(exit 5) after failed starts = %+v, want exit code 5", res)
	}
}

// checkStopped checks that r was stopped with errCause.
func checkStopped(t *testing.T, r run, want backend.Result) {
	t.Helper()
	if r.res != want {
		t.Errorf("Exec = %+v, want %+v", r.res, want)
	}
	if !errors.Is(r.err, errCause) {
		t.Errorf("Exec error = %v, want one wrapping the cause %q", r.err, errCause)
	}
}

func (s *suite) testStopTimeout(t *testing.T) {
	j, _ := s.start(t)
	const timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout, errCause)
	defer cancel()
	r := execStep(t, ctx, j, s.script(`sleep 1000`), nil)
	checkStopped(t, r, backend.Result{ExitCode: -1, Stopped: true})
	if max := timeout + s.opts.Slack; r.elapsed > max {
		t.Errorf("Exec took %v, want at most %v (sleep dies of SIGTERM)", r.elapsed, max)
	}
	if res, _ := s.ok(t, j, s.script("true")); res != (backend.Result{}) {
		t.Errorf("Exec(true) after a stopped step = %+v, want exit 0", res)
	}
}

func (s *suite) testStopBeforeStart(t *testing.T) {
	j, ws := s.start(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errCause)
	r := execStep(t, ctx, j, s.script(`touch ran`), nil)
	checkStopped(t, r, backend.Result{ExitCode: -1, Stopped: true})
	if _, err := os.Stat(filepath.Join(ws, "ran")); err == nil {
		t.Error("a step whose context was already done ran")
	}
}

// cancelOnReady runs step and cancels it with errCause once it printed
// "ready". It returns the run and the time from the cancel to Exec's return.
func cancelOnReady(t *testing.T, j backend.Job, step backend.StepSpec) (run, time.Duration) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	out := newOutput("ready\n")
	var cancelled time.Time
	out.onReady = func() {
		cancelled = time.Now()
		cancel(errCause)
	}
	r := execStep(t, ctx, j, step, out)
	out.mu.Lock()
	defer out.mu.Unlock()
	if cancelled.IsZero() {
		return r, 0
	}
	return r, time.Since(cancelled)
}

// testStopTrapTERM: a step gets SIGTERM first and may clean up.
func (s *suite) testStopTrapTERM(t *testing.T) {
	j, _ := s.start(t)
	r, _ := cancelOnReady(t, j, s.script(`trap 'echo caught; exit 3' TERM; echo ready; sleep 1000 & wait`))
	checkStopped(t, r, backend.Result{ExitCode: 3, Stopped: true})
	if want := "ready\ncaught\n"; r.out != want {
		t.Errorf("output %q, want %q", r.out, want)
	}
}

// testStopIgnoreTERM: a step that ignores SIGTERM gets the whole grace
// period, then SIGKILL.
func (s *suite) testStopIgnoreTERM(t *testing.T) {
	j, _ := s.start(t)
	r, stop := cancelOnReady(t, j, s.script(`trap '' TERM; echo ready; sleep 1000`))
	checkStopped(t, r, backend.Result{ExitCode: -1, Stopped: true})
	if min, max := s.opts.KillGrace, s.opts.KillGrace+s.opts.Slack; stop < min || stop > max {
		t.Errorf("Exec returned %v after the cancel, want between %v and %v", stop, min, max)
	}
}

// testStopDescendants: stopping a step stops its whole process tree.
func (s *suite) testStopDescendants(t *testing.T) {
	for _, tt := range []struct {
		name, script string
	}{
		{"background", `exec 3>"$FIFO"; sleep 1000 & echo ready; wait`},
		{"nested", `exec 3>"$FIFO"; sh -c 'sh -c "sleep 1000" & echo ready; wait'`},
		{"grandchildIgnoresTERM", `exec 3>"$FIFO"; (trap '' TERM; echo ready; exec sleep 1000) & wait`},
		{"grandchildClosesOutput", `exec 3>"$FIFO"; sleep 1000 >/dev/null 2>&1 & echo ready; wait`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, ws := s.start(t)
			f := newFIFO(t, ws)
			r, stop := cancelOnReady(t, j, s.script(tt.script, f.env()))
			if !r.res.Stopped || !errors.Is(r.err, errCause) {
				t.Errorf("Exec = %+v, %v; want Stopped and an error wrapping %q; output %q", r.res, r.err, errCause, r.out)
			}
			if max := s.opts.KillGrace + s.opts.WaitDelay + s.opts.Slack; stop > max {
				t.Errorf("Exec returned %v after the cancel, want at most %v", stop, max)
			}
			s.waitGone(t, f, "after Exec returned")
		})
	}
}

// testBackground: a background process outlives its step, which returns
// with its own exit code, and is stopped by Close.
func (s *suite) testBackground(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		want   backend.Result
	}{
		{"holdsOutput", `exec 3>"$FIFO"; sleep 1000 & echo started`, backend.Result{}},
		{"holdsOutputExit7", `exec 3>"$FIFO"; sleep 1000 & echo started; exit 7`, backend.Result{ExitCode: 7}},
		{"ignoresTERM", `exec 3>"$FIFO"; (trap '' TERM; exec sleep 1000) & echo started`, backend.Result{}},
		{"ownOutput", `exec 3>"$FIFO"; sleep 1000 >/dev/null 2>&1 & echo started`, backend.Result{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := s.newBackend(t)
			j, ws := s.startOn(t, b)
			f := newFIFO(t, ws)
			r := execStep(t, context.Background(), j, s.script(tt.script, f.env()), nil)
			if r.err != nil || r.res != tt.want || r.out != "started\n" {
				t.Fatalf("Exec = %+v, %v, output %q; want %+v, %q", r.res, r.err, r.out, tt.want, "started\n")
			}
			if max := s.opts.WaitDelay + s.opts.Slack; r.elapsed > max {
				t.Errorf("Exec took %v, want at most %v", r.elapsed, max)
			}
			if !f.held(t, 100*time.Millisecond) {
				t.Fatal("the background process did not outlive its step")
			}
			if res, out := s.ok(t, j, s.script(`echo next`)); res != (backend.Result{}) || out != "next\n" {
				t.Errorf("next step = %+v, %q; want exit 0, %q", res, out, "next\n")
			}
			if !f.held(t, 10*time.Millisecond) {
				t.Fatal("the background process did not outlive the next step")
			}
			ctx, cancel := context.WithTimeout(context.Background(), safety)
			defer cancel()
			t0 := time.Now()
			if err := j.Close(ctx); err != nil {
				t.Errorf("Close = %v", err)
			}
			if max := s.opts.KillGrace + s.opts.Slack; time.Since(t0) > max {
				t.Errorf("Close took %v, want at most %v", time.Since(t0), max)
			}
			s.waitGone(t, f, "after Close")
		})
	}
}

// testCloseDuringExec: Close makes a running Exec return, and stops its
// process tree. The step did not end by itself, so its Result is Stopped,
// and as its context did not end, Exec returns an error saying the job was
// closed.
func (s *suite) testCloseDuringExec(t *testing.T) {
	for _, tt := range []struct {
		name, script string
	}{
		{"sleep", `exec 3>"$FIFO"; echo ready; sleep 1000`},
		{"ignoresTERM", `exec 3>"$FIFO"; trap '' TERM; echo ready; sleep 1000`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, ws := s.start(t)
			f := newFIFO(t, ws)
			out := newOutput("ready\n")
			done := make(chan run, 1)
			go func() { done <- execRaw(context.Background(), j, s.script(tt.script, f.env()), out) }()
			select {
			case <-out.readyChan():
			case r := <-done:
				t.Fatalf("Exec = %+v, %v, output %q; want it to run until Close", r.res, r.err, r.out)
			case <-time.After(safety):
				t.Fatal("the step did not print ready")
			}
			ctx, cancel := context.WithTimeout(context.Background(), safety)
			defer cancel()
			t0 := time.Now()
			if err := j.Close(ctx); err != nil {
				t.Errorf("Close = %v", err)
			}
			max := s.opts.KillGrace + s.opts.WaitDelay + s.opts.Slack
			select {
			case r := <-done:
				if r.err == nil || !r.res.Stopped {
					t.Errorf("Exec stopped by Close = %+v, %v; want Stopped and an error", r.res, r.err)
				}
			case <-time.After(max):
				t.Fatalf("Exec still running %v after Close", max)
			}
			if d := time.Since(t0); d > max {
				t.Errorf("Close and Exec took %v to return, want at most %v", d, max)
			}
			s.waitGone(t, f, "after Close")
			if r := execStep(t, context.Background(), j, s.script("true"), nil); r.err == nil {
				t.Errorf("Exec after Close = %+v, nil; want an error", r.res)
			}
		})
	}
}

func (s *suite) testCloseTwice(t *testing.T) {
	j, _ := s.start(t)
	s.ok(t, j, s.script("true"))
	for i := range 2 {
		if err := j.Close(context.Background()); err != nil {
			t.Errorf("Close #%d = %v, want nil", i+1, err)
		}
	}
	if r := execStep(t, context.Background(), j, s.script("true"), nil); r.err == nil {
		t.Errorf("Exec after Close = %+v, nil; want an error", r.res)
	}
}

// testCloseConcurrent: Closes at once all return nil, and stop the job's
// processes.
func (s *suite) testCloseConcurrent(t *testing.T) {
	j, ws := s.start(t)
	f := newFIFO(t, ws)
	// The background process ignores SIGTERM, so Close takes the grace period.
	s.ok(t, j, s.script(`exec 3>"$FIFO"; (trap '' TERM; exec sleep 1000) >/dev/null 2>&1 &`, f.env()))
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if err := j.Close(context.Background()); err != nil {
				t.Errorf("Close #%d = %v, want nil", i+1, err)
			}
		})
	}
	wg.Wait()
	s.waitGone(t, f, "after Close")
}
