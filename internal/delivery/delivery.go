// Package delivery carries out continuous delivery on the server: it
// registers a release when a build that feeds an environment passes,
// takes requests to deploy, promote and roll back, and runs each
// deployment as a build of event deploy through the same queue and
// agents as every other job, one at a time per environment, in the order
// asked. Package deploy makes every decision; this package reads the
// store, applies them, and writes the outcome.
//
// It owns no goroutine but the one Run starts, which puts the world back
// in order after a crash: a deployment whose build ended while the
// server was down is ended, and a waiting one whose turn came is started.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// maxAuthors bounds the commits read for a release's authors.
const maxAuthors = 1000

// Service registers releases and runs deployments.
type Service struct {
	store   store.Store
	mirrors *git.Mirrors
	log     *slog.Logger
	// started is called with each deployment build stored, outside any
	// transaction: the dispatcher wakes agents, the event stream tells.
	started func(*store.Build)
	// kick asks Run to look now rather than at its next tick.
	kick chan struct{}
	// observer is told of every change of a deployment (Observe).
	observer func(Change)
}

// New returns a Service. started may be nil.
func New(st store.Store, mirrors *git.Mirrors, log *slog.Logger, started func(*store.Build)) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if started == nil {
		started = func(*store.Build) {}
	}
	return &Service{store: st, mirrors: mirrors, log: log, started: started, kick: make(chan struct{}, 1)}
}

// BuildFinished is told of every build that reached a final status (it is
// build.Options.Finished): a deployment's build ends its deployment and
// lets the next in its environment start; a green build that feeds an
// environment registers a release, which may start deployments. It never
// fails: what it cannot do now, Run does later.
func (s *Service) BuildFinished(b *store.Build) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.Event == plan.EventDeploy {
		s.ended(ctx, b)
		return
	}
	if b.Status != store.StatusSuccess {
		return
	}
	if _, err := s.Register(ctx, b); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "register release", slog.Int64("build", b.ID), slog.Any("err", err))
	}
}

// Register makes the release of a finished build when package deploy says
// it makes one, with the automatic deployments that come with it, and
// starts those whose turn it is. It returns nil and no error when the
// build makes no release; the existing release when it made one already.
func (s *Service) Register(ctx context.Context, b *store.Build) (*store.Release, error) {
	if len(b.Pipeline) == 0 {
		full, err := s.store.Build(ctx, b.ID)
		if err != nil {
			return nil, err
		}
		b = full
	}
	if len(b.Pipeline) == 0 {
		return nil, nil
	}
	p, err := s.rules(ctx, b)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "no release: the default branch's environments cannot be read",
			slog.Int64("build", b.ID), slog.Any("err", err))
		return nil, nil
	}
	makes, auto := deploy.Releases(p, b)
	if !makes {
		return nil, nil
	}
	if rel, err := s.store.ReleaseOfBuild(ctx, b.ID); err == nil {
		return rel, nil
	}
	rel := &store.Release{RepoID: b.RepoID, Version: deploy.Version(b), BuildID: b.ID, Commit: b.Commit,
		Branch: b.Branch, Tag: b.Tag}
	rel.Authors, rel.Issues = s.changes(ctx, b)
	var envs []string
	for _, e := range p.Environments {
		envs = append(envs, e.Name)
	}
	var deploys []*store.Deployment
	for _, env := range auto {
		d := &store.Deployment{Environment: env, Kind: deploy.KindAuto, State: store.DeployPending}
		if err := deploy.Admit(deploy.Request{Pipeline: p, Environment: env, Version: rel.Version, Kind: deploy.KindAuto}); err != nil {
			// Recorded, so that gantry envs says why nothing happened.
			d.State, d.Reason, d.FinishedAt = store.DeployFailed, "refused: "+err.Error(), time.Now()
		}
		deploys = append(deploys, d)
	}
	if err := s.store.CreateRelease(ctx, rel, envs, deploys); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if existing, err := s.store.ReleaseOfBuild(ctx, b.ID); err == nil {
				return existing, nil
			}
			return nil, fmt.Errorf("release %s of %s: a release of that version exists, from another build", rel.Version, b.Repo)
		}
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "release registered", slog.String("repo", rel.Repo), slog.String("version", rel.Version),
		slog.Int64("build", b.ID), slog.Int("artifacts", len(rel.Artifacts)))
	s.record(ctx, "release.create", "repo:"+rel.Repo, map[string]string{"version": rel.Version,
		"build": strconv.FormatInt(b.ID, 10), "commit": rel.Commit, "branch": rel.Branch, "tag": rel.Tag})
	for _, d := range deploys {
		s.record(ctx, "deployment.auto", "deployment:"+strconv.FormatInt(d.ID, 10), map[string]string{"repo": rel.Repo,
			"environment": d.Environment, "release": rel.Version, "state": d.State, "reason": d.Reason})
		told := *d
		told.RepoID, told.Repo, told.Version = rel.RepoID, rel.Repo, rel.Version
		s.tell(ctx, ChangeRequested, &told, "", "")
		if d.State == store.DeployFailed {
			s.tell(ctx, ChangeFailed, &told, "", "")
		}
	}
	for _, d := range deploys {
		if d.State == store.DeployPending {
			s.advance(ctx, rel.Repo, d.Environment)
			s.tellWaiting(ctx, d.ID)
		}
	}
	return rel, nil
}

// changes are the authors of the commits since the previous release of
// the same branch (or, for a tag, the previous tagged release), and the
// issue keys their messages name (issue.Keys); with none, or when git
// cannot tell, the build's commit's author and the keys the build names.
func (s *Service) changes(ctx context.Context, b *store.Build) (authors, issues []string) {
	prev := ""
	releases, err := s.store.ListReleases(ctx, store.ReleaseFilter{Repo: b.Repo, Branch: b.Branch, Limit: 50})
	if err == nil {
		for _, r := range releases {
			if (r.Tag != "") == (b.Tag != "") && r.Commit != b.Commit {
				prev = r.Commit
				break
			}
		}
	}
	messages := []string{b.Message}
	if s.mirrors != nil {
		repo, err := s.store.Repo(ctx, b.Repo)
		if err == nil {
			m := s.mirrors.Get(repo.Name, repo.CloneURL)
			if authors, err = m.Authors(ctx, prev, b.Commit, maxAuthors); err != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "release authors", slog.Int64("build", b.ID), slog.Any("err", err))
			}
			if msgs, err := m.Messages(ctx, prev, b.Commit, maxAuthors); err == nil && len(msgs) > 0 {
				messages = msgs
			}
		}
	}
	if len(authors) == 0 && b.Author != "" {
		authors = []string{b.Author}
	}
	return authors, releaseIssues(b, messages)
}

// Request is a person asking for a release to go to an environment.
type Request struct {
	Repo        string
	Environment string
	// Version names the release.
	Version string
	// Kind is deploy.KindDeploy, KindPromote or KindRollback.
	Kind string
	// By is who asks; Admin whether they are an admin.
	By    string
	Admin bool
	// OverrideFreeze, from an admin, is the reason to deploy through an
	// open freeze window.
	OverrideFreeze string
	// RollbackOf is the release a rollback replaces.
	RollbackOf int64
}

// Deploy asks for a release to go to an environment: it is refused (an
// error wrapping deploy.ErrRefused) unless deploy.Admit lets it, or while
// a freeze window is open there and no admin overrides it; forbidden (an
// error wrapping deploy.ErrForbidden) unless the person may deploy there
// (deploy.MayDeploy); else recorded as pending and started if its turn
// has come (and, where approvals are asked for, once they are given). It returns the
// deployment as it is then.
func (s *Service) Deploy(ctx context.Context, req Request) (*store.Deployment, error) {
	rel, p, err := s.release(ctx, req.Repo, req.Version)
	if err != nil {
		return nil, err
	}
	return s.request(ctx, req, rel, p)
}

func (s *Service) request(ctx context.Context, req Request, rel *store.Release, p *spec.Pipeline) (*store.Deployment, error) {
	err := deploy.Admit(deploy.Request{Pipeline: p, Environment: req.Environment, Version: rel.Version, Kind: req.Kind,
		SucceededIn: func(env string) bool { return s.succeededIn(ctx, rel, env) }})
	if err != nil {
		return nil, err
	}
	if err := s.mayRequest(ctx, req, p); err != nil {
		return nil, err
	}
	d := &store.Deployment{RepoID: rel.RepoID, Environment: req.Environment, ReleaseID: rel.ID, Kind: req.Kind,
		RequestedBy: req.By, RollbackOf: req.RollbackOf, State: store.DeployPending}
	if err := s.store.CreateDeployment(ctx, d); err != nil {
		return nil, err
	}
	if req.OverrideFreeze != "" {
		// Before advance, which would otherwise hold it in the window.
		if err := s.store.AddDecision(ctx, &store.Decision{DeploymentID: d.ID, User: req.By,
			Verdict: store.VerdictOverrideFreeze, Comment: req.OverrideFreeze}); err != nil {
			s.end(ctx, d, deploy.Fail, "could not record the freeze override: "+err.Error())
			return nil, err
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "deployment requested", slog.String("repo", req.Repo), slog.String("environment", req.Environment),
		slog.String("version", rel.Version), slog.String("kind", req.Kind), slog.String("by", req.By), slog.Int64("deployment", d.ID))
	told := *d
	told.Repo, told.Version = req.Repo, rel.Version
	s.tell(ctx, ChangeRequested, &told, req.By, "")
	s.advance(ctx, req.Repo, req.Environment)
	s.tellWaiting(ctx, d.ID)
	return s.store.Deployment(ctx, d.ID)
}

// release reads a release with the pipeline of its build.
func (s *Service) release(ctx context.Context, repo, version string) (*store.Release, *spec.Pipeline, error) {
	rel, err := s.store.Release(ctx, repo, version)
	if err != nil {
		return nil, nil, err
	}
	p, err := s.pipeline(ctx, rel)
	return rel, p, err
}

func (s *Service) pipeline(ctx context.Context, rel *store.Release) (*spec.Pipeline, error) {
	b, err := s.store.Build(ctx, rel.BuildID)
	if err != nil {
		return nil, err
	}
	p, err := s.rules(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", rel.Version, err)
	}
	return p, nil
}

// rules returns the pipeline whose environments govern where b's release
// may go (which branch feeds which environment, promote-from, and what
// comes later: approvals, freezes): the pipeline file at the head of the
// repo's default branch, as the mirror last fetched it. A branch's own
// file must not decide that its builds go to production; what a
// deployment runs is still the release's own file. The mirror's copy of
// the branch is as fresh as the last push; when it has none, the forge is
// asked. Without mirrors (unit tests of this package), b's own pipeline.
func (s *Service) rules(ctx context.Context, b *store.Build) (*spec.Pipeline, error) {
	data := b.Pipeline
	if s.mirrors != nil {
		repo, err := s.store.Repo(ctx, b.Repo)
		if err != nil {
			return nil, err
		}
		m := s.mirrors.Get(repo.Name, repo.CloneURL)
		head, ok := m.Local(ctx, "refs/heads/"+repo.DefaultBranch)
		if !ok {
			// Nothing pushed to it yet through this server: ask the forge.
			if head, err = m.Resolve(ctx, "refs/heads/"+repo.DefaultBranch); err != nil {
				return nil, fmt.Errorf("the default branch %s of %s, whose pipeline file decides where releases go: %w", repo.DefaultBranch, repo.Name, err)
			}
		}
		if head != b.Commit {
			if data, err = m.ReadFile(ctx, head, build.PipelineFile); err != nil {
				return nil, fmt.Errorf("the pipeline file of %s's default branch %s: %w", repo.Name, repo.DefaultBranch, err)
			}
		}
	}
	p, err := spec.Parse(build.PipelineFile, data)
	if err != nil {
		return nil, fmt.Errorf("this server cannot read the pipeline that decides where releases go: %w", err)
	}
	return p, nil
}

// succeededIn reports whether rel has a succeeded deployment in env.
func (s *Service) succeededIn(ctx context.Context, rel *store.Release, env string) bool {
	ds, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: rel.Repo, Environment: env, ReleaseID: rel.ID,
		States: []string{store.DeploySucceeded}, Limit: 1})
	return err == nil && len(ds) > 0
}

// live returns the newest succeeded deployment of an environment, or nil.
func (s *Service) live(ctx context.Context, repo, env string) (*store.Deployment, error) {
	ds, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: repo, Environment: env,
		States: []string{store.DeploySucceeded}, Limit: 1})
	if err != nil || len(ds) == 0 {
		return nil, err
	}
	return ds[0], nil
}

// Promote asks for a release to go from environment from to environment
// to, whose promote-from must be from: the one named, or, with version
// empty, the one live in from.
func (s *Service) Promote(ctx context.Context, repo, from, to, version string, by Actor) (*store.Deployment, error) {
	if version == "" {
		d, err := s.live(ctx, repo, from)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, fmt.Errorf("%w: no release has succeeded in %s of %s yet: nothing to promote", deploy.ErrRefused, from, repo)
		}
		version = d.Version
	}
	rel, p, err := s.release(ctx, repo, version)
	if err != nil {
		return nil, err
	}
	if err := deploy.CheckPromotion(p, from, to); err != nil {
		return nil, err
	}
	return s.request(ctx, Request{Repo: repo, Environment: to, Version: version, Kind: deploy.KindPromote, By: by.Name,
		Admin: by.Admin, OverrideFreeze: by.OverrideFreeze}, rel, p)
}

// Rollback asks for an environment to go back to the release live there
// before the current one (deploy.RollbackTarget), with that release's
// artifacts and steps.
func (s *Service) Rollback(ctx context.Context, repo, env string, by Actor) (*store.Deployment, error) {
	if _, err := s.store.Repo(ctx, repo); err != nil {
		return nil, err
	}
	succeeded, current, target, ok, err := s.rollbackTarget(ctx, repo, env)
	if err != nil {
		return nil, err
	}
	if !ok {
		if current == 0 {
			return nil, fmt.Errorf("%w: nothing has been deployed to %s of %s: nothing to roll back", deploy.ErrRefused, env, repo)
		}
		return nil, fmt.Errorf("%w: %s of %s has had no other release to go back to than %s", deploy.ErrRefused, env, repo, succeeded[0].Version)
	}
	rel, err := s.store.ReleaseByID(ctx, target)
	if err != nil {
		return nil, err
	}
	p, err := s.pipeline(ctx, rel)
	if err != nil {
		return nil, err
	}
	return s.request(ctx, Request{Repo: repo, Environment: env, Version: rel.Version, Kind: deploy.KindRollback, By: by.Name,
		Admin: by.Admin, OverrideFreeze: by.OverrideFreeze, RollbackOf: current}, rel, p)
}

// advance starts the deployment of an environment whose turn it is, if
// any, and if it is ready: approved as its environment asks, and not in
// an open freeze window (unless an admin overrode it). One that cannot start (its release's pipeline no longer reads, say)
// fails with the reason, and the next gets its turn.
func (s *Service) advance(ctx context.Context, repo, env string) {
	for range 100 {
		open, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: repo, Environment: env,
			States: []string{store.DeployPending, store.DeployRunning}, Limit: 1000})
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "read deployments", slog.String("repo", repo), slog.String("environment", env), slog.Any("err", err))
			return
		}
		d, _ := deploy.Next(open, s.ready(ctx))
		if d == nil {
			return
		}
		if err := s.start(ctx, d); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return // another server (or call) started one
			}
			s.end(ctx, d, deploy.Fail, "could not start: "+err.Error())
			continue
		}
		return
	}
}

// start stores the build of a pending deployment and makes it running.
func (s *Service) start(ctx context.Context, d *store.Deployment) error {
	rel, err := s.store.ReleaseByID(ctx, d.ReleaseID)
	if err != nil {
		return err
	}
	relBuild, err := s.store.Build(ctx, rel.BuildID)
	if err != nil {
		return err
	}
	by := d.RequestedBy
	if by == "" {
		by = "gantry (" + d.Kind + ")"
	}
	b, err := build.Deployment(relBuild, d.Environment, rel.Version, by)
	if err != nil {
		return err
	}
	if err := s.store.StartDeployment(ctx, d.ID, b); err != nil {
		return err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "deployment started", slog.String("repo", d.Repo), slog.String("environment", d.Environment),
		slog.String("version", rel.Version), slog.Int64("deployment", d.ID), slog.Int64("build", b.ID))
	s.record(ctx, "deployment.start", "deployment:"+strconv.FormatInt(d.ID, 10), map[string]string{"repo": d.Repo,
		"environment": d.Environment, "release": rel.Version, "build": strconv.FormatInt(b.ID, 10)})
	told := *d
	told.State, told.BuildID, told.Version, told.StartedAt = store.DeployRunning, b.ID, rel.Version, time.Now()
	s.tell(ctx, ChangeStarted, &told, "", "")
	s.started(b)
	return nil
}

// end moves d by ev through the machine and records it.
func (s *Service) end(ctx context.Context, d *store.Deployment, ev deploy.Event, reason string) {
	to, err := deploy.Transition(d.State, ev)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "end deployment", slog.Int64("deployment", d.ID), slog.Any("err", err))
		return
	}
	ended, err := s.store.EndDeployment(ctx, d.ID, d.State, to, reason)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		s.log.LogAttrs(ctx, slog.LevelError, "end deployment", slog.Int64("deployment", d.ID), slog.Any("err", err))
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "deployment ended", slog.String("repo", d.Repo), slog.String("environment", d.Environment),
		slog.String("version", d.Version), slog.Int64("deployment", d.ID), slog.String("state", to), slog.String("reason", reason))
	s.record(ctx, "deployment.end", "deployment:"+strconv.FormatInt(d.ID, 10), map[string]string{"repo": d.Repo,
		"environment": d.Environment, "release": d.Version, "state": to, "reason": reason})
	if err == nil {
		s.tell(ctx, to, ended, "", "")
	}
}

// ended ends the deployment a finished build ran, and lets the next one
// of its environment start.
func (s *Service) ended(ctx context.Context, b *store.Build) {
	d, err := s.store.DeploymentOfBuild(ctx, b.ID)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "deployment of build", slog.Int64("build", b.ID), slog.Any("err", err))
		return
	}
	if d.State == store.DeployRunning {
		ev, reason := deploy.Outcome(b)
		if ev == deploy.Fail {
			if full, err := s.store.Build(ctx, b.ID); err == nil && deploy.HealthFailed(full) {
				reason += "; " + s.rollBack(ctx, d)
			}
		}
		s.end(ctx, d, ev, reason)
	}
	s.advance(ctx, d.Repo, d.Environment)
}

// rollBack asks for the automatic rollback of running deployment d, which
// failed its health check, to the release live before it
// (deploy.AutoRollback), and returns what it did, for d's reason. The
// rollback waits for d to end, and then goes first.
func (s *Service) rollBack(ctx context.Context, d *store.Deployment) string {
	succeeded, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: d.Repo, Environment: d.Environment,
		States: []string{store.DeploySucceeded}, Limit: 1})
	if err != nil {
		return "not rolled back: " + err.Error()
	}
	target, why := deploy.AutoRollback(d, succeeded)
	if target == 0 {
		return why
	}
	rel, err := s.store.ReleaseByID(ctx, target)
	if err == nil {
		var p *spec.Pipeline
		if p, err = s.pipeline(ctx, rel); err == nil {
			var rb *store.Deployment
			rb, err = s.request(ctx, Request{Repo: d.Repo, Environment: d.Environment, Version: rel.Version,
				Kind: deploy.KindAutoRollback, RollbackOf: d.ReleaseID}, rel, p)
			if err == nil {
				s.record(ctx, "deployment.auto-rollback", "deployment:"+strconv.FormatInt(rb.ID, 10), map[string]string{
					"repo": d.Repo, "environment": d.Environment, "release": rel.Version, "instead_of": d.Version,
					"failed_deployment": strconv.FormatInt(d.ID, 10)})
				return fmt.Sprintf("rolling back to %s (deployment %d)", rel.Version, rb.ID)
			}
		}
	}
	s.log.LogAttrs(ctx, slog.LevelError, "automatic rollback", slog.Int64("deployment", d.ID), slog.Any("err", err))
	return "the automatic rollback could not be asked for: " + err.Error()
}

// Kick asks Run to look at every open deployment now.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run puts deployments in order every interval (and when kicked) until ctx
// ends: a running deployment whose build has finished is ended (the
// server stopped before it heard), and every environment with a waiting
// deployment gets the chance to start one. Each look first registers the
// releases of builds that passed in the hour before and were missed the
// same way, if they are newer than their branch's newest release.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	s.recoverReleases(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *Service) reconcile(ctx context.Context) {
	open, err := s.store.Deployments(ctx, store.DeploymentFilter{States: []string{store.DeployPending, store.DeployRunning}, Limit: 1000})
	if err != nil {
		if ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "read open deployments", slog.Any("err", err))
		}
		return
	}
	type envKey struct{ repo, env string }
	envs := map[envKey]bool{}
	for _, d := range open {
		envs[envKey{d.Repo, d.Environment}] = true
		if d.State != store.DeployRunning {
			continue
		}
		b, err := s.store.Build(ctx, d.BuildID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.end(ctx, d, deploy.Fail, fmt.Sprintf("its build %d is gone", d.BuildID))
		case err == nil && store.Finished(b.Status):
			ev, reason := deploy.Outcome(b)
			s.end(ctx, d, ev, reason)
		}
	}
	for k := range envs {
		s.advance(ctx, k.repo, k.env)
	}
}

// recoverReleases registers the releases of green builds that finished in
// the last hour without one, when a build newer on their branch has made
// none either: what a crash between a build's end and its release lost.
// Older builds are left alone: registering them now would deploy old
// code by itself.
func (s *Service) recoverReleases(ctx context.Context) {
	builds, err := s.store.Builds(ctx, store.BuildFilter{Status: store.StatusSuccess, Limit: 200})
	if err != nil {
		return
	}
	newest := map[string]int64{} // repo@branch -> newest build number with a release
	for _, b := range builds {   // newest first
		if time.Since(b.FinishedAt) > time.Hour || b.Event == plan.EventDeploy {
			continue
		}
		key := b.Repo + "@" + b.Branch + "#" + b.Tag
		if _, ok := newest[key]; !ok {
			newest[key] = 0
			if rs, err := s.store.ListReleases(ctx, store.ReleaseFilter{Repo: b.Repo, Branch: b.Branch, Limit: 1}); err == nil && len(rs) > 0 {
				newest[key] = rs[0].BuildNumber
			}
		}
		if b.Number <= newest[key] {
			continue
		}
		if rel, err := s.Register(ctx, b); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "recover release", slog.Int64("build", b.ID), slog.Any("err", err))
		} else if rel != nil {
			newest[key] = b.Number
		}
	}
}

// record appends an act of Gantry itself (actor "gantry": no person asked
// for it) to the audit log: releases, automatic deployments, and every
// deployment's start and end, so that the log tells what reached each
// environment and when. A failure to record is logged as an error; the
// act, already done, stands.
func (s *Service) record(ctx context.Context, action, object string, detail map[string]string) {
	for k, v := range detail {
		if v == "" {
			delete(detail, k)
		}
	}
	e := &store.AuditEntry{Actor: "gantry", Action: action, Object: object, Detail: detail}
	e.Sanitize()
	if err := s.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "record in the audit log", slog.String("action", action), slog.String("object", object), slog.Any("err", err))
	}
}
