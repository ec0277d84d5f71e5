package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/local"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

// recorder keeps every event of a run, with its data copied.
type recorder struct {
	mu     sync.Mutex
	events []engine.Event
}

func (r *recorder) sink(ev engine.Event) {
	ev.Data = append([]byte(nil), ev.Data...)
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) find(typ engine.EventType, job string) engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Type == typ && ev.Job == job {
			return ev
		}
	}
	return engine.Event{}
}

// log is everything job printed.
func (r *recorder) log(job string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, ev := range r.events {
		if ev.Type == engine.Log && ev.Job == job {
			b.Write(ev.Data)
		}
	}
	return b.String()
}

type setup struct {
	parallel int
	failFast bool
	secrets  map[string]string
	trigger  plan.Trigger
	ctx      context.Context
}

// run parses src, plans it and runs it on the local backend in a temporary
// workspace.
func run(t *testing.T, src string, s setup) (*engine.Result, *recorder, string) {
	t.Helper()
	p, err := spec.Parse("test.yml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.trigger.Event == "" {
		s.trigger = plan.Trigger{Event: plan.EventPush, Branch: "main", Commit: "abc123", Repo: "acme/web", BuildNumber: 7}
	}
	if s.parallel == 0 {
		s.parallel = 8
	}
	if s.ctx == nil {
		s.ctx = context.Background()
	}
	ws := t.TempDir()
	eng := engine.New(local.New(local.Options{KillGrace: 500 * time.Millisecond}), engine.Options{
		Parallel: s.parallel, FailFast: s.failFast, Workspace: ws, Secrets: s.secrets, RunID: t.Name(),
	})
	rec := &recorder{}
	res := eng.Run(s.ctx, plan.New(p, s.trigger), rec.sink)
	return res, rec, ws
}

func statuses(res *engine.Result) map[string]engine.Status {
	out := map[string]engine.Status{}
	for _, j := range res.Jobs {
		out[j.Name] = j.Status
	}
	return out
}

func jobResult(res *engine.Result, name string) *engine.JobResult {
	for _, j := range res.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// A job starts the moment its needs pass, not when a whole level of the
// graph is done: after-fast must not wait for slow.
func TestDAGDoesNotWaitForUnrelatedJobs(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  slow:
    steps: ["sleep 1"]
  fast:
    steps: ["true"]
  after-fast:
    needs: [fast]
    steps: ["true"]
`, setup{})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s, want success; jobs %v", res.Status, statuses(res))
	}
	afterStarted := rec.find(engine.JobStarted, "after-fast").Time
	slowFinished := rec.find(engine.JobFinished, "slow").Time
	fastFinished := rec.find(engine.JobFinished, "fast").Time
	if !afterStarted.Before(slowFinished) {
		t.Errorf("after-fast started at %v, slow finished at %v: after-fast waited for slow", afterStarted, slowFinished)
	}
	if afterStarted.Before(fastFinished) {
		t.Errorf("after-fast started at %v, before fast finished at %v", afterStarted, fastFinished)
	}
	if d := afterStarted.Sub(fastFinished); d > 200*time.Millisecond {
		t.Errorf("after-fast started %v after fast finished, want at once", d)
	}
}

func TestParallelLimit(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  a: {steps: ["sleep 0.3"]}
  b: {steps: ["sleep 0.3"]}
  c: {steps: ["sleep 0.3"]}
  d: {steps: ["sleep 0.3"]}
`, setup{parallel: 2})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s, want success", res.Status)
	}
	running, most := 0, 0
	for _, ev := range rec.events {
		switch ev.Type {
		case engine.JobStarted:
			running++
			most = max(most, running)
		case engine.JobFinished:
			running--
		}
	}
	if most != 2 {
		t.Errorf("at most %d jobs ran at once, want 2 (--parallel 2)", most)
	}
}

func TestFailureSkipsDependentsOnly(t *testing.T) {
	t.Parallel()
	res, _, _ := run(t, `
jobs:
  build: {steps: ["echo building", "exit 3", "echo never"]}
  test: {needs: [build], steps: ["true"]}
  deploy: {needs: [test], steps: ["true"]}
  lint: {steps: ["sleep 0.2"]}
`, setup{})
	want := map[string]engine.Status{"build": engine.Failure, "test": engine.Skipped, "deploy": engine.Skipped, "lint": engine.Success}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("job statuses (-want +got):\n%s", diff)
	}
	if res.Status != engine.Failure {
		t.Errorf("Run = %s, want failure", res.Status)
	}
	b := jobResult(res, "build")
	if b.Reason != `step "exit 3": exit code 3` {
		t.Errorf("build reason = %q", b.Reason)
	}
	if got := []engine.Status{b.Steps[0].Status, b.Steps[1].Status, b.Steps[2].Status}; !cmp.Equal(got, []engine.Status{engine.Success, engine.Failure, engine.Skipped}) {
		t.Errorf("build steps = %v, want success, failure, skipped", got)
	}
	if b.Steps[1].ExitCode != 3 {
		t.Errorf("exit code = %d, want 3", b.Steps[1].ExitCode)
	}
	if r := jobResult(res, "test").Reason; r != "needs build: failure" {
		t.Errorf("test reason = %q, want %q", r, "needs build: failure")
	}
	if r := jobResult(res, "deploy").Reason; r != "needs test: skipped" {
		t.Errorf("deploy reason = %q, want %q", r, "needs test: skipped")
	}
}

func TestFailFastStopsEverything(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res, _, _ := run(t, `
jobs:
  bad: {steps: ["sleep 0.1; exit 1"]}
  long: {steps: ["sleep 30"]}
  later: {needs: [long], steps: ["true"]}
`, setup{failFast: true})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("fail-fast run took %v, want the long job stopped at once", d)
	}
	want := map[string]engine.Status{"bad": engine.Failure, "long": engine.Cancelled, "later": engine.Skipped}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("job statuses (-want +got):\n%s", diff)
	}
	if r := jobResult(res, "long").Reason; !strings.Contains(r, "fail-fast: job bad failed") {
		t.Errorf("long reason = %q, want it to name fail-fast and bad", r)
	}
}

func alive(pid int) bool {
	// The process is not our child, so once killed it is reaped by init and
	// kill(pid, 0) fails; a zombie still waiting for init is dead too.
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still alive after the step was stopped", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTimeoutKillsGrandchildren(t *testing.T) {
	t.Parallel()
	res, _, ws := run(t, `
jobs:
  hang:
    steps:
      - run: |
          sh -c 'trap "" TERM; sleep 60' &
          echo $! > grandchild.pid
          wait
        timeout: 300ms
`, setup{})
	j := jobResult(res, "hang")
	if j.Status != engine.Failure || j.Reason != `step "sh -c 'trap \"\" TERM; sleep 60' &": step timed out after 300ms` {
		t.Errorf("hang = %s %q, want failure with the timeout", j.Status, j.Reason)
	}
	waitGone(t, readPID(t, filepath.Join(ws, "grandchild.pid")))
}

func TestJobTimeout(t *testing.T) {
	t.Parallel()
	res, _, _ := run(t, `
jobs:
  slow:
    timeout: 300ms
    steps: ["sleep 30", "echo never"]
`, setup{})
	j := jobResult(res, "slow")
	if j.Status != engine.Failure || !strings.Contains(j.Reason, "job timed out after 300ms") {
		t.Errorf("slow = %s %q, want failure: job timed out after 300ms", j.Status, j.Reason)
	}
	if j.Steps[1].Status != engine.Skipped {
		t.Errorf("step after the timeout = %s, want skipped", j.Steps[1].Status)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  flaky:
    steps:
      - run: |
          n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count
          echo "attempt $n"
          [ $n -ge 3 ]
        retry: 2
  hopeless:
    steps:
      - run: exit 1
        retry: 1
`, setup{})
	f := jobResult(res, "flaky")
	if f.Status != engine.Success || f.Steps[0].Attempts != 3 {
		t.Errorf("flaky = %s after %d attempts, want success after 3", f.Status, f.Steps[0].Attempts)
	}
	if got, want := rec.log("flaky"), "attempt 1\nattempt 2\nattempt 3\n"; got != want {
		t.Errorf("flaky log = %q, want %q", got, want)
	}
	h := jobResult(res, "hopeless")
	if h.Status != engine.Failure || h.Steps[0].Attempts != 2 {
		t.Errorf("hopeless = %s after %d attempts, want failure after 2", h.Status, h.Steps[0].Attempts)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancel(engine.ErrInterrupted)
	}()
	start := time.Now()
	res, _, ws := run(t, `
jobs:
  running:
    steps:
      - run: |
          sleep 60 &
          echo $! > child.pid
          wait
  waiting:
    needs: [running]
    steps: ["true"]
`, setup{ctx: ctx})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
	want := map[string]engine.Status{"running": engine.Cancelled, "waiting": engine.Cancelled}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("job statuses (-want +got):\n%s", diff)
	}
	if res.Status != engine.Cancelled {
		t.Errorf("Run = %s, want cancelled", res.Status)
	}
	if r := jobResult(res, "running").Reason; !strings.Contains(r, "interrupted") {
		t.Errorf("running reason = %q, want it to say interrupted", r)
	}
	waitGone(t, readPID(t, filepath.Join(ws, "child.pid")))
}

func TestSecretsAreMasked(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  leak:
    secrets: [API_TOKEN]
    steps:
      - run: |
          echo "plain $API_TOKEN"
          printf 'split hunter'; sleep 0.1; printf '2-secret\n'
          printf '%s' "$API_TOKEN" | base64
          echo done
  other:
    steps: ["echo no token here: ${API_TOKEN:-unset}"]
`, setup{secrets: map[string]string{"API_TOKEN": "hunter2-secret"}})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s", res.Status)
	}
	got := rec.log("leak")
	want := "plain ***\nsplit ***\n***\ndone\n"
	if got != want {
		t.Errorf("leak log = %q, want %q", got, want)
	}
	// Only jobs that name a secret receive it.
	if got, want := rec.log("other"), "no token here: unset\n"; got != want {
		t.Errorf("other log = %q, want %q", got, want)
	}
}

func TestStepEnvironment(t *testing.T) {
	t.Parallel()
	res, rec, ws := run(t, `
env: {LEVEL: pipeline, SHARED: pipeline}
jobs:
  build:
    matrix: {go-version: ["1.23"]}
    env: {SHARED: job, FROM_EXPR: "v-${{ matrix['go-version'] }}"}
    steps:
      - name: show
        env: {STEP: "yes"}
        run: |
          echo "$CI $LEVEL $SHARED $FROM_EXPR $STEP"
          echo "$GANTRY_REPO $GANTRY_COMMIT $GANTRY_BRANCH $GANTRY_EVENT $GANTRY_BUILD_NUMBER"
          echo "$GANTRY_JOB|$GANTRY_STEP|$GANTRY_MATRIX_GO_VERSION"
          [ "$GANTRY_WORKSPACE" = "$PWD" ] && echo in-workspace
          echo "host leak: ${GANTRY_TEST_HOST_ONLY:-none}"
`, setup{})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s: %+v", res.Status, res.Jobs[0])
	}
	_ = ws
	want := "true pipeline job v-1.23 yes\n" +
		"acme/web abc123 main push 7\n" +
		"build[go-version=1.23]|show|1.23\n" +
		"in-workspace\n" +
		"host leak: none\n"
	if got := rec.log("build[go-version=1.23]"); got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}

func TestMain(m *testing.M) {
	// A host variable that must not reach steps.
	os.Setenv("GANTRY_TEST_HOST_ONLY", "leaked")
	os.Exit(m.Run())
}

// A branch name is written by whoever pushed it: interpolated into run, it
// must be data, never code.
func TestInterpolationIsNotExecuted(t *testing.T) {
	t.Parallel()
	evil := `x$(touch pwned1)` + "`touch pwned2`" + `";touch pwned3;"'`
	res, rec, ws := run(t, `
jobs:
  echo:
    steps:
      - run: |
          echo ${{ branch }}
          echo "quoted ${{ branch }}"
          echo 'single ${{ branch }}'
`, setup{trigger: plan.Trigger{Event: plan.EventPush, Branch: evil}})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s: %+v", res.Status, res.Jobs[0])
	}
	for _, f := range []string{"pwned1", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(ws, f)); err == nil {
			t.Errorf("%s exists: the branch name was executed", f)
		}
	}
	want := evil + "\nquoted " + evil + "\nsingle " + evil + "\n"
	if got := rec.log("echo"); got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}

func TestConditions(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  build:
    steps:
      - exit 1
      - run: echo cleanup
        if: always()
      - run: echo on-failure
        if: failure()
      - run: echo never
  report:
    needs: [build]
    if: always()
    steps: ["echo build was ${{ needs.build.status }}"]
  main-only:
    if: branch == 'main'
    steps: ["true"]
  release-only:
    if: branch == 'release'
    steps: ["true"]
`, setup{})
	want := map[string]engine.Status{"build": engine.Failure, "report": engine.Success, "main-only": engine.Success, "release-only": engine.Skipped}
	if diff := cmp.Diff(want, statuses(res)); diff != "" {
		t.Errorf("job statuses (-want +got):\n%s", diff)
	}
	if got, want := rec.log("build"), "cleanup\non-failure\n"; got != want {
		t.Errorf("build log = %q, want %q", got, want)
	}
	if got, want := rec.log("report"), "build was failure\n"; got != want {
		t.Errorf("report log = %q, want %q", got, want)
	}
	if r := jobResult(res, "release-only").Reason; r != "if: branch == 'release' is false" {
		t.Errorf("release-only reason = %q", r)
	}
}

func TestLogLines(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs:
  out:
    steps:
      - run: |
          echo a; echo b >&2; echo c
          printf 'no newline at the end'
`, setup{})
	if res.Status != engine.Success {
		t.Fatalf("Run = %s", res.Status)
	}
	if got, want := rec.log("out"), "a\nb\nc\nno newline at the end\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	for _, ev := range rec.events {
		if ev.Type == engine.Log && !strings.HasSuffix(string(ev.Data), "\n") {
			t.Errorf("log event %q does not end in a newline", ev.Data)
		}
	}
}

func TestEventOrder(t *testing.T) {
	t.Parallel()
	_, rec, _ := run(t, `
jobs:
  one:
    steps: ["echo hi", "true"]
`, setup{})
	var got []string
	for _, ev := range rec.events {
		got = append(got, fmt.Sprintf("%s %d", ev.Type, ev.StepIndex))
	}
	want := []string{"job.started 0", "step.started 0", "log 0", "step.finished 0", "step.started 1", "step.finished 1", "job.finished 0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

type brokenBackend struct{}

func (brokenBackend) Name() string { return "broken" }
func (brokenBackend) Start(context.Context, backend.JobSpec) (backend.Job, error) {
	return nil, errors.New("no engine here")
}

func TestBackendFailureIsAnError(t *testing.T) {
	t.Parallel()
	p, err := spec.Parse("x.yml", []byte("jobs:\n  a: {steps: [\"true\"]}\n  b: {needs: [a], steps: [\"true\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(brokenBackend{}, engine.Options{Workspace: t.TempDir()})
	res := eng.Run(context.Background(), plan.New(p, plan.Trigger{Event: plan.EventManual}), func(engine.Event) {})
	a := jobResult(res, "a")
	if a.Status != engine.Error || a.Reason != "start job on broken backend: no engine here" {
		t.Errorf("a = %s %q, want error saying the backend failed", a.Status, a.Reason)
	}
	if res.Status != engine.Error {
		t.Errorf("Run = %s, want error", res.Status)
	}
}
