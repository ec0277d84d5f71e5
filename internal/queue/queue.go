// Package queue hands queued jobs to agents. An idle agent blocks in Lease
// and is woken the moment a job is queued (no polling tick); a lease is
// kept alive by heartbeats and carries a fencing token, so an agent whose
// lease was taken away (expired, cancelled) has its reports refused and a
// job never has two writers. The built-in agent calls a Dispatcher
// directly; remote agents reach the same methods over HTTP.
package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantry-ci/gantry/internal/artifact"
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
	// Secrets are the values of the secrets the job names, by name,
	// decrypted for this lease alone: never stored, logged or shown.
	Secrets map[string]string `json:"secrets,omitempty"`
	// Artifacts, on a deployment's job, are the artifacts of the release
	// it deploys, to place in the workspace before the first step.
	Artifacts []ArtifactRef `json:"artifacts,omitempty"`
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
	// Secrets, if set, returns the values of the secrets of repo a job
	// names, or an error that says which are missing or unreadable: the
	// job then fails with it. env is the environment a deployment's job
	// deploys to, whose scoped secrets it gets; "" for a build job, which
	// gets unscoped ones only. Unset, a job that names secrets fails.
	Secrets func(ctx context.Context, repo, env string, names []string) (map[string]string, error)
	// Artifacts keeps the bytes of artifacts; nil refuses uploads.
	Artifacts *artifact.Store
}

// Dispatcher leases jobs to agents.
type Dispatcher struct {
	store  store.Store
	builds *build.Service
	opts   Options
	log    *slog.Logger

	mu      sync.Mutex
	wake    chan struct{}         // closed and replaced by Notify
	agents  map[string]*seenAgent // agents that asked this server for work
	waiting map[string]int        // agent name -> its calls blocked in Lease now

	notifier store.Notifier // the store's, when several servers share it
	notify   chan struct{}  // a pending NotifyQueued
}

// seenAgent is an agent as this server last saw it.
type seenAgent struct {
	store.Agent
	saved time.Time // when it was last written to the store
}

// Online is how recently an agent must have asked for work or sent a
// heartbeat to count as online. An idle remote agent asks at least every
// LongPoll.
const Online = 60 * time.Second

// LongPoll is how long the server holds an idle agent's request for work
// before it answers "nothing" and the agent asks again.
const LongPoll = 25 * time.Second

// New returns a Dispatcher over st.
func New(st store.Store, builds *build.Service, log *slog.Logger, opts Options) *Dispatcher {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{store: st, builds: builds, opts: opts, log: log, wake: make(chan struct{}),
		agents: map[string]*seenAgent{}, waiting: map[string]int{}, notify: make(chan struct{}, 1)}
	d.notifier, _ = st.(store.Notifier)
	return d
}

// Notify wakes every agent waiting in Lease: jobs may have been queued.
// On a store that several servers share it wakes theirs too.
func (d *Dispatcher) Notify() {
	d.wakeLocal()
	if d.notifier != nil {
		select {
		case d.notify <- struct{}{}:
		default: // one is pending already: it covers this one
		}
	}
}

func (d *Dispatcher) wakeLocal() {
	d.mu.Lock()
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
}

// relay sends the store's notifications of this server, one at a time (a
// burst of Notify calls becomes one or two), and wakes this server's agents
// for every notification of any server, until ctx ends.
func (d *Dispatcher) relay(ctx context.Context) {
	go d.notifier.ListenQueued(ctx, d.wakeLocal)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.notify:
		}
		if err := d.notifier.NotifyQueued(ctx); err != nil && ctx.Err() == nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "notify other servers", slog.Any("err", err))
		}
	}
}

func (d *Dispatcher) waitChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wake
}

// Seen records that an agent is alive and what it says of itself; it
// writes to the store at most every few seconds per agent, and at once
// when what it says changed.
func (d *Dispatcher) Seen(ctx context.Context, a *store.Agent) error {
	d.seen(ctx, a)
	return nil
}

func (d *Dispatcher) seen(ctx context.Context, a *store.Agent) {
	d.mu.Lock()
	prev := d.agents[a.Name]
	if prev == nil {
		prev = &seenAgent{}
		d.agents[a.Name] = prev
	}
	changed := !slices.Equal(prev.Labels, a.Labels) || prev.Capacity != a.Capacity || prev.Version != a.Version ||
		prev.Draining != a.Draining || prev.TokenID != a.TokenID
	due := changed || time.Since(prev.saved) > 5*time.Second
	prev.Agent = *a
	prev.LastSeen = time.Now()
	if due {
		prev.saved = time.Now()
	}
	d.mu.Unlock()
	if due {
		if err := d.store.SaveAgent(ctx, a); err != nil && ctx.Err() == nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "save agent", slog.String("agent", a.Name), slog.Any("err", err))
		}
	}
}

// seenByName returns what this server knows of an agent, or nil.
func (d *Dispatcher) seenByName(name string) *store.Agent {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a := d.agents[name]; a != nil {
		c := a.Agent
		return &c
	}
	return nil
}

// Lease blocks until a queued job fits the agent's labels, and hands it
// out; it returns ctx's error when ctx ends first.
func (d *Dispatcher) Lease(ctx context.Context, self *store.Agent) (*Assignment, error) {
	d.seen(ctx, self)
	d.mu.Lock()
	d.waiting[self.Name]++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.waiting[self.Name]--; d.waiting[self.Name] <= 0 {
			delete(d.waiting, self.Name)
		}
		d.mu.Unlock()
	}()
	agent, labels := self.Name, self.Labels
	for {
		// Take the wake channel before looking, so a Notify between the
		// look and the wait is not lost.
		wake := d.waitChan()
		// The store's Lease does not wait; it runs to the end even when
		// ctx ends meanwhile, so that a lease is never made without the
		// caller knowing (a commit cut off by ctx may have happened).
		b, j, err := d.store.Lease(context.WithoutCancel(ctx), agent, labels, d.opts.LeaseTTL)
		switch {
		case err == nil:
			a, err := d.assignment(context.WithoutCancel(ctx), b, j)
			if err != nil {
				// A build whose stored pipeline no longer parses cannot
				// run, nor a job whose secrets are not set.
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

func (d *Dispatcher) assignment(ctx context.Context, b *store.Build, j *store.Job) (*Assignment, error) {
	pl, err := build.Plan(b)
	if err != nil {
		return nil, err
	}
	repo := b.Repo
	cloneURL := ""
	if r, err := d.store.Repo(ctx, repo); err == nil {
		cloneURL = r.CloneURL
	}
	a := &Assignment{
		BuildID: b.ID, JobID: j.ID, Token: j.LeaseToken, Job: j.Name, Repo: repo, CloneURL: cloneURL,
		Commit: b.Commit, Pipeline: b.Pipeline, Trigger: pl.Trigger, Needs: build.Needs(b, pl, j.Name),
		LeaseTTL: d.opts.LeaseTTL,
	}
	if err := d.addSecrets(ctx, b, j, pl, a); err != nil {
		return nil, err
	}
	if err := d.addArtifacts(ctx, b, a); err != nil {
		return nil, err
	}
	return a, nil
}

// Heartbeat keeps a lease alive; store.ErrStaleLease means the agent must
// stop the job: it was cancelled or handed to someone else.
func (d *Dispatcher) Heartbeat(ctx context.Context, a *Assignment) error {
	return d.store.Renew(ctx, a.JobID, a.Token, d.opts.LeaseTTL)
}

// Withdraw takes every running job of the agents that used an agent token
// away from them at once (the token was revoked): each goes to another
// agent, up to Retries times, or fails.
func (d *Dispatcher) Withdraw(ctx context.Context, tokenID int64, reason string) error {
	agents, err := d.store.Agents(ctx)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, a := range agents {
		if a.TokenID == tokenID {
			names[a.Name] = true
		}
	}
	jobs, err := d.store.RunningJobs(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if !names[j.Agent] {
			continue
		}
		d.log.LogAttrs(ctx, slog.LevelWarn, "job withdrawn", slog.Int64("build", j.BuildID), slog.String("job", j.Name),
			slog.String("agent", j.Agent), slog.String("reason", reason))
		if err := d.builds.Withdraw(ctx, j.BuildID, j.ID, j.LeaseToken, reason, j.Attempt <= d.opts.Retries); err != nil {
			return err
		}
	}
	d.Notify()
	return nil
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
	if d.notifier != nil {
		go d.relay(ctx)
	}
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

// noAgent prefixes the reason of a queued job no online agent can take.
const noAgent = "waiting: no agent has labels "

// AgentState is an agent as `gantry agents` shows it.
type AgentState struct {
	store.Agent
	// State is idle, busy, draining or offline.
	State string
	// Running are the agent's running jobs.
	Running []*store.Job
}

// Agents returns every agent known to the store with its state and jobs.
func (d *Dispatcher) Agents(ctx context.Context) ([]*AgentState, error) {
	agents, err := d.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	jobs, err := d.store.RunningJobs(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*AgentState{}
	var out []*AgentState
	for _, a := range agents {
		if mine := d.seenByName(a.Name); mine != nil && mine.LastSeen.After(a.LastSeen) {
			a.LastSeen = mine.LastSeen
		}
		st := &AgentState{Agent: *a}
		byName[a.Name] = st
		out = append(out, st)
	}
	for _, j := range jobs {
		if st := byName[j.Agent]; st != nil {
			st.Running = append(st.Running, j)
		}
	}
	for _, st := range out {
		switch {
		case time.Since(st.LastSeen) > Online && len(st.Running) == 0:
			st.State = "offline"
		case st.Draining:
			st.State = "draining"
		case len(st.Running) >= max(st.Capacity, 1):
			st.State = "busy"
		default:
			st.State = "idle"
		}
	}
	return out, nil
}

// explain gives every queued job that no online agent can take right now
// the reason, so a `runs-on: [gpu]` says why it waits rather than waiting
// in silence.
func (d *Dispatcher) explain(ctx context.Context) error {
	builds, err := d.store.Builds(ctx, store.BuildFilter{Status: store.StatusQueued, Limit: 500})
	if err != nil {
		return err
	}
	builds2, err := d.store.Builds(ctx, store.BuildFilter{Status: store.StatusRunning, Limit: 500})
	if err != nil {
		return err
	}
	var queued []*store.Job
	for _, b := range append(builds, builds2...) {
		for _, j := range b.Jobs {
			if j.Status == store.StatusQueued {
				queued = append(queued, j)
			}
		}
	}
	if len(queued) == 0 {
		return nil
	}
	agents, err := d.Agents(ctx)
	if err != nil {
		return err
	}
	lw, err := d.lockWaits(ctx, queued)
	if err != nil {
		return err
	}
	for _, j := range queued {
		reason := lw.reason(j)
		if reason == "" {
			reason = Reason(agents, j.RunsOn)
		}
		if reason != j.Reason && (reason != "" || strings.HasPrefix(j.Reason, "waiting")) {
			if err := d.builds.Explain(ctx, j.BuildID, j.ID, reason); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockWait is what the queue's jobs wait for on locks.
type lockWait struct {
	capacity map[string]int           // of each lock that exists
	holders  map[string][]*store.Job  // running jobs holding each lock
	ahead    map[int64]map[string]int // queued job -> lock -> jobs ahead of it in line
}

// lockWaits reads the locks and who holds them, and for every queued job
// how many jobs are ahead of it in line for each of its locks.
func (d *Dispatcher) lockWaits(ctx context.Context, queued []*store.Job) (*lockWait, error) {
	lw := &lockWait{capacity: map[string]int{}, holders: map[string][]*store.Job{}, ahead: map[int64]map[string]int{}}
	locked := false
	for _, j := range queued {
		locked = locked || len(j.Locks) > 0
	}
	if !locked {
		return lw, nil
	}
	locks, err := d.store.Locks(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range locks {
		lw.capacity[l.Name] = l.Capacity
	}
	running, err := d.store.RunningJobs(ctx)
	if err != nil {
		return nil, err
	}
	for _, j := range running {
		for _, l := range j.Locks {
			lw.holders[l] = append(lw.holders[l], j)
		}
	}
	inLine := slices.Clone(queued)
	slices.SortStableFunc(inLine, func(a, b *store.Job) int {
		if c := queuedAt(a).Compare(queuedAt(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	seen := map[string]int{}
	for _, j := range inLine {
		if len(j.Locks) == 0 {
			continue
		}
		lw.ahead[j.ID] = map[string]int{}
		for _, l := range j.Locks {
			lw.ahead[j.ID][l] = seen[l]
			seen[l]++
		}
	}
	return lw, nil
}

func queuedAt(j *store.Job) time.Time {
	if j.QueuedAt.IsZero() {
		return j.CreatedAt
	}
	return j.QueuedAt
}

// reason says which of j's locks it waits for, or "" when it may take them
// all.
func (lw *lockWait) reason(j *store.Job) string {
	for _, l := range j.Locks {
		capacity, ok := lw.capacity[l]
		if !ok {
			return fmt.Sprintf("waiting for lock %s, which does not exist (gantry lock add %s --capacity N)", l, l)
		}
		held, ahead := lw.holders[l], lw.ahead[j.ID][l]
		if len(held)+ahead < capacity {
			continue
		}
		if ahead == 0 || len(held) >= capacity {
			var builds []string
			for _, h := range held {
				builds = append(builds, fmt.Sprint(h.BuildID))
			}
			slices.Sort(builds)
			builds = slices.Compact(builds)
			noun := "build"
			if len(builds) > 1 {
				noun = "builds"
			}
			return fmt.Sprintf("waiting for lock %s held by %s %s", l, noun, strings.Join(builds, ", "))
		}
		if ahead == 1 {
			return fmt.Sprintf("waiting for lock %s: 1 earlier job is in line for it", l)
		}
		return fmt.Sprintf("waiting for lock %s: %d earlier jobs are in line for it", l, ahead)
	}
	return ""
}

// Reason says why a queued job with these runs-on labels waits, given the
// agents: empty when an online agent that fits has a free slot.
func Reason(agents []*AgentState, want []string) string {
	fit := 0
	for _, a := range agents {
		if a.State == "offline" || !hasAll(a.Labels, want) {
			continue
		}
		fit++
		if a.State == "idle" {
			return ""
		}
	}
	switch {
	case fit == 0 && len(want) == 0:
		return "waiting: no agent is online"
	case fit == 0:
		return fmt.Sprintf("%s[%s]", noAgent, strings.Join(want, " "))
	case len(want) == 0:
		return fmt.Sprintf("waiting: all %d online agents are busy", fit)
	}
	return fmt.Sprintf("waiting: all %d agents with labels [%s] are busy", fit, strings.Join(want, " "))
}

func hasAll(labels, want []string) bool {
	for _, w := range want {
		if !slices.Contains(labels, w) {
			return false
		}
	}
	return true
}
