// Package build is the life of a build on the server: created from a
// webhook, a manual trigger or a retry, with its jobs in one transaction;
// advanced as its jobs finish, by the same engine.Graph that orders jobs
// under `gantry run`; cancelled; and put back into a true state after a
// crash. It owns no goroutines and serves no HTTP: api and hook call it, and
// it tells the dispatcher when jobs become queued.
package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// PipelineFile is where a build's pipeline is read from, at its commit.
const PipelineFile = ".gantry.yml"

// createTimeout bounds the fetch and parse of a new build.
const createTimeout = 5 * time.Minute

// ErrNotFinished: a build that has not finished cannot be retried.
var ErrNotFinished = errors.New("build has not finished")

// ErrDeployment: the build of a deployment is not retried; a deployment
// is asked for again (gantry deploy, gantry rollback), which records it.
var ErrDeployment = errors.New("it runs a deployment: deploy the release again instead (gantry deploy, gantry rollback)")

// Options configure a Service.
type Options struct {
	// BuildForks builds pull requests from forks. Off by default: their
	// pipeline is a stranger's code.
	BuildForks bool
	// Finished, if set, is called once when a build reaches a final status.
	Finished func(b *store.Build)
}

// Service creates and advances builds.
type Service struct {
	store   store.Store
	mirrors *git.Mirrors
	log     *slog.Logger
	opts    Options
	// Changed is called after a build changed, outside any transaction:
	// the dispatcher wakes agents, the event stream tells subscribers.
	changed func(b *store.Build)
}

// New returns a Service. changed may be nil.
func New(st store.Store, mirrors *git.Mirrors, log *slog.Logger, changed func(*store.Build), opts ...Options) *Service {
	if changed == nil {
		changed = func(*store.Build) {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return &Service{store: st, mirrors: mirrors, log: log, changed: changed, opts: o}
}

// Trigger is what asks for a build.
type Trigger struct {
	plan.Trigger
	DeliveryID  string
	PullRequest int
	Title       string
	Author      string
	Message     string
	// Before is the commit a push replaced, to find changed paths when the
	// forge did not list them.
	Before string
	// FromFork marks a pull request whose head lives in another
	// repository: a stranger's code and pipeline.
	FromFork bool
}

// Create makes a build of repo for t: it fetches the commit, reads and
// parses its pipeline file, applies the pipeline's `on` filters, and stores
// the build and its jobs in one transaction. A pipeline that cannot be read
// or parsed gives a build in error with the reason; one that `on` excludes
// gives a skipped build with the reason. created is false when a build for
// the same delivery exists already: it is returned instead.
func (s *Service) Create(ctx context.Context, repo *store.Repo, t Trigger) (b *store.Build, created bool, err error) {
	// A forge that hangs up (GitHub waits 10s) must not lose the push: the
	// fetch of a large repo may take longer than the request lives.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	b = &store.Build{
		RepoID: repo.ID, Repo: repo.Name, Status: store.StatusQueued,
		Event: t.Event, Branch: t.Branch, Tag: t.Tag, Commit: t.Commit, BaseBranch: t.BaseBranch,
		PullRequest: t.PullRequest, Title: t.Title, Author: t.Author, Message: t.Message,
		DeliveryID: t.DeliveryID, FromFork: t.FromFork,
	}
	p := s.prepare(ctx, repo, t, b)
	var older []*store.Build
	mode := spec.ConcurrencyParallel
	if p != nil && !store.Finished(b.Status) {
		mode = p.ConcurrencyMode(b.Event)
		if mode != spec.ConcurrencyParallel {
			if older, err = s.unfinished(ctx, b); err != nil {
				return nil, false, err
			}
		}
		if mode == spec.ConcurrencyQueue && len(older) > 0 {
			block(b, older[0])
		}
	}
	if err := s.store.CreateBuild(ctx, b); err != nil {
		if errors.Is(err, store.ErrConflict) && b.ID != 0 {
			existing, err := s.store.Build(ctx, b.ID)
			return existing, false, err
		}
		return nil, false, fmt.Errorf("create build of %s: %w", repo.Name, err)
	}
	switch {
	case mode == spec.ConcurrencyCancel:
		for _, o := range older {
			if _, err := s.Cancel(ctx, o.ID, fmt.Sprintf("superseded by build #%d", b.Number)); err != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "cancel superseded build", slog.Int64("build", o.ID), slog.Any("err", err))
			}
		}
	case blocked(b):
		// The build it waits for may have finished before this one was
		// stored, and so never released it: look again now.
		s.release(ctx, b)
		if nb, err := s.store.Build(ctx, b.ID); err == nil {
			b = nb
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "build created", slog.String("repo", repo.Name), slog.Int64("build", b.ID),
		slog.Int64("number", b.Number), slog.String("status", b.Status), slog.String("event", b.Event), slog.String("commit", b.Commit))
	if store.Finished(b.Status) && s.opts.Finished != nil {
		s.opts.Finished(b)
	}
	s.changed(b)
	return b, true, nil
}

// prepare fills in b's pipeline, jobs and first decisions, or its reason
// for not running; it returns the parsed pipeline when there is one.
func (s *Service) prepare(ctx context.Context, repo *store.Repo, t Trigger, b *store.Build) *spec.Pipeline {
	finish := func(status, reason string) {
		b.Status, b.Reason = status, reason
		b.FinishedAt = time.Now()
	}
	if t.FromFork && !s.opts.BuildForks {
		finish(store.StatusSkipped, "pull request from a fork: not built, because its pipeline would run a stranger's code on this server's agents (start the server with --build-forks to allow it)")
		return nil
	}
	m := s.mirrors.Get(repo.Name, repo.CloneURL)
	if len(t.Commit) < 40 && t.Commit != "" {
		// Bitbucket sends pull request heads abbreviated.
		full, err := m.ResolveCommit(ctx, t.Commit)
		if err != nil {
			finish(store.StatusError, err.Error())
			return nil
		}
		t.Commit, b.Commit = full, full
	}
	if err := m.Fetch(ctx, t.Commit); err != nil {
		finish(store.StatusError, err.Error())
		return nil
	}
	data, err := m.ReadFile(ctx, t.Commit, PipelineFile)
	if errors.Is(err, fs.ErrNotExist) {
		finish(store.StatusSkipped, fmt.Sprintf("no %s at commit %s", PipelineFile, short(t.Commit)))
		return nil
	}
	if err != nil {
		finish(store.StatusError, err.Error())
		return nil
	}
	b.Pipeline = data
	p, err := spec.Parse(PipelineFile, data)
	if err != nil {
		finish(store.StatusError, "invalid pipeline file:\n"+err.Error())
		return nil
	}
	pt := t.Trigger
	if pt.ChangedPaths == nil && t.Before != "" && t.Event == plan.EventPush {
		if paths, err := m.ChangedPaths(ctx, t.Before, t.Commit); err == nil {
			pt.ChangedPaths = paths
		}
	}
	if ok, why := plan.Match(p.On, pt); !ok {
		finish(store.StatusSkipped, why)
		return p
	}
	pl := plan.New(p, pt)
	if err := s.setLimits(ctx, pl); err != nil {
		finish(store.StatusError, err.Error())
		return nil
	}
	for i, j := range pl.Jobs {
		b.Jobs = append(b.Jobs, &store.Job{Name: j.Name, Position: i, Status: store.StatusPending, RunsOn: j.RunsOn, Locks: j.Locks, ExitCode: -1})
	}
	advance(b, pl, time.Now())
	return p
}

// setLimits makes the locks that a plan's concurrency limits stand for,
// with the capacities the pipeline file gives them now.
func (s *Service) setLimits(ctx context.Context, pl *plan.Plan) error {
	for name, n := range pl.Limits {
		if err := s.store.SetLock(ctx, &store.Lock{Name: name, Capacity: n}); err != nil {
			return fmt.Errorf("concurrency limit: %w", err)
		}
	}
	return nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Plan rebuilds the plan a build runs from its stored pipeline.
func Plan(b *store.Build) (*plan.Plan, error) {
	p, err := spec.Parse(PipelineFile, b.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("build %d: stored pipeline: %w", b.ID, err)
	}
	return plan.New(p, TriggerOf(b)), nil
}

// TriggerOf is the plan trigger of a stored build.
func TriggerOf(b *store.Build) plan.Trigger {
	return plan.Trigger{Event: b.Event, Branch: b.Branch, Tag: b.Tag, Commit: b.Commit, Repo: b.Repo,
		BaseBranch: b.BaseBranch, BuildNumber: int(b.Number), Environment: b.Environment, Release: b.Release}
}

// advance replays the build's job statuses through an engine.Graph and
// applies what the graph decides now: pending jobs whose needs are done
// become queued or skipped. It then derives the build's status. It is
// deterministic, so replaying a build twice decides nothing new.
func advance(b *store.Build, pl *plan.Plan, now time.Time) {
	jobs := make(map[string]*store.Job, len(b.Jobs))
	for _, j := range b.Jobs {
		jobs[j.Name] = j
	}
	apply := func(ds []engine.Decision) {
		for _, d := range ds {
			j := jobs[d.Job]
			if j == nil || store.Finished(j.Status) {
				continue
			}
			j.Status, j.Reason = string(d.Status), d.Reason
			j.FinishedAt = now
		}
	}
	g := engine.NewGraph(pl)
	apply(g.Start())
	for {
		pj := g.Next()
		if pj == nil {
			break
		}
		j := jobs[pj.Name]
		if j == nil {
			continue
		}
		switch {
		case store.Finished(j.Status):
			apply(g.Finish(pj.Name, engine.Status(j.Status)))
		case j.Status == store.StatusPending:
			j.Status = store.StatusQueued
			j.QueuedAt = now
		}
	}
	summarize(b, now)
}

// summarize derives a build's status from its jobs'.
func summarize(b *store.Build, now time.Time) {
	if store.Finished(b.Status) && len(b.Jobs) == 0 {
		return
	}
	rank := map[string]int{store.StatusFailure: 4, store.StatusError: 3, store.StatusCancelled: 2}
	running, done, worst := false, true, ""
	allSkipped := len(b.Jobs) > 0
	for _, j := range b.Jobs {
		if !store.Finished(j.Status) {
			done = false
		}
		if j.Status == store.StatusRunning {
			running = true
		}
		if j.Status != store.StatusSkipped {
			allSkipped = false
		}
		if rank[j.Status] > rank[worst] {
			worst = j.Status
		}
	}
	switch {
	case done && allSkipped:
		b.Status = store.StatusSkipped
	case done && worst != "":
		b.Status = worst
	case done:
		b.Status = store.StatusSuccess
	case running:
		b.Status = store.StatusRunning
	default:
		if b.Status != store.StatusRunning {
			b.Status = store.StatusQueued
		}
	}
	if done && b.FinishedAt.IsZero() {
		b.FinishedAt = now
	}
	if !done && b.Status == store.StatusRunning && b.StartedAt.IsZero() {
		b.StartedAt = now
	}
}

// jobUnderLease returns the job jobID of b if it runs under token.
func jobUnderLease(b *store.Build, jobID, token int64) (*store.Job, error) {
	for _, j := range b.Jobs {
		if j.ID == jobID {
			if j.Status != store.StatusRunning || j.LeaseToken != token {
				return nil, store.ErrStaleLease
			}
			return j, nil
		}
	}
	return nil, store.ErrNotFound
}

// Started records that a leased job started running on its agent.
func (s *Service) Started(ctx context.Context, buildID, jobID, token int64) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		j, err := jobUnderLease(b, jobID, token)
		if err != nil {
			return err
		}
		now := time.Now()
		if j.StartedAt.IsZero() {
			j.StartedAt = now
		}
		summarize(b, now)
		return nil
	})
}

// Steps records step events of a job running under token: a step that
// started, or finished. It refuses them with store.ErrStaleLease when the
// lease was taken away.
func (s *Service) Steps(ctx context.Context, buildID, jobID, token int64, events []engine.Event) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		j, err := jobUnderLease(b, jobID, token)
		if err != nil {
			return err
		}
		for _, ev := range events {
			for len(j.Steps) <= ev.StepIndex {
				j.Steps = append(j.Steps, &store.Step{Index: len(j.Steps), Status: store.StatusPending, ExitCode: -1})
			}
			st := j.Steps[ev.StepIndex]
			st.Name = ev.Step
			switch ev.Type {
			case engine.StepStarted:
				st.Status, st.Attempts = store.StatusRunning, ev.Attempt
				if st.StartedAt.IsZero() {
					st.StartedAt = ev.Time
				}
			case engine.StepFinished:
				st.Status, st.Reason, st.ExitCode = string(ev.Status), ev.Reason, ev.ExitCode
				if ev.Attempt > 0 {
					st.Attempts = ev.Attempt
				}
				st.FinishedAt = ev.Time
			}
		}
		return nil
	})
}

// Finish records how a job running under token ended and decides what runs
// next.
func (s *Service) Finish(ctx context.Context, buildID, jobID, token int64, res *engine.JobResult) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		j, err := jobUnderLease(b, jobID, token)
		if err != nil {
			return err
		}
		now := time.Now()
		j.Status, j.Reason, j.FinishedAt = string(res.Status), res.Reason, now
		j.LeaseExpires = time.Time{}
		// The job's exit code is that of the step that decided it.
		j.ExitCode = -1
		if res.Status == engine.Success {
			j.ExitCode = 0
		}
		decided := false
		for i, sr := range res.Steps {
			for len(j.Steps) <= i {
				j.Steps = append(j.Steps, &store.Step{Index: len(j.Steps)})
			}
			st := j.Steps[i]
			st.Name, st.Status, st.Reason, st.ExitCode, st.Attempts = sr.Name, string(sr.Status), sr.Reason, sr.ExitCode, sr.Attempts
			if st.FinishedAt.IsZero() && sr.Status != engine.Skipped {
				st.FinishedAt = now
			}
			if !decided && sr.Status != engine.Success && sr.Status != engine.Skipped {
				j.ExitCode, decided = sr.ExitCode, true
			}
		}
		return s.advanceStored(b, now)
	})
}

// Fail ends a job as error with reason and decides what runs next. With a
// token, only the lease that token names is ended, and only if it has
// expired (an agent lost); with 0, the job ends whoever holds it.
func (s *Service) Fail(ctx context.Context, buildID, jobID, token int64, reason string) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		now := time.Now()
		for _, j := range b.Jobs {
			if j.ID == jobID && !store.Finished(j.Status) && (token == 0 || expired(j, token, now)) {
				j.Status, j.Reason, j.FinishedAt = store.StatusError, reason, now
				j.LeaseExpires = time.Time{}
				endSteps(j, store.StatusError, reason, now)
			}
		}
		return s.advanceStored(b, now)
	})
}

// Explain sets the reason of a queued job (why it waits).
func (s *Service) Explain(ctx context.Context, buildID, jobID int64, reason string) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		for _, j := range b.Jobs {
			if j.ID == jobID && j.Status == store.StatusQueued {
				j.Reason = reason
			}
		}
		return nil
	})
}

// expired reports whether j still runs under the lease token, and that
// lease has run out: checked inside the update, so a heartbeat that came
// in between keeps the job with its agent.
func expired(j *store.Job, token int64, now time.Time) bool {
	return j.Status == store.StatusRunning && j.LeaseToken == token && !j.LeaseExpires.IsZero() && j.LeaseExpires.Before(now)
}

// Requeue hands a job whose lease (token) expired to another agent.
func (s *Service) Requeue(ctx context.Context, buildID, jobID, token int64, reason string) error {
	return s.requeue(ctx, buildID, jobID, reason, func(j *store.Job, now time.Time) bool { return expired(j, token, now) })
}

// Withdraw takes a job from its agent at once, whether or not its lease
// ran out (the agent's token was revoked): the job is queued for another
// agent when requeue, else it fails with reason. Fenced by token, like
// every write about a lease.
func (s *Service) Withdraw(ctx context.Context, buildID, jobID, token int64, reason string, requeue bool) error {
	held := func(j *store.Job, _ time.Time) bool { return j.Status == store.StatusRunning && j.LeaseToken == token }
	if requeue {
		return s.requeue(ctx, buildID, jobID, reason, held)
	}
	return s.update(ctx, buildID, func(b *store.Build) error {
		now := time.Now()
		for _, j := range b.Jobs {
			if j.ID == jobID && held(j, now) {
				j.Status, j.Reason, j.FinishedAt = store.StatusError, reason, now
				j.LeaseExpires = time.Time{}
				endSteps(j, store.StatusError, reason, now)
			}
		}
		return s.advanceStored(b, now)
	})
}

func (s *Service) requeue(ctx context.Context, buildID, jobID int64, reason string, ok func(j *store.Job, now time.Time) bool) error {
	return s.update(ctx, buildID, func(b *store.Build) error {
		now := time.Now()
		for _, j := range b.Jobs {
			if j.ID == jobID && ok(j, now) {
				j.Status, j.Reason, j.QueuedAt = store.StatusQueued, reason, now
				j.Agent, j.LeaseExpires, j.Steps = "", time.Time{}, nil
			}
		}
		summarize(b, now)
		return nil
	})
}

// Needs is what each job that job needs ended as, for needs.<job> in its
// expressions.
func Needs(b *store.Build, pl *plan.Plan, job string) map[string]string {
	g := engine.NewGraph(pl)
	status := map[string]string{}
	for _, j := range b.Jobs {
		status[j.Name] = j.Status
	}
	g.Start()
	for pj := g.Next(); pj != nil; pj = g.Next() {
		if st := status[pj.Name]; store.Finished(st) {
			g.Finish(pj.Name, engine.Status(st))
		}
	}
	return g.Needs(job)
}

// endSteps ends the steps of j that are still running.
func endSteps(j *store.Job, status, reason string, now time.Time) {
	for _, st := range j.Steps {
		if st.Status == store.StatusRunning {
			st.Status, st.Reason, st.FinishedAt = status, reason, now
		}
	}
}

// advanceStored advances b by its stored pipeline. A pipeline that no
// longer parses (a server downgraded past a key it uses) cannot decide
// anything: the build's unfinished jobs end as error with the reason,
// rather than staying queued or running for ever.
func (s *Service) advanceStored(b *store.Build, now time.Time) error {
	pl, err := Plan(b)
	if err != nil {
		reason := "this server cannot read the build's pipeline: " + err.Error()
		for _, j := range b.Jobs {
			if !store.Finished(j.Status) {
				j.Status, j.Reason, j.FinishedAt = store.StatusError, reason, now
				j.LeaseExpires = time.Time{}
				endSteps(j, store.StatusError, reason, now)
			}
		}
		summarize(b, now)
		return nil
	}
	advance(b, pl, now)
	return nil
}

// Cancel stops a build: queued and pending jobs end as cancelled, and
// running ones lose their lease, which stops them on their agent. It is not
// an error to cancel a finished build; nothing changes.
func (s *Service) Cancel(ctx context.Context, buildID int64, reason string) (*store.Build, error) {
	var out *store.Build
	err := s.update(ctx, buildID, func(b *store.Build) error {
		out = b
		if store.Finished(b.Status) {
			return nil
		}
		now := time.Now()
		for _, j := range b.Jobs {
			if !store.Finished(j.Status) {
				j.Status, j.Reason, j.FinishedAt = store.StatusCancelled, reason, now
				j.LeaseExpires = time.Time{}
				endSteps(j, store.StatusCancelled, reason, now)
			}
		}
		b.Reason = reason
		summarize(b, now)
		return nil
	})
	return out, err
}

// Retry makes a new build of the same commit and pipeline as a finished
// one. With failedOnly, jobs that succeeded are carried over as they were
// and only the others run again.
func (s *Service) Retry(ctx context.Context, buildID int64, failedOnly bool) (*store.Build, error) {
	old, err := s.store.Build(ctx, buildID)
	if err != nil {
		return nil, err
	}
	if !store.Finished(old.Status) {
		return nil, fmt.Errorf("retry build %d: %w (it is %s)", buildID, ErrNotFinished, old.Status)
	}
	if old.Event == plan.EventDeploy {
		return nil, fmt.Errorf("retry build %d: %w", buildID, ErrDeployment)
	}
	b := &store.Build{
		RepoID: old.RepoID, Repo: old.Repo, Status: store.StatusQueued, Event: old.Event, Branch: old.Branch,
		Tag: old.Tag, Commit: old.Commit, BaseBranch: old.BaseBranch, PullRequest: old.PullRequest,
		Title: old.Title, Author: old.Author, Message: old.Message, Pipeline: old.Pipeline, RetryOf: old.ID,
		FromFork: old.FromFork, // a retry of a stranger's code is still a stranger's code
	}
	if len(old.Pipeline) == 0 {
		// Nothing ran the first time (no or invalid pipeline): start over.
		repo, err := s.store.Repo(ctx, old.Repo)
		if err != nil {
			return nil, err
		}
		s.prepare(ctx, repo, Trigger{Trigger: TriggerOf(old), PullRequest: old.PullRequest, Title: old.Title, Author: old.Author,
			Message: old.Message, FromFork: old.FromFork}, b)
	} else {
		pl, err := Plan(old)
		if err != nil {
			return nil, err
		}
		if err := s.setLimits(ctx, pl); err != nil {
			return nil, err
		}
		prev := map[string]*store.Job{}
		for _, j := range old.Jobs {
			prev[j.Name] = j
		}
		now := time.Now()
		for i, pj := range pl.Jobs {
			j := &store.Job{Name: pj.Name, Position: i, Status: store.StatusPending, RunsOn: pj.RunsOn, Locks: pj.Locks, ExitCode: -1}
			// A job with artifacts runs again: they belong to the build
			// that made them, and this build's release needs its own.
			if p := prev[pj.Name]; failedOnly && p != nil && p.Status == store.StatusSuccess && len(pj.Artifacts) == 0 {
				j.Status, j.Reason, j.ExitCode = store.StatusSuccess, fmt.Sprintf("passed in build %d", old.Number), p.ExitCode
				j.StartedAt, j.FinishedAt, j.Steps = p.StartedAt, p.FinishedAt, p.Steps
			}
			b.Jobs = append(b.Jobs, j)
		}
		advance(b, pl, now)
	}
	if err := s.store.CreateBuild(ctx, b); err != nil {
		return nil, fmt.Errorf("retry build %d: %w", buildID, err)
	}
	s.changed(b)
	return b, nil
}

// Recover puts every build back into a true state after the server
// stopped without draining: jobs that were running on its built-in agent
// (named agent) end as error with the reason "server restarted", and the
// graph decides what runs next; queued builds stay queued. Jobs of other
// agents are left to them: a live agent goes on heartbeating, a dead one's
// lease runs out.
func (s *Service) Recover(ctx context.Context, agent string) error {
	ids, err := s.store.BuildIDs(ctx, store.StatusQueued, store.StatusRunning)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var waiting []*store.Build
	for _, id := range ids {
		err := s.update(ctx, id, func(b *store.Build) error {
			if blocked(b) {
				waiting = append(waiting, b)
				return nil
			}
			now := time.Now()
			for _, j := range b.Jobs {
				// Jobs of remote agents go on; if their agent is gone
				// too, their leases run out.
				if j.Status == store.StatusRunning && j.Agent == agent {
					j.Status, j.Reason, j.FinishedAt = store.StatusError, "server restarted", now
					j.LeaseExpires = time.Time{}
					endSteps(j, store.StatusError, "server restarted", now)
				}
			}
			if len(b.Pipeline) == 0 {
				summarize(b, now)
				return nil
			}
			return s.advanceStored(b, now)
		})
		if err != nil {
			// One build that cannot be recovered must not keep the server
			// from starting.
			s.log.LogAttrs(ctx, slog.LevelError, "recover build", slog.Int64("build", id), slog.Any("err", err))
		}
	}
	// Builds that waited for one that finished while the server was down.
	for _, b := range waiting {
		s.release(ctx, b)
	}
	return nil
}

// concurrencyKey groups the builds that concurrency rules apply to: those
// of one pull request, one tag, or one branch.
func concurrencyKey(b *store.Build) string {
	switch {
	case b.Event == plan.EventDeploy:
		// Deployments take turns per environment (package delivery), and
		// never hold back or wait for the builds of their branch.
		return fmt.Sprintf("deploy:%d", b.ID)
	case b.Event == plan.EventPullRequest:
		return fmt.Sprintf("pr:%d", b.PullRequest)
	case b.Tag != "":
		return "tag:" + b.Tag
	}
	return "branch:" + b.Branch
}

// unfinished returns the unfinished builds older than b with its
// concurrency key, oldest first.
func (s *Service) unfinished(ctx context.Context, b *store.Build) ([]*store.Build, error) {
	builds, err := s.store.Builds(ctx, store.BuildFilter{Repo: b.Repo, Branch: b.Branch, Unfinished: true, Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("concurrency of build of %s: %w", b.Repo, err)
	}
	key := concurrencyKey(b)
	var out []*store.Build
	for i := len(builds) - 1; i >= 0; i-- {
		o := builds[i]
		if (b.ID == 0 || o.ID < b.ID) && !store.Finished(o.Status) && concurrencyKey(o) == key {
			out = append(out, o)
		}
	}
	return out, nil
}

// block holds every job of b until the builds before it finish.
func block(b *store.Build, first *store.Build) {
	for _, j := range b.Jobs {
		j.Status, j.Reason, j.QueuedAt, j.FinishedAt = store.StatusPending, fmt.Sprintf("waiting for build #%d", first.Number), time.Time{}, time.Time{}
	}
	b.Status, b.Reason = store.StatusQueued, fmt.Sprintf("waiting for build #%d to finish (concurrency: queue)", first.Number)
}

// blocked reports whether b waits for builds before it: queued with every
// job pending. (A build that may run has at least one job decided.)
func blocked(b *store.Build) bool {
	if b.Status != store.StatusQueued || len(b.Jobs) == 0 {
		return false
	}
	for _, j := range b.Jobs {
		if j.Status != store.StatusPending {
			return false
		}
	}
	return true
}

// release lets the oldest build that waits behind done go, if nothing
// else unfinished stands before it.
func (s *Service) release(ctx context.Context, done *store.Build) {
	builds, err := s.store.Builds(ctx, store.BuildFilter{Repo: done.Repo, Branch: done.Branch, Blocked: true, Limit: 1000})
	if err != nil {
		return
	}
	key := concurrencyKey(done)
	for i := len(builds) - 1; i >= 0; i-- {
		w := builds[i]
		if concurrencyKey(w) != key || !blocked(w) {
			continue
		}
		before, err := s.unfinished(ctx, w)
		if err != nil {
			return
		}
		if len(before) > 0 {
			return // the oldest waiting build still waits
		}
		s.update(ctx, w.ID, func(b *store.Build) error {
			if !blocked(b) {
				return nil
			}
			b.Reason = ""
			for _, j := range b.Jobs {
				j.Reason = ""
			}
			return s.advanceStored(b, time.Now())
		})
		return
	}
}

func (s *Service) update(ctx context.Context, buildID int64, fn func(*store.Build) error) error {
	var changed *store.Build
	wasFinished := false
	err := s.store.Update(ctx, buildID, func(b *store.Build) error {
		wasFinished = store.Finished(b.Status)
		if err := fn(b); err != nil {
			return err
		}
		changed = b
		return nil
	})
	if err != nil {
		return err
	}
	// Finished first: whoever hears of the change may read the figures
	// it updates.
	done := store.Finished(changed.Status) && !wasFinished
	if done && s.opts.Finished != nil {
		s.opts.Finished(changed)
	}
	s.changed(changed)
	if done {
		s.release(ctx, changed)
	}
	return nil
}
