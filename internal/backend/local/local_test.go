package local

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/backendtest"
	"github.com/google/go-cmp/cmp"
)

const (
	testGrace     = 300 * time.Millisecond
	testWaitDelay = 100 * time.Millisecond
)

func TestConformance(t *testing.T) {
	// A variable the host has but no step may see, and one passed on.
	t.Setenv("GANTRY_LOCALTEST_LEAK", "must not leak")
	t.Setenv("GANTRY_LOCALTEST_PASS", "passed")
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return New(Options{
			KillGrace: testGrace,
			WaitDelay: testWaitDelay,
			PassEnv:   []string{"GANTRY_LOCALTEST_PASS"},
		})
	}, backendtest.Options{
		KillGrace: testGrace,
		WaitDelay: testWaitDelay,
		HostEnv:   append(strings.Fields(hostBasics), "GANTRY_LOCALTEST_PASS"),
	})
}

func start(t *testing.T, b *Backend) (backend.Job, string) {
	t.Helper()
	ws := t.TempDir()
	j, err := b.Start(context.Background(), backend.JobSpec{ID: "1", Name: t.Name(), Workspace: ws})
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	return j, ws
}

func run(t *testing.T, j backend.Job, step backend.StepSpec) (backend.Result, string) {
	t.Helper()
	var out strings.Builder
	res, err := j.Exec(context.Background(), step, &out)
	if err != nil {
		t.Fatalf("Exec(%q) = %+v, %v; output %q", step.Command, res, err, out.String())
	}
	return res, out.String()
}

func TestPassEnv(t *testing.T) {
	t.Setenv("GANTRY_LOCALTEST_A", "a")
	t.Setenv("GANTRY_LOCALTEST_B", "b")
	t.Setenv("GANTRY_LOCALTEST_C", "c")
	b := New(Options{PassEnv: []string{"GANTRY_LOCALTEST_A", "GANTRY_LOCALTEST_C", "GANTRY_LOCALTEST_UNSET", "", "X=Y"}})
	j, _ := start(t, b)
	_, out := run(t, j, backend.StepSpec{Command: []string{"env"}, Env: []string{"GANTRY_LOCALTEST_C=step"}})
	var got []string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "GANTRY_") {
			got = append(got, strings.TrimSuffix(line, "\n"))
		}
	}
	slices.Sort(got)
	want := []string{"GANTRY_LOCALTEST_A=a", "GANTRY_LOCALTEST_C=step"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GANTRY_ variables a step sees (-want +got):\n%s", diff)
	}
}

func TestEnviron(t *testing.T) {
	b := &Backend{host: []hostVar{{"PATH=/host/bin", 4}, {"HOME=/home/h", 4}, {"PATHX=x", 5}}}
	for _, tt := range []struct {
		env, want []string
	}{
		{nil, []string{"PATH=/host/bin", "HOME=/home/h", "PATHX=x"}},
		{[]string{"A=1"}, []string{"A=1", "PATH=/host/bin", "HOME=/home/h", "PATHX=x"}},
		{[]string{"PATH=/step"}, []string{"PATH=/step", "HOME=/home/h", "PATHX=x"}},
		{[]string{"HOME=", "PATHX=y"}, []string{"HOME=", "PATHX=y", "PATH=/host/bin"}},
	} {
		if diff := cmp.Diff(tt.want, b.environ(tt.env)); diff != "" {
			t.Errorf("environ(%q) (-want +got):\n%s", tt.env, diff)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	b := New(Options{})
	if b.Name() != "local" || b.killGrace != DefaultKillGrace || b.waitDelay != DefaultWaitDelay || b.log == nil {
		t.Errorf("New(Options{}) = name %q, grace %v, wait delay %v, logger %v; want local, %v, %v, a logger",
			b.Name(), b.killGrace, b.waitDelay, b.log, DefaultKillGrace, DefaultWaitDelay)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		spec backend.JobSpec
		want string
	}{
		{backend.JobSpec{Name: "j", Workspace: file}, file + " is not a directory"},
		{backend.JobSpec{Name: "j"}, "no workspace"},
		{backend.JobSpec{Name: "j", Workspace: dir, Services: []backend.Service{{Name: "db"}}}, "cannot run services (db)"},
	} {
		j, err := New(Options{}).Start(context.Background(), tt.spec)
		if err == nil {
			j.Close(context.Background())
			t.Errorf("Start(%+v) = a job, want an error", tt.spec)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%+v) = %q, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	t.Parallel()
	j, _ := start(t, New(Options{}))
	for _, script := range []string{"echo hi", "yes | head -c 1000000"} {
		_, err := j.Exec(context.Background(), backend.StepSpec{Name: "w", Command: []string{"sh", "-c", script}}, failWriter{})
		if err == nil || !strings.Contains(err.Error(), "write output: disk full") {
			t.Errorf("Exec(%q) to a failing writer = %v, want the write error", script, err)
		}
	}
}

// TestRelativePATH: relative PATH entries are relative to the step's
// directory, as for the shell it starts.
func TestRelativePATH(t *testing.T) {
	t.Parallel()
	j, ws := start(t, New(Options{}))
	if err := os.MkdirAll(filepath.Join(ws, "sub", "bin"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "sub", "bin", "hi"), []byte("#!/bin/sh\necho hi from $0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, out := run(t, j, backend.StepSpec{Command: []string{"hi"}, Dir: "sub", Env: []string{"PATH=bin:/usr/bin:/bin"}})
	if want := "hi from " + filepath.Join(ws, "sub", "bin", "hi") + "\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	_, out = run(t, j, backend.StepSpec{Command: []string{"./bin/hi"}, Dir: "sub"})
	if want := "hi from ./bin/hi\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

// TestStopSkipsZombies: stopping a step does not wait out the grace period
// for processes that died but that nobody reaps (as under a PID 1 that is
// not an init), and does not when they are reaped either.
func TestStopSkipsZombies(t *testing.T) {
	t.Parallel()
	j, _ := start(t, New(Options{KillGrace: 20 * time.Second, WaitDelay: testWaitDelay}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := j.Exec(ctx, backend.StepSpec{Command: []string{"sh", "-c", "sleep 1000 & sleep 1000 & wait"}}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || !res.Stopped {
		t.Errorf("Exec = %+v, %v; want stopped by the deadline", res, err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Exec took %v, want well under the grace period", d)
	}
}

// TestStopStoppedProcess: a step stopped by SIGSTOP (as by SIGTTIN when it
// reads the terminal from the background) still acts on SIGTERM at once.
func TestStopStoppedProcess(t *testing.T) {
	t.Parallel()
	j, _ := start(t, New(Options{KillGrace: 20 * time.Second, WaitDelay: testWaitDelay}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := j.Exec(ctx, backend.StepSpec{Command: []string{"sh", "-c", "trap 'exit 9' TERM; kill -STOP $$; sleep 1000"}}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || res != (backend.Result{ExitCode: 9, Stopped: true}) {
		t.Errorf("Exec = %+v, %v; want exit 9 and stopped by the deadline", res, err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Exec took %v, want well under the grace period", d)
	}
}

// TestNoGoroutineLeak: a step leaves no goroutine behind, whether it ran to
// the end, failed to start or was stopped.
func TestNoGoroutineLeak(t *testing.T) {
	j, _ := start(t, New(Options{KillGrace: testGrace, WaitDelay: testWaitDelay}))
	var out strings.Builder
	run(t, j, backend.StepSpec{Command: []string{"true"}})
	before := runtime.NumGoroutine()
	for range 10 {
		j.Exec(context.Background(), backend.StepSpec{Command: []string{"sh", "-c", "echo x; exit 3"}}, &out)
		j.Exec(context.Background(), backend.StepSpec{Command: []string{"gantry-no-such-program"}}, &out)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		j.Exec(ctx, backend.StepSpec{Command: []string{"sleep", "1000"}}, &out)
		cancel()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the steps, %d before", n, before)
	}
}

// BenchmarkExecTrue measures a step's cost: compare local with baseline, a
// bare exec.Command("sh", "-c", "true").Run(), for the backend's overhead.
// Besides wall time it reports self-cpu-ns/op, the CPU time this process
// spent per step (the child's own is not counted), which a loaded machine
// disturbs less.
func BenchmarkExecTrue(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		defer reportSelfCPU(b)()
		for b.Loop() {
			if err := exec.Command("sh", "-c", "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-pipe", func(b *testing.B) {
		// What os/exec costs with output to a writer that is not a file: the
		// pipe and the copying goroutine every backend step needs.
		var out strings.Builder
		defer reportSelfCPU(b)()
		for b.Loop() {
			cmd := exec.Command("sh", "-c", "true")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("local", func(b *testing.B) {
		ws := b.TempDir()
		j, err := New(Options{}).Start(context.Background(), backend.JobSpec{ID: "bench", Name: "bench", Workspace: ws})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close(context.Background())
		step := backend.StepSpec{Name: "true", Command: []string{"sh", "-c", "true"}, Env: []string{"CI=true", "GANTRY=1"}}
		var out strings.Builder // not an *os.File, as the engine's writer is not
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		defer reportSelfCPU(b)()
		for b.Loop() {
			res, err := j.Exec(ctx, step, &out)
			if err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
}

// reportSelfCPU returns a func that reports the CPU time this process spent
// since, per benchmark iteration.
func reportSelfCPU(b *testing.B) func() {
	before := selfCPU(b)
	return func() { b.ReportMetric(float64(selfCPU(b)-before)/float64(b.N), "self-cpu-ns/op") }
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// slowWriter takes a while over its first write, as a log sink does that
// holds output back while the server it sends to is slow.
type slowWriter struct {
	mu    sync.Mutex
	delay time.Duration
	buf   strings.Builder
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	time.Sleep(w.delay)
	w.delay = 0
	return w.buf.Write(p)
}

// TestOutputCompleteBehindASlowSink: a step's output is whole even when
// the writer it goes to is slower than WaitDelay while the step ends. Only
// a background process holding the pipe is cut off, never what the step
// wrote.
func TestOutputCompleteBehindASlowSink(t *testing.T) {
	t.Parallel()
	j, _ := start(t, New(Options{KillGrace: testGrace, WaitDelay: testWaitDelay}))
	w := &slowWriter{delay: 5 * testWaitDelay}
	res, err := j.Exec(context.Background(), backend.StepSpec{Command: []string{"sh", "-c", "echo first; sleep 0.05; echo second; echo third >&2"}}, w)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec = %+v, %v", res, err)
	}
	if got := w.buf.String(); got != "first\nsecond\nthird\n" {
		t.Errorf("output = %q, want every line the step wrote", got)
	}
}
