// Package engine runs a plan on a backend: it orders jobs by their needs as
// a true graph (a job starts the moment everything it needs has passed, not
// when a whole stage is done), runs independent jobs in parallel, applies
// timeouts, retries and cancellation, masks secrets, and reports everything
// as a stream of events.
//
// It knows nothing of HTTP, SQL or terminals: `gantry run`, the built-in
// agent and remote agents all drive this same engine and render its events
// their own way.
package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/eval"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/secret"
)

// DefaultShell runs each step's script: -e stops a multi-line script at its
// first failing command.
var DefaultShell = []string{"sh", "-e", "-c"}

// Options configure an Engine.
type Options struct {
	// Parallel bounds how many jobs run at once; 0 means the number of CPUs.
	Parallel int
	// FailFast stops the whole run at the first job that fails.
	FailFast bool
	// Workspace is the directory holding the checkout; steps start in it.
	Workspace string
	// Shell runs a step's script, which is passed as the last argument.
	// Empty means DefaultShell.
	Shell []string
	// Secrets are the secret values a job may receive, by name. A job gets
	// only those it lists under `secrets:`; every value is masked in every
	// job's output.
	Secrets map[string]string
	// RunID prefixes the backend job IDs of this run, so that several runs
	// can share one backend.
	RunID string
	// CloseTimeout bounds a job's cleanup on the backend; 0 means 1 minute.
	CloseTimeout time.Duration
	// Env is added to every step's environment (KEY=VALUE), before the
	// GANTRY_* variables.
	Env []string
}

// Engine runs plans. It holds no state between runs, so one Engine may run
// several plans at once.
type Engine struct {
	backend backend.Backend
	opts    Options
	masker  *secret.Masker
}

// New returns an engine that runs steps on b.
func New(b backend.Backend, opts Options) *Engine {
	if opts.Parallel <= 0 {
		opts.Parallel = runtime.NumCPU()
	}
	if len(opts.Shell) == 0 {
		opts.Shell = DefaultShell
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = time.Minute
	}
	values := make([]string, 0, len(opts.Secrets))
	for _, v := range opts.Secrets {
		values = append(values, v)
	}
	return &Engine{backend: b, opts: opts, masker: secret.NewMasker(values)}
}

// Result is how a run ended.
type Result struct {
	Status   Status
	Duration time.Duration
	// Jobs are in plan order.
	Jobs []*JobResult
}

// JobResult is how one job ended.
type JobResult struct {
	Name     string
	Status   Status
	Reason   string
	Duration time.Duration
	Steps    []*StepResult
}

// StepResult is how one step ended, after its last attempt.
type StepResult struct {
	Name     string
	Status   Status
	ExitCode int
	Attempts int
	Duration time.Duration
	Reason   string
}

// TimeoutError is the cause a step or job records when it ran out of time.
type TimeoutError struct {
	What  string // "step" or "job"
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s timed out after %s", e.What, e.After)
}

// ErrInterrupted is the cause to cancel a run with when its user asked it to stop.
var ErrInterrupted = errors.New("interrupted")

// failFastError is the cause of a run stopped by FailFast.
type failFastError struct{ job string }

func (e *failFastError) Error() string { return fmt.Sprintf("fail-fast: job %s failed", e.job) }

// Run runs every job of p and returns when all have finished. sink receives
// every event, one call at a time. Cancel ctx with a cause (ErrInterrupted,
// say) to stop the run: running steps are stopped, jobs not yet started end
// as cancelled.
func (e *Engine) Run(ctx context.Context, p *plan.Plan, sink func(Event)) *Result {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	emit := func(ev Event) {
		mu.Lock()
		sink(ev)
		mu.Unlock()
	}
	results := map[string]*JobResult{}
	skip := func(ds []Decision) {
		for _, d := range ds {
			results[d.Job] = &JobResult{Name: d.Job, Status: d.Status, Reason: d.Reason}
			emit(Event{Type: JobFinished, Time: time.Now(), Job: d.Job, Status: d.Status, Reason: d.Reason})
		}
	}
	g := NewGraph(p)
	skip(g.Start())
	type done struct {
		name string
		res  *JobResult
	}
	doneCh := make(chan done)
	running := 0
	for {
		for running < e.opts.Parallel && ctx.Err() == nil {
			j := g.Next()
			if j == nil {
				break
			}
			running++
			needs := g.Needs(j.Name)
			go func() { doneCh <- done{j.Name, e.RunJob(ctx, p, j, needs, emit)} }()
		}
		if running == 0 {
			break
		}
		d := <-doneCh
		running--
		results[d.name] = d.res
		if e.opts.FailFast && (d.res.Status == Failure || d.res.Status == Error) && ctx.Err() == nil {
			cancel(&failFastError{job: d.name})
		}
		if ctx.Err() != nil {
			// Stopping: what has not started ends now, for the stop's
			// reason, rather than for the job that was stopped.
			skip(g.Stop(context.Cause(ctx)))
		}
		skip(g.Finish(d.name, d.res.Status))
	}
	// Whatever has not run by now never will: the run was stopped.
	skip(g.Stop(context.Cause(ctx)))
	res := &Result{Duration: time.Since(start)}
	for _, j := range p.Jobs {
		res.Jobs = append(res.Jobs, results[j.Name])
	}
	res.Status = overall(res.Jobs)
	return res
}

// notStarted is the status of a job that never ran because the run stopped:
// skipped when --fail-fast stopped it, cancelled when someone did.
func notStarted(cause error) (Status, string) {
	var ff *failFastError
	if errors.As(cause, &ff) {
		return Skipped, "not started: " + ff.Error()
	}
	return Cancelled, "not started: " + causeText(cause)
}

func causeText(err error) string {
	if err == nil {
		return "run stopped"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	return err.Error()
}

// overall is a run's status from its jobs': any failure fails the run, then
// any error, then any cancel.
func overall(jobs []*JobResult) Status {
	rank := map[Status]int{Failure: 3, Error: 2, Cancelled: 1}
	st := Success
	for _, j := range jobs {
		if rank[j.Status] > rank[st] {
			st = j.Status
		}
	}
	return st
}

// jobRun is one job being run by RunJob.
type jobRun struct {
	e     *Engine
	plan  *plan.Plan
	job   *plan.Job
	needs map[string]string
	sink  func(Event)
	res   *JobResult
}

func (r *jobRun) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	r.sink(ev)
}

// evalContext is what expressions of job j see.
func evalContext(p *plan.Plan, j *plan.Job, needs, env map[string]string) *eval.Context {
	t := p.Trigger
	return &eval.Context{
		Branch: t.Branch, Tag: t.Tag, Event: t.Event, Commit: t.Commit, Repo: t.Repo,
		Matrix: j.Matrix, Env: env, Needs: needs,
	}
}

// resolveEnv evaluates each value of add in ctx, in name order, on top of base.
func resolveEnv(base, add map[string]string, ec *eval.Context) (map[string]string, error) {
	out := make(map[string]string, len(base)+len(add))
	for k, v := range base {
		out[k] = v
	}
	keys := make([]string, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ec.Env = out
	for _, k := range keys {
		t, err := eval.CompileTemplate(add[k])
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		v, err := t.String(ec)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// RunJob runs one job of p whose needs have finished (needs maps each to
// its status, as Graph.Needs returns it) and returns how it ended. This is
// what an agent does with a job it leased; Run does it for every job of a
// plan. sink receives the job's events in order, from one goroutine at a
// time.
func (e *Engine) RunJob(ctx context.Context, p *plan.Plan, j *plan.Job, needs map[string]string, sink func(Event)) *JobResult {
	r := &jobRun{e: e, plan: p, job: j, needs: needs, sink: sink, res: &JobResult{Name: j.Name}}
	start := time.Now()
	r.emit(Event{Type: JobStarted, Job: j.Name, Time: start})
	status, reason := r.exec(ctx)
	r.res.Status, r.res.Reason, r.res.Duration = status, reason, time.Since(start)
	r.emit(Event{Type: JobFinished, Job: j.Name, Status: status, Reason: reason, Duration: r.res.Duration})
	return r.res
}

func (r *jobRun) exec(ctx context.Context) (Status, string) {
	j := r.job
	opts := r.e.opts
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, j.Timeout, &TimeoutError{What: "job", After: j.Timeout})
		defer cancel()
	}
	ec := evalContext(r.plan, j, r.needs, nil)
	env, err := resolveEnv(nil, r.plan.Env, ec)
	if err == nil {
		env, err = resolveEnv(env, j.Env, ec)
	}
	if err != nil {
		return Error, err.Error()
	}
	image := j.Image
	if image != "" {
		t, err := eval.CompileTemplate(image)
		if err == nil {
			image, err = t.String(ec)
		}
		if err != nil {
			return Error, "image: " + err.Error()
		}
	}
	var services []backend.Service
	for _, s := range j.Services {
		bs := backend.Service{Name: s.Name, Image: s.Image, Env: s.Env, Command: s.Command}
		if s.Ready != nil && s.Ready.Run != "" {
			bs.Ready = &backend.Ready{Command: []string{"sh", "-c", s.Ready.Run}, Interval: s.Ready.Interval, Timeout: s.Ready.Timeout}
		}
		services = append(services, bs)
	}
	bj, err := r.e.backend.Start(ctx, backend.JobSpec{
		ID:        opts.RunID + strconv.Itoa(index(r.plan, j.Name)),
		Name:      j.Name,
		Workspace: opts.Workspace,
		Image:     image,
		Pull:      j.Pull,
		Services:  services,
	})
	if err != nil {
		if ctx.Err() != nil {
			return stoppedStatus(context.Cause(ctx))
		}
		return Error, fmt.Sprintf("start job on %s backend: %v", r.e.backend.Name(), err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.CloseTimeout)
		defer cancel()
		bj.Close(cctx)
	}()

	base := r.baseEnv(env)
	status, reason := Success, ""
	for i, st := range j.Steps {
		sr := &StepResult{Name: st.DisplayName(), ExitCode: -1}
		r.res.Steps = append(r.res.Steps, sr)
		failed := status != Success
		runIt := !failed && ctx.Err() == nil
		skipReason := "an earlier step did not pass"
		if ctx.Err() != nil {
			skipReason = causeText(context.Cause(ctx))
		}
		if st.If != "" {
			cond, err := eval.CompileCondition(st.If)
			var ok bool
			if err == nil {
				sc := evalContext(r.plan, j, r.needs, env)
				sc.Failed, sc.Cancelled = failed, ctx.Err() != nil
				ok, err = cond.Eval(sc)
			}
			if err != nil {
				sr.Status, sr.Reason = Error, err.Error()
				r.emit(Event{Type: StepFinished, Job: j.Name, Step: sr.Name, StepIndex: i, Status: Error, ExitCode: -1, Reason: sr.Reason})
				status, reason = Error, fmt.Sprintf("step %q: %s", sr.Name, sr.Reason)
				continue
			}
			runIt = ok && ctx.Err() == nil
			if !ok && !failed {
				skipReason = "if: " + cond.String() + " is false"
			}
		}
		if !runIt {
			sr.Status, sr.Reason = Skipped, skipReason
			r.emit(Event{Type: StepFinished, Job: j.Name, Step: sr.Name, StepIndex: i, Status: Skipped, ExitCode: -1, Reason: skipReason})
			continue
		}
		r.runStep(ctx, i, bj, base, env, sr)
		if sr.Status != Success && status == Success {
			status = sr.Status
			reason = fmt.Sprintf("step %q: %s", sr.Name, sr.Reason)
		}
	}
	if status == Success && ctx.Err() != nil {
		return stoppedStatus(context.Cause(ctx))
	}
	return status, reason
}

func stoppedStatus(cause error) (Status, string) {
	var te *TimeoutError
	if errors.As(cause, &te) {
		return Failure, te.Error()
	}
	return Cancelled, causeText(cause)
}

func index(p *plan.Plan, name string) int {
	for i, j := range p.Jobs {
		if j.Name == name {
			return i
		}
	}
	return -1
}

// baseEnv is every step's environment but the step's own: the pipeline and
// job env, the job's secrets, CI=true and the GANTRY_* variables.
func (r *jobRun) baseEnv(env map[string]string) []string {
	j := r.job
	t := r.plan.Trigger
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys)+len(j.Secrets)+16)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	for _, name := range j.Secrets {
		out = append(out, name+"="+r.e.opts.Secrets[name])
	}
	out = append(out, r.e.opts.Env...)
	out = append(out,
		"CI=true",
		"GANTRY=true",
		"GANTRY_WORKSPACE="+r.e.opts.Workspace,
		"GANTRY_REPO="+t.Repo,
		"GANTRY_COMMIT="+t.Commit,
		"GANTRY_BRANCH="+t.Branch,
		"GANTRY_TAG="+t.Tag,
		"GANTRY_EVENT="+t.Event,
		"GANTRY_BUILD_NUMBER="+strconv.Itoa(t.BuildNumber),
		"GANTRY_JOB="+j.Name,
	)
	for _, k := range j.MatrixKeys {
		out = append(out, "GANTRY_MATRIX_"+envName(k)+"="+j.Matrix[k])
	}
	if t.Environment != "" {
		out = append(out, "GANTRY_ENVIRONMENT="+t.Environment, "GANTRY_RELEASE="+t.Release)
	}
	return out
}

// envName turns a matrix axis into a variable name: go-version -> GO_VERSION.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// interpPrefix names the variables that carry interpolated values into a script.
const interpPrefix = "GANTRY_EXPR_"

func (r *jobRun) runStep(ctx context.Context, idx int, bj backend.Job, base []string, jobEnv map[string]string, sr *StepResult) {
	j := r.job
	st := j.Steps[idx]
	if st.Health != nil {
		r.runHealth(ctx, idx, bj, base, jobEnv, sr)
		return
	}
	fail := func(reason string) {
		sr.Status, sr.Reason = Error, reason
		r.emit(Event{Type: StepFinished, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: 1, MaxAttempts: 1, Status: Error, ExitCode: -1, Reason: reason})
	}
	ec := evalContext(r.plan, j, r.needs, jobEnv)
	stepEnv, err := resolveEnv(jobEnv, st.Env, ec)
	if err != nil {
		fail(err.Error())
		return
	}
	tmpl, err := eval.CompileTemplate(st.Run)
	if err != nil {
		fail("run: " + err.Error())
		return
	}
	ec.Env = stepEnv
	script, vars, err := tmpl.Script(ec, interpPrefix)
	if err != nil {
		fail("run: " + err.Error())
		return
	}
	envList := make([]string, 0, len(base)+len(st.Env)+len(vars)+1)
	envList = append(envList, base...)
	for k := range st.Env {
		envList = append(envList, k+"="+stepEnv[k])
	}
	envList = append(envList, vars...)
	envList = append(envList, "GANTRY_STEP="+sr.Name)
	cmd := make([]string, 0, len(r.e.opts.Shell)+1)
	cmd = append(append(cmd, r.e.opts.Shell...), script)
	spec := backend.StepSpec{Name: sr.Name, Command: cmd, Env: envList, Dir: st.WorkingDirectory}

	maxAttempts := st.Retry + 1
	stepStart := time.Now()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r.emit(Event{Type: StepStarted, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: attempt, MaxAttempts: maxAttempts, Time: start})
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if st.Timeout > 0 {
			sctx, cancel = context.WithTimeoutCause(ctx, st.Timeout, &TimeoutError{What: "step", After: st.Timeout})
		}
		lw := &lineWriter{emit: func(b []byte) {
			r.emit(Event{Type: Log, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: attempt, Data: b})
		}}
		mw := r.e.masker.NewWriter(lw)
		res, err := bj.Exec(sctx, spec, mw)
		mw.Flush()
		lw.Flush()
		cause := context.Cause(sctx)
		cancel()

		status, reason := Success, ""
		switch {
		case res.Stopped:
			status, reason = stoppedStatus(cause)
		case err != nil:
			status, reason = Error, err.Error()
		case res.ExitCode != 0:
			status, reason = Failure, fmt.Sprintf("exit code %d", res.ExitCode)
		}
		sr.Status, sr.Reason, sr.ExitCode, sr.Attempts = status, reason, res.ExitCode, attempt
		sr.Duration = time.Since(stepStart)
		r.emit(Event{Type: StepFinished, Job: j.Name, Step: sr.Name, StepIndex: idx, Attempt: attempt, MaxAttempts: maxAttempts,
			Status: status, ExitCode: res.ExitCode, Duration: time.Since(start), Reason: reason})
		if status != Failure || attempt >= maxAttempts || ctx.Err() != nil {
			return
		}
	}
}

// maxLine is the longest line passed on whole; a longer one is split.
const maxLine = 64 << 10

// lineWriter cuts a step's output into whole lines for log events. A line
// longer than maxLine is split, and an unterminated last line is ended with
// '\n' by Flush, so every event's data is whole lines.
type lineWriter struct {
	emit    func([]byte)
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		w.partial = append(w.partial, p...)
		w.split()
		return n, nil
	}
	if len(w.partial) > 0 {
		w.partial = append(w.partial, p[:i+1]...)
		w.emit(w.partial)
		w.partial = w.partial[:0]
	} else {
		w.emit(p[:i+1])
	}
	w.partial = append(w.partial, p[i+1:]...)
	w.split()
	return n, nil
}

// split passes on the partial line once it is too long to hold.
func (w *lineWriter) split() {
	for len(w.partial) >= maxLine {
		line := append(w.partial[:maxLine:maxLine], '\n')
		w.emit(line)
		w.partial = append(w.partial[:0], w.partial[maxLine:]...)
	}
}

// Flush passes on an unterminated last line.
func (w *lineWriter) Flush() {
	if len(w.partial) > 0 {
		w.emit(append(w.partial, '\n'))
		w.partial = w.partial[:0]
	}
}
