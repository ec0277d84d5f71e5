// Package queue hands queued jobs to agents. An idle agent blocks in Lease
// and is woken the moment a job is queued (no polling tick); a lease is
// kept alive by heartbeats and carries a fencing token, so an agent whose
// lease was taken away (expired, cancelled) has its reports refused and a
// job never has two writers. The built-in agent calls a Dispatcher
// directly; remote agents reach the same methods over HTTP.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// Assignment is a leased job with everything an agent needs to run it.
type Assignment struct {
	BuildID  int64  `json:"build_id"`
	JobID    int64  `json:"job_id"`
	Token    int64  `json:"token"`
	Job      string `json:"job"`
	Repo     string `json:"repo"`
	CloneURL string `json:"clone_url"`
	Commit   string `json:"commit"`
	// Pipeline is the pipeline file of the build, as read from its commit.
	Pipeline []byte            `json:"pipeline"`
	Trigger  plan.Trigger      `json:"trigger"`
	Needs    map[string]string `json:"needs"`
	// LeaseTTL is how long the lease lasts without a heartbeat.
	LeaseTTL time.Duration `json:"lease_ttl"`
}

// Options configure a Dispatcher.
type Options struct {
	// LeaseTTL is how long a lease lasts without a heartbeat; 0 means 30s.
	LeaseTTL time.Duration
	// Retries is how many times a job whose agent vanished is handed to
	// another agent before it fails with "agent lost"; 0 means none.
	Retries int
	// Logged, if set, is called after a job's log output was stored.
	Logged func(buildID, jobID int64)
}

// Dispatcher leases jobs to agents.
type Dispatcher struct {
	store  store.Store
	builds *build.Service
	opts   Options
	log    *slog.Logger

	mu     sync.Mutex
	wake   chan struct{}       // closed and replaced by Notify
	agents map[string][]string // labels of each agent that has asked for work
}

// New returns a Dispatcher over st.
func New(st store.Store, builds *build.Service, log *slog.Logger, opts Options) *Dispatcher {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{store: st, builds: builds, opts: opts, log: log, wake: make(chan struct{}), agents: map[string][]string{}}
}

// Notify wakes every agent waiting in Lease: jobs may have been queued.
func (d *Dispatcher) Notify() {
	d.mu.Lock()
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
}

func (d *Dispatcher) waitChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wake
}

// Lease blocks until a queued job fits an agent with these labels, and
// hands it out; it returns ctx's error when ctx ends first.
func (d *Dispatcher) Lease(ctx context.Context, agent string, labels []string) (*Assignment, error) {
	d.mu.Lock()
	d.agents[agent] = labels
	d.mu.Unlock()
	for {
		// Take the wake channel before looking, so a Notify between the
		// look and the wait is not lost.
		wake := d.waitChan()
		b, j, err := d.store.Lease(ctx, agent, labels, d.opts.LeaseTTL)
		switch {
		case err == nil:
			a, err := d.assignment(b, j)
			if err != nil {
				// A build whose stored pipeline no longer parses cannot run.
				d.builds.Fail(context.WithoutCancel(ctx), b.ID, j.ID, 0, err.Error())
				continue
			}
			return a, nil
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("lease: %w", err)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (d *Dispatcher) assignment(b *store.Build, j *store.Job) (*Assignment, error) {
	pl, err := build.Plan(b)
	if err != nil {
		return nil, err
	}
	repo := b.Repo
	cloneURL := ""
	if r, err := d.store.Repo(context.Background(), repo); err == nil {
		cloneURL = r.CloneURL
	}
	return &Assignment{
		BuildID: b.ID, JobID: j.ID, Token: j.LeaseToken, Job: j.Name, Repo: repo, CloneURL: cloneURL,
		Commit: b.Commit, Pipeline: b.Pipeline, Trigger: pl.Trigger, Needs: build.Needs(b, pl, j.Name),
		LeaseTTL: d.opts.LeaseTTL,
	}, nil
}

// Heartbeat keeps a lease alive; store.ErrStaleLease means the agent must
// stop the job: it was cancelled or handed to someone else.
func (d *Dispatcher) Heartbeat(ctx context.Context, a *Assignment) error {
	return d.store.Renew(ctx, a.JobID, a.Token, d.opts.LeaseTTL)
}

// Started records that the agent began the job.
func (d *Dispatcher) Started(ctx context.Context, a *Assignment) error {
	return d.builds.Started(ctx, a.BuildID, a.JobID, a.Token)
}

// Report stores a batch of a running job's events: its log lines and its
// steps' starts and ends. store.ErrStaleLease means the agent must stop.
func (d *Dispatcher) Report(ctx context.Context, a *Assignment, events []engine.Event) error {
	var chunks []*store.LogChunk
	var steps []engine.Event
	for _, ev := range events {
		switch ev.Type {
		case engine.Log:
			chunks = append(chunks, &store.LogChunk{Step: ev.StepIndex, Data: ev.Data, CreatedAt: ev.Time})
		case engine.StepStarted, engine.StepFinished:
			steps = append(steps, ev)
		}
	}
	if len(chunks) > 0 {
		if err := d.store.AppendLogs(ctx, a.JobID, a.Token, chunks); err != nil {
			return err
		}
		if d.opts.Logged != nil {
			d.opts.Logged(a.BuildID, a.JobID)
		}
	}
	if len(steps) > 0 {
		return d.builds.Steps(ctx, a.BuildID, a.JobID, a.Token, steps)
	}
	return nil
}

// Finish records how the job ended.
func (d *Dispatcher) Finish(ctx context.Context, a *Assignment, res *engine.JobResult) error {
	return d.builds.Finish(ctx, a.BuildID, a.JobID, a.Token, res)
}

// Run expires leases whose agent stopped heartbeating until ctx ends: the
// job goes to another agent, up to Retries times, or fails as "agent lost".
func (d *Dispatcher) Run(ctx context.Context) {
	tick := time.NewTicker(max(min(d.opts.LeaseTTL/3, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := d.expire(ctx); err != nil && ctx.Err() == nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "expire leases", slog.Any("err", err))
		}
		if err := d.explain(ctx); err != nil && ctx.Err() == nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "explain queue", slog.Any("err", err))
		}
	}
}

func (d *Dispatcher) expire(ctx context.Context) error {
	now := time.Now()
	ids, err := d.store.ExpiredLeases(ctx, now)
	if err != nil {
		return err
	}
	for _, id := range ids {
		b, err := d.store.Build(ctx, id)
		if err != nil {
			continue
		}
		for _, j := range b.Jobs {
			if j.Status != store.StatusRunning || j.LeaseExpires.IsZero() || !j.LeaseExpires.Before(now) {
				continue
			}
			reason := fmt.Sprintf("agent lost: %s stopped heartbeating", j.Agent)
			d.log.LogAttrs(ctx, slog.LevelWarn, "lease expired", slog.Int64("build", id), slog.String("job", j.Name), slog.String("agent", j.Agent))
			if j.Attempt <= d.opts.Retries {
				err = d.builds.Requeue(ctx, id, j.ID, j.LeaseToken, reason)
			} else {
				err = d.builds.Fail(ctx, id, j.ID, j.LeaseToken, reason)
			}
			if err != nil {
				// Log and go on: one build must not stop the expiry of others.
				d.log.LogAttrs(ctx, slog.LevelError, "expire lease", slog.Int64("build", id), slog.Any("err", err))
			}
		}
	}
	if len(ids) > 0 {
		d.Notify()
	}
	return nil
}

// noAgent prefixes the reason of a queued job no known agent can take.
const noAgent = "waiting: no agent has labels "

// explain gives every queued job that no agent seen so far can take the
// reason, so a `runs-on: [ubuntu-latest]` says why it waits rather than
// waiting in silence.
func (d *Dispatcher) explain(ctx context.Context) error {
	builds, err := d.store.Builds(ctx, store.BuildFilter{Status: store.StatusQueued, Limit: 500})
	if err != nil {
		return err
	}
	builds2, err := d.store.Builds(ctx, store.BuildFilter{Status: store.StatusRunning, Limit: 500})
	if err != nil {
		return err
	}
	d.mu.Lock()
	agents := make([][]string, 0, len(d.agents))
	for _, l := range d.agents {
		agents = append(agents, l)
	}
	d.mu.Unlock()
	for _, b := range append(builds, builds2...) {
		for _, j := range b.Jobs {
			if j.Status != store.StatusQueued {
				continue
			}
			reason := ""
			if !anyFits(agents, j.RunsOn) {
				reason = fmt.Sprintf("%s[%s]", noAgent, strings.Join(j.RunsOn, " "))
			}
			if reason != j.Reason && (reason != "" || strings.HasPrefix(j.Reason, noAgent)) {
				if err := d.builds.Explain(ctx, b.ID, j.ID, reason); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func anyFits(agents [][]string, want []string) bool {
	for _, labels := range agents {
		fits := true
		for _, w := range want {
			if !slices.Contains(labels, w) {
				fits = false
				break
			}
		}
		if fits {
			return true
		}
	}
	return false
}
