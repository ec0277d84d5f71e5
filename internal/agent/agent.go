// Package agent runs jobs it leases from the server: it checks out the
// build's commit into a fresh workspace, runs the job with the engine, and
// streams the job's events back in batches while it runs. The built-in
// agent of `gantry server` is an ordinary Agent whose Server is the
// dispatcher itself; a remote agent's Server speaks HTTP. There is one
// dispatch path.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Server is what an agent needs of the server.
type Server interface {
	// Lease blocks until a job fits this agent, which describes itself
	// in self. An error wrapping ErrRefused ends the agent.
	Lease(ctx context.Context, self *store.Agent) (*queue.Assignment, error)
	// Started, Report, Heartbeat and Finish return store.ErrStaleLease
	// when the agent lost the job (cancelled, or handed to another agent):
	// it must stop it at once.
	Started(ctx context.Context, a *queue.Assignment) error
	Report(ctx context.Context, a *queue.Assignment, events []engine.Event) error
	Heartbeat(ctx context.Context, a *queue.Assignment) error
	Finish(ctx context.Context, a *queue.Assignment, res *engine.JobResult) error
	// Seen tells the server what the agent says of itself outside a lease
	// request: that it drains, for one.
	Seen(ctx context.Context, self *store.Agent) error
	// UploadArtifact stores a file of a job that passed as an artifact,
	// under the job's lease; OpenArtifact opens an artifact of the
	// release a deployment's job deploys. Both return store.ErrStaleLease
	// when the agent lost the job.
	UploadArtifact(ctx context.Context, a *queue.Assignment, f *queue.ArtifactFile) error
	OpenArtifact(ctx context.Context, a *queue.Assignment, ref queue.ArtifactRef) (io.ReadCloser, error)
}

// ErrRefused is what a Server's methods wrap when the server refuses the
// agent itself (its token was revoked): the agent stops its jobs and ends.
var ErrRefused = errors.New("the server refused this agent's token (revoked or unknown)")

// Options configure an Agent.
type Options struct {
	Name     string
	Labels   []string
	Capacity int
	// Version is reported to the server, for `gantry agents`.
	Version string
	// WorkDir holds job workspaces; each is removed when its job ends.
	WorkDir string
	// FlushInterval bounds how long output waits before it is sent; 0
	// means 100ms.
	FlushInterval time.Duration
	// FlushBytes sends a batch early once it holds this much output; 0
	// means 256 KiB.
	FlushBytes int
	// Shell runs each step's script; empty means the engine's default.
	Shell []string
}

// Agent leases and runs jobs, Capacity at a time.
type Agent struct {
	server  Server
	backend backend.Backend
	mirrors *git.Mirrors
	opts    Options
	log     *slog.Logger
	// refuse ends Run: the server refused the agent.
	refuse func(error)
}

// New returns an agent. mirrors caches the repositories it checks out.
func New(server Server, b backend.Backend, mirrors *git.Mirrors, log *slog.Logger, opts Options) *Agent {
	if opts.Capacity <= 0 {
		opts.Capacity = 1
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 100 * time.Millisecond
	}
	if opts.FlushBytes <= 0 {
		opts.FlushBytes = 256 << 10
	}
	if abs, err := filepath.Abs(opts.WorkDir); err == nil {
		opts.WorkDir = abs
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{server: server, backend: b, mirrors: mirrors, opts: opts, log: log}
}

// markerVar is set in every step's environment to the agent's work
// directory, so that processes a crashed agent left behind can be found
// and stopped by the next agent on the same directory.
const markerVar = "GANTRY_AGENT_WORKDIR"

// Run leases and runs jobs until ctx ends. Cancelling ctx drains: no new
// job is leased and running jobs finish; cancel jobCtx to stop them too.
// It first clears what a crashed predecessor on the same work directory
// left: its step processes and its workspaces. It returns an error wrapping
// ErrRefused when the server refused the agent, after stopping its jobs.
func (a *Agent) Run(ctx, jobCtx context.Context) error {
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	jobCtx, stopJobs := context.WithCancelCause(jobCtx)
	defer stopJobs(nil)
	a.refuse = func(err error) {
		refuse(err)
		stopJobs(err)
	}
	if n := reapOrphans(a.opts.WorkDir); n > 0 {
		a.log.LogAttrs(ctx, slog.LevelWarn, "stopped processes a previous agent left running", slog.Int("process_groups", n))
	}
	if entries, err := os.ReadDir(a.opts.WorkDir); err == nil {
		for _, e := range entries {
			os.RemoveAll(filepath.Join(a.opts.WorkDir, e.Name()))
		}
	}
	go func() {
		<-ctx.Done()
		if context.Cause(ctx) == context.Canceled && jobCtx.Err() == nil {
			// Draining: say so, so that `gantry agents` shows it.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			a.server.Seen(rctx, a.self(true))
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < a.opts.Capacity; i++ {
		slot := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				as, err := a.server.Lease(ctx, a.self(false))
				if errors.Is(err, ErrRefused) {
					a.refuse(err)
					return
				}
				if err != nil {
					if ctx.Err() == nil {
						a.log.LogAttrs(ctx, slog.LevelWarn, "lease", slog.Any("err", err))
						select {
						case <-ctx.Done():
						case <-time.After(time.Second):
						}
					}
					continue
				}
				a.runJob(jobCtx, slot, as)
			}
		}()
	}
	wg.Wait()
	if cause := context.Cause(ctx); errors.Is(cause, ErrRefused) {
		return cause
	}
	return nil
}

// self is what the agent says of itself.
func (a *Agent) self(draining bool) *store.Agent {
	return &store.Agent{Name: a.opts.Name, Labels: a.opts.Labels, Capacity: a.opts.Capacity,
		Version: a.opts.Version, Draining: draining}
}

// errLost is the cause of a job stopped because the server took it away.
var errLost = errors.New("cancelled on the server")

func (a *Agent) runJob(parent context.Context, slot int, as *queue.Assignment) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	log := a.log.With(slog.Int64("build", as.BuildID), slog.String("job", as.Job))
	// Everything below reports with its own context, so that a job stopped
	// by shutdown still gets its final state written.
	bg := context.WithoutCancel(ctx)
	lost := func(err error) bool {
		if errors.Is(err, store.ErrStaleLease) {
			cancel(errLost)
			return true
		}
		if errors.Is(err, ErrRefused) {
			a.refuse(err)
			cancel(errLost)
			return true
		}
		if err != nil {
			log.LogAttrs(bg, slog.LevelWarn, "report to server", slog.Any("err", err))
		}
		return false
	}
	// The workspace is checked out while the start is reported: they do
	// not depend on each other, and each costs a round trip or a git
	// process before the first step can run.
	prepared := make(chan *workspace, 1)
	go func() { prepared <- a.prepare(ctx, slot, as) }()
	if lost(a.server.Started(bg, as)) {
		(<-prepared).clean(bg)
		return
	}

	// Heartbeats keep the lease, and tell us promptly of a cancel.
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		// Often enough that a cancel reaches the step within a second.
		t := time.NewTicker(min(as.LeaseTTL/3, 500*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if lost(a.server.Heartbeat(bg, as)) {
					return
				}
			}
		}
	}()

	w := <-prepared
	res := w.fail
	if res == nil {
		res = a.execute(ctx, w, as, lost)
	}
	w.clean(bg)
	cancel(nil)
	<-hbDone
	// The result must reach the server, or the job would run again once
	// its lease expired: try a few times before giving up.
	for try, wait := 1, 100*time.Millisecond; ; try, wait = try+1, wait*2 {
		err := a.server.Finish(bg, as, res)
		if err == nil || errors.Is(err, store.ErrStaleLease) || errors.Is(err, ErrRefused) {
			break
		}
		if try == 6 {
			log.LogAttrs(bg, slog.LevelError, "finish job", slog.Any("err", err))
			break
		}
		log.LogAttrs(bg, slog.LevelWarn, "finish job; retrying", slog.Any("err", err), slog.Int("try", try))
		time.Sleep(wait)
	}
}

// workspace is a job's checked-out work tree and the plan it runs there,
// or fail, why the job could not get that far.
type workspace struct {
	fail *engine.JobResult
	pl   *plan.Plan
	job  *plan.Job
	dir  string
	m    *git.Mirror
}

// prepare finds the job in its pipeline and checks its commit out.
func (a *Agent) prepare(ctx context.Context, slot int, as *queue.Assignment) *workspace {
	fail := func(reason string) *workspace {
		return &workspace{fail: &engine.JobResult{Name: as.Job, Status: engine.Error, Reason: reason}}
	}
	p, err := spec.Parse(".gantry.yml", as.Pipeline)
	if err != nil {
		return fail("pipeline: " + err.Error())
	}
	pl := plan.New(p, as.Trigger)
	var job *plan.Job
	for _, j := range pl.Jobs {
		if j.Name == as.Job {
			job = j
		}
	}
	if job == nil {
		return fail(fmt.Sprintf("job %q is not in the build's pipeline", as.Job))
	}
	// One workspace per slot and repository, refreshed for each job and
	// cleaned after it: a new clone per job costs more than the rest of
	// the way from webhook to first step.
	ws := filepath.Join(a.opts.WorkDir, "slot-"+strconv.Itoa(slot), git.DirName(as.Repo))
	if err := os.MkdirAll(filepath.Dir(ws), 0o755); err != nil {
		return fail("workspace: " + err.Error())
	}
	m := a.mirrors.Get(as.Repo, as.CloneURL)
	if err := m.Refresh(ctx, as.Commit, ws); err != nil {
		// Not in this machine's mirror yet (a remote agent): fetch it.
		if ferr := m.Fetch(ctx, as.Commit); ferr != nil {
			return fail(ferr.Error())
		}
		if err := m.Refresh(ctx, as.Commit, ws); err != nil {
			return fail(err.Error())
		}
	}
	return &workspace{pl: pl, job: job, dir: ws, m: m}
}

// clean leaves the work tree ready for the next job of its slot.
func (w *workspace) clean(ctx context.Context) {
	if w.m != nil {
		w.m.Clean(ctx, w.dir)
	}
}

// execute runs a prepared job, streaming its events.
func (a *Agent) execute(ctx context.Context, w *workspace, as *queue.Assignment, lost func(error) bool) *engine.JobResult {
	pl, job, ws := w.pl, w.job, w.dir
	// The engine gives the job the secrets the server leased it with, and
	// masks them in its output before it is sent anywhere.
	eng := engine.New(a.backend, engine.Options{Workspace: ws, Shell: a.opts.Shell, RunID: fmt.Sprintf("job-%d-", as.JobID),
		Env: []string{markerVar + "=" + a.opts.WorkDir}, Secrets: as.Secrets})

	b := newBatcher(a.opts.FlushInterval, a.opts.FlushBytes, func(evs []engine.Event) {
		lost(a.server.Report(context.WithoutCancel(ctx), as, evs))
	})
	defer b.close()
	// say writes a line of the agent's own into the job's log, at a step.
	say := func(step int) func(string) {
		return func(line string) {
			b.add(engine.Event{Type: engine.Log, Time: time.Now(), Job: as.Job, StepIndex: step, Data: []byte(line + "\n")})
		}
	}
	// A deployment runs exactly the bytes its release recorded, or nothing.
	if len(as.Artifacts) > 0 {
		if err := a.place(ctx, as, ws, say(0)); err != nil {
			return artifactResult(as.Job, err, lost)
		}
	}
	res := eng.RunJob(ctx, pl, job, as.Needs, b.add)
	// The last step's end, and with it the server's last word on the
	// lease, before anything is uploaded or the result is decided.
	b.flush()
	if res.Status == engine.Success && len(job.Artifacts) > 0 {
		if err := a.upload(ctx, as, ws, job.Artifacts, say(max(len(job.Steps)-1, 0))); err != nil {
			r := artifactResult(as.Job, err, lost)
			res.Status, res.Reason = r.Status, r.Reason
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, errLost) {
		res.Status, res.Reason = engine.Cancelled, errLost.Error()
	}
	return res
}

// artifactResult is how a job ends when its artifacts could not be placed
// or uploaded: failed when it is the job's doing, cancelled when the job
// was taken away (lost stops it), else errored.
func artifactResult(job string, err error, lost func(error) bool) *engine.JobResult {
	res := &engine.JobResult{Name: job, Status: engine.Error, Reason: err.Error()}
	var ea *errArtifacts
	switch {
	case errors.Is(err, store.ErrStaleLease) || errors.Is(err, ErrRefused):
		lost(err)
		res.Status, res.Reason = engine.Cancelled, errLost.Error()
	case errors.As(err, &ea):
		res.Status = engine.Failure
	}
	return res
}

// batcher collects events and sends them in batches: when FlushBytes of
// output have gathered, when a step starts or ends, and at the latest
// FlushInterval after the first unsent event, so a steady trickle of lines
// cannot hold output back.
//
// A step's start makes the step wait until the server took it: the answer
// is the last word on the lease before the step's process starts, so a job
// cancelled or taken away by then never begins another step (for a
// deployment, another change to a host). A full batch waits too, so that
// output faster than the server takes it is held back rather than piling
// up in memory. A step's end is sent at once but in the background: it
// goes with the next step's start at the latest, so a step boundary costs
// one round trip to the server, not two.
type batcher struct {
	mu       sync.Mutex
	events   []engine.Event
	size     int
	kicked   bool // a background flush is on its way
	maxBytes int
	interval time.Duration
	timer    *time.Timer
	send     func([]engine.Event)
	sending  sync.Mutex // keeps batches in order
}

func newBatcher(interval time.Duration, maxBytes int, send func([]engine.Event)) *batcher {
	b := &batcher{interval: interval, maxBytes: maxBytes, send: send}
	b.timer = time.AfterFunc(time.Hour, b.flush)
	b.timer.Stop()
	return b
}

func (b *batcher) add(ev engine.Event) {
	if ev.Type == engine.Log {
		ev.Data = append([]byte(nil), ev.Data...) // only valid during the call
	}
	b.mu.Lock()
	if len(b.events) == 0 {
		b.timer.Reset(b.interval)
	}
	b.events = append(b.events, ev)
	b.size += len(ev.Data)
	wait := b.size >= b.maxBytes || ev.Type == engine.StepStarted
	kick := !wait && !b.kicked && ev.Type == engine.StepFinished
	b.kicked = b.kicked || kick
	b.mu.Unlock()
	switch {
	case wait:
		b.flush()
	case kick:
		go b.flush()
	}
}

// flush sends what has gathered. Batches leave in the order their events
// came: a flush takes the events only once the one before it was sent.
func (b *batcher) flush() {
	b.sending.Lock()
	defer b.sending.Unlock()
	b.mu.Lock()
	evs := b.events
	b.events, b.size, b.kicked = nil, 0, false
	b.timer.Stop()
	b.mu.Unlock()
	if len(evs) > 0 {
		b.send(evs)
	}
}

func (b *batcher) close() {
	b.timer.Stop()
	b.flush()
}
