package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

const pipeline = `
jobs:
  build:
    steps: [make]
    artifacts: [dist/*]
environments:
  staging:
    deploy: {branch: main}
    steps: [./deploy staging]
  production:
    promote-from: staging
    steps: [./deploy production]
  guarded:
    deploy: {branch: guarded}
    approvals: {required: 1}
    steps: [./deploy guarded]
  frozen:
    deploy: {branch: frozen}
    freeze: [{cron: "* * * * *", duration: 2m, reason: migration}]
    steps: [./deploy frozen]
`

// env is a server's worth of delivery without HTTP: real SQLite, a real
// git origin, the real build service telling the delivery service of
// every finished build. Jobs are "run" by leasing them and reporting an
// outcome, as an agent would.
type env struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	builds  *build.Service
	svc     *delivery.Service
	repo    *store.Repo
	origin  string
	started []*store.Build
}

func git1(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func newEnv(t *testing.T, hooked bool) *env {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, ctx: ctx, st: st, origin: t.TempDir()}
	git1(t, e.origin, "init", "-q", "-b", "main")
	e.repo = &store.Repo{Name: "acme/app", CloneURL: e.origin, Forge: "github", WebhookSecret: "k", DefaultBranch: "main"}
	if err := st.CreateRepo(ctx, e.repo); err != nil {
		t.Fatal(err)
	}
	mirrors := git.NewMirrors(t.TempDir())
	e.svc = delivery.New(st, mirrors, nil, func(b *store.Build) { e.started = append(e.started, b) })
	var opts build.Options
	if hooked {
		opts.Finished = e.svc.BuildFinished
	}
	e.builds = build.New(st, mirrors, nil, nil, opts)
	return e
}

// commit commits as author and returns the commit.
func (e *env) commit(author, content string) string {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.origin, ".gantry.yml"), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	git1(e.t, e.origin, "add", "-A")
	git1(e.t, e.origin, "-c", "user.name=Committer", "-c", "user.email=c@example.com", "commit", "-q", "--allow-empty",
		"--author="+author, "-m", "change")
	return git1(e.t, e.origin, "rev-parse", "HEAD")
}

func (e *env) push(branch, sha string) *store.Build {
	e.t.Helper()
	b, _, err := e.builds.Create(e.ctx, e.repo, build.Trigger{
		Trigger: plan.Trigger{Event: plan.EventPush, Branch: branch, Commit: sha, Repo: e.repo.Name}, Author: "pusher"})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// runJobs leases every job queued now (not those queued as they end: the
// queue hands out the oldest first) and ends it as status; a job called
// build uploads dist/app (named after its build) first.
func (e *env) runJobs(status engine.Status) []*store.Job {
	e.t.Helper()
	queued := 0
	builds, err := e.st.Builds(e.ctx, store.BuildFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range builds {
		for _, j := range b.Jobs {
			if j.Status == store.StatusQueued {
				queued++
			}
		}
	}
	var ran []*store.Job
	for range queued {
		b, j, err := e.st.Lease(e.ctx, "agent", nil, time.Hour)
		if err != nil {
			e.t.Fatal(err)
		}
		if j.Name == "build" {
			a := &store.Artifact{BuildID: b.ID, JobID: j.ID, Path: "dist/app", Size: 3, SHA256: fmt.Sprintf("%064x", b.ID)}
			if err := e.st.AddArtifact(e.ctx, a, j.LeaseToken); err != nil {
				e.t.Fatal(err)
			}
		}
		if err := e.builds.Finish(e.ctx, b.ID, j.ID, j.LeaseToken, &engine.JobResult{Name: j.Name, Status: status,
			Reason: map[engine.Status]string{engine.Failure: "exit code 1"}[status]}); err != nil {
			e.t.Fatal(err)
		}
		ran = append(ran, j)
	}
	return ran
}

func (e *env) envs() map[string]*delivery.Environment {
	e.t.Helper()
	list, err := e.svc.Environments(e.ctx, e.repo.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]*delivery.Environment{}
	for _, x := range list {
		out[x.Name] = x
	}
	return out
}

func version(d *store.Deployment) string {
	if d == nil {
		return "-"
	}
	return d.Version
}

// TestReleaseAndAutoDeploy: a green push to main registers a release with
// its artifact and authors, and deploys it to staging by itself, as a
// build of event deploy; when that passes, staging runs it.
func TestReleaseAndAutoDeploy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	first := e.commit("Ann <ann@example.com>", pipeline)
	b1 := e.push("main", first)
	e.runJobs(engine.Success)
	rel1, err := e.st.Release(e.ctx, "acme/app", "main-1")
	if err != nil {
		t.Fatalf("Release(main-1) after a green push = %v", err)
	}
	if rel1.BuildID != b1.ID || rel1.Commit != first || len(rel1.Artifacts) != 1 || rel1.Artifacts[0].Path != "dist/app" ||
		!cmp.Equal(rel1.Authors, []string{"Ann <ann@example.com>"}) {
		t.Errorf("release main-1 = %+v, want build %d at %s, dist/app, by Ann", rel1, b1.ID, first)
	}
	if len(e.started) != 1 {
		t.Fatalf("deployment builds started = %d, want 1", len(e.started))
	}
	db := e.started[0]
	if db.Event != plan.EventDeploy || db.Environment != "staging" || db.Release != "main-1" || db.Commit != first ||
		len(db.Jobs) != 1 || db.Jobs[0].Name != "deploy:staging" || db.Jobs[0].Status != store.StatusQueued {
		t.Errorf("deployment build = %+v, want deploy:staging of main-1 queued", db)
	}
	if got := e.envs(); got["staging"].Active == nil || got["staging"].Current != nil || got["production"].Active != nil {
		t.Errorf("envs while deploying = staging active %v, current %v; production active %v", got["staging"].Active, got["staging"].Current, got["production"].Active)
	}
	e.runJobs(engine.Success)
	if got := e.envs()["staging"]; version(got.Current) != "main-1" || got.Active != nil || got.Current.Kind != deploy.KindAuto {
		t.Errorf("staging after the deployment passed = current %s, active %v; want main-1 by auto", version(got.Current), got.Active)
	}

	// Two more commits by two people: the next release names both.
	e.commit("Bob <bob@example.com>", pipeline)
	third := e.commit("Cy <cy@example.com>", pipeline)
	e.push("main", third)
	e.runJobs(engine.Success)
	rel2, err := e.st.Release(e.ctx, "acme/app", "main-3")
	if err != nil || !cmp.Equal(rel2.Authors, []string{"Cy <cy@example.com>", "Bob <bob@example.com>"}) {
		t.Errorf("release main-3 = %+v, %v; want authors Cy and Bob", rel2, err)
	}

	// A branch that feeds nothing, and a red build, make no release.
	e.push("feature", third)
	e.runJobs(engine.Success)
	e.push("main", third)
	e.runJobs(engine.Failure)
	if list, _ := e.st.ListReleases(e.ctx, store.ReleaseFilter{Repo: "acme/app"}); len(list) != 2 {
		t.Errorf("releases = %d, want 2 (a feature branch and a red build make none)", len(list))
	}
}

// TestOneAtATime: releases that come while one deploys wait in order; a
// newer one never cancels the one running; a failure lets the next go.
func TestOneAtATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	// Three builds of main at once, rather than one after the other.
	sha := e.commit("Ann <ann@example.com>", "concurrency: {push: parallel}\n"+pipeline)
	for range 3 {
		e.push("main", sha)
	}
	// Run the three builds (not their deployments): one lease each.
	for range 3 {
		b, j, err := e.st.Lease(e.ctx, "agent", nil, time.Hour)
		if err != nil || j.Name != "build" {
			t.Fatalf("Lease() = %v, %v", j, err)
		}
		if err := e.builds.Finish(e.ctx, b.ID, j.ID, j.LeaseToken, &engine.JobResult{Status: engine.Success}); err != nil {
			t.Fatal(err)
		}
	}
	st := e.envs()["staging"]
	if version(st.Active) != "main-1" || len(st.Waiting) != 2 || st.Waiting[0].Version != "main-2" || st.Waiting[1].Version != "main-3" {
		t.Fatalf("staging = active %s, waiting %v; want main-1 running, main-2 and main-3 waiting in order", version(st.Active), st.Waiting)
	}
	if why := st.Why[st.Waiting[0].ID]; !strings.Contains(why, fmt.Sprintf("waiting for deployment %d (main-1) to finish", st.Active.ID)) {
		t.Errorf("why main-2 waits = %q", why)
	}
	if why := st.Why[st.Waiting[1].ID]; !strings.Contains(why, "waiting behind deployment") {
		t.Errorf("why main-3 waits = %q", why)
	}
	if len(e.started) != 1 {
		t.Errorf("deployment builds started = %d, want 1 while the first runs", len(e.started))
	}
	// The first fails: the second starts; the first is not retried.
	ran := e.runJobs(engine.Failure)
	if len(ran) != 1 {
		t.Errorf("jobs run = %d, want the first deployment alone", len(ran))
	}
	st = e.envs()["staging"]
	if version(st.Active) != "main-2" || version(st.Last) != "main-1" || st.Last.State != store.DeployFailed ||
		!strings.Contains(st.Last.Reason, "exit code 1") || st.Current != nil {
		t.Errorf("staging after main-1 failed = active %s, last %+v, current %s", version(st.Active), st.Last, version(st.Current))
	}
	e.runJobs(engine.Success)
	e.runJobs(engine.Success)
	st = e.envs()["staging"]
	if version(st.Current) != "main-3" || st.Active != nil || len(st.Waiting) != 0 {
		t.Errorf("staging at the end = current %s, active %v, waiting %d; want main-3 alone", version(st.Current), st.Active, len(st.Waiting))
	}
}

// TestPromoteAndRollback: production takes only what passed on staging;
// a rollback goes back to the release live before.
func TestPromoteAndRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sha := e.commit("Ann <ann@example.com>", pipeline)
	e.push("main", sha)
	e.runJobs(engine.Success) // the build; main-1 starts on staging
	if _, err := e.svc.Promote(e.ctx, "acme/app", "staging", "production", "", delivery.Actor{Name: "ann"}); !errors.Is(err, deploy.ErrRefused) ||
		!strings.Contains(err.Error(), "no release has succeeded in staging") {
		t.Errorf("Promote() before staging passed = %v, want refused: nothing to promote", err)
	}
	if _, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "production", Version: "main-1",
		Kind: deploy.KindDeploy, By: "ann"}); !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), "has not succeeded in staging") {
		t.Errorf("Deploy(production) before staging passed = %v, want refused", err)
	}
	e.runJobs(engine.Success) // staging passes
	if _, err := e.svc.Promote(e.ctx, "acme/app", "production", "staging", "", delivery.Actor{Name: "ann"}); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("Promote(production -> staging) = %v, want refused", err)
	}
	d, err := e.svc.Promote(e.ctx, "acme/app", "staging", "production", "", delivery.Actor{Name: "ann"})
	if err != nil || d.Version != "main-1" || d.Kind != deploy.KindPromote || d.RequestedBy != "ann" || d.State != store.DeployRunning {
		t.Fatalf("Promote() = %+v, %v; want main-1 running on production, asked by ann", d, err)
	}
	e.runJobs(engine.Success)
	if got := e.envs()["production"]; version(got.Current) != "main-1" || got.Current.RequestedBy != "ann" {
		t.Errorf("production = %s by %s, want main-1 by ann", version(got.Current), got.Current.RequestedBy)
	}
	if _, err := e.svc.Rollback(e.ctx, "acme/app", "staging", delivery.Actor{Name: "bob"}); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("Rollback() with one release ever = %v, want refused", err)
	}
	e.push("main", sha)
	e.runJobs(engine.Success) // build 3 (after deploy builds 2 and 3): its release deploys
	e.runJobs(engine.Success)
	cur := version(e.envs()["staging"].Current)
	if cur == "main-1" {
		t.Fatalf("staging still runs main-1 after the second release")
	}
	rb, err := e.svc.Rollback(e.ctx, "acme/app", "staging", delivery.Actor{Name: "bob"})
	if err != nil || rb.Version != "main-1" || rb.Kind != deploy.KindRollback || rb.RequestedBy != "bob" {
		t.Fatalf("Rollback() = %+v, %v; want main-1 by bob", rb, err)
	}
	rel, _ := e.st.Release(e.ctx, "acme/app", cur)
	if rb.RollbackOf != rel.ID {
		t.Errorf("rollback replaces release %d, want %d (%s)", rb.RollbackOf, rel.ID, cur)
	}
	e.runJobs(engine.Success)
	if got := e.envs()["staging"]; version(got.Current) != "main-1" {
		t.Errorf("staging after the rollback = %s, want main-1", version(got.Current))
	}
	if _, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "staging", Version: "main-99",
		Kind: deploy.KindDeploy}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Deploy(no such release) = %v, want ErrNotFound", err)
	}
}

// TestApprovals: an automatic deployment to an environment that asks for
// approvals waits for them; the release's author may not approve; an
// approval lets it start; a rejection ends the next one.
func TestApprovals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sha := e.commit("Ann <ann@example.com>", pipeline)
	e.push("guarded", sha)
	e.runJobs(engine.Success)
	if len(e.started) != 0 {
		t.Errorf("deployment builds started = %d, want none before an approval", len(e.started))
	}
	g := e.envs()["guarded"]
	if len(g.Waiting) != 1 || g.Why[g.Waiting[0].ID] != "waiting for approval: 0 of 1" {
		t.Fatalf("guarded = %+v (why %v), want one deployment waiting for approval", g, g.Why)
	}
	d := g.Waiting[0]
	if _, err := e.svc.Decide(e.ctx, d.ID, delivery.Actor{Name: "ann"}, store.VerdictApprove, ""); !errors.Is(err, deploy.ErrForbidden) ||
		!strings.Contains(err.Error(), "ann authored a commit of release") {
		t.Errorf("Decide(the author approves) = %v, want ErrForbidden saying she authored it", err)
	}
	got, err := e.svc.Decide(e.ctx, d.ID, delivery.Actor{Name: "bob"}, store.VerdictApprove, "ok")
	if err != nil || got.State != store.DeployRunning || len(e.started) != 1 {
		t.Fatalf("Decide(bob approves) = %+v, %v (%d started); want it running", got, err, len(e.started))
	}
	if _, err := e.svc.Decide(e.ctx, d.ID, delivery.Actor{Name: "cat"}, store.VerdictApprove, ""); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("Decide(a running deployment) = %v, want ErrRefused", err)
	}
	e.runJobs(engine.Success)
	// The next release waits again: the approval was for the other one.
	sha2 := e.commit("Ann <ann@example.com>", pipeline+"\n")
	e.push("guarded", sha2)
	e.runJobs(engine.Success)
	g = e.envs()["guarded"]
	if len(g.Waiting) != 1 || g.Waiting[0].Version == d.Version {
		t.Fatalf("guarded after a second release = %+v, want its deployment waiting", g)
	}
	rej, err := e.svc.Decide(e.ctx, g.Waiting[0].ID, delivery.Actor{Name: "bob"}, store.VerdictReject, "not today")
	if err != nil || rej.State != store.DeployFailed || rej.Reason != "rejected by bob: not today" {
		t.Errorf("Decide(bob rejects) = %+v, %v; want failed, rejected by bob: not today", rej, err)
	}
	if len(e.started) != 1 {
		t.Errorf("deployment builds started = %d, want only the approved one", len(e.started))
	}
}

// TestFreezeHoldsAutoDeploy: an automatic deployment to an environment in
// an open freeze window waits, saying until when and why; a person's
// request is refused; an admin's override goes through.
func TestFreezeHoldsAutoDeploy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sha := e.commit("Ann <ann@example.com>", pipeline)
	e.push("frozen", sha)
	e.runJobs(engine.Success)
	if len(e.started) != 0 {
		t.Errorf("deployment builds started = %d, want none in a freeze", len(e.started))
	}
	f := e.envs()["frozen"]
	if len(f.Waiting) != 1 || !strings.HasPrefix(f.Why[f.Waiting[0].ID], "frozen is frozen until ") ||
		!strings.HasSuffix(f.Why[f.Waiting[0].ID], "(migration)") || f.Freeze == nil {
		t.Fatalf("frozen = %+v (why %v), want the deployment waiting for the window to close", f, f.Why)
	}
	version := f.Waiting[0].Version
	if _, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "frozen", Version: version, Kind: deploy.KindDeploy,
		By: "ann"}); !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), "an admin may with --override-freeze") {
		t.Errorf("Deploy(in a freeze) = %v, want ErrRefused saying an admin may override", err)
	}
	if _, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "frozen", Version: version, Kind: deploy.KindDeploy,
		By: "ann", OverrideFreeze: "please"}); !errors.Is(err, deploy.ErrForbidden) {
		t.Errorf("Deploy(a non-admin overrides) = %v, want ErrForbidden", err)
	}
	// The admin's deployment waits behind the automatic one, which the
	// override does not free: cancel that first.
	if _, err := e.st.EndDeployment(e.ctx, f.Waiting[0].ID, store.DeployPending, store.DeployCancelled, "test"); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "frozen", Version: version, Kind: deploy.KindDeploy,
		By: "root", Admin: true, OverrideFreeze: "hotfix"})
	if err != nil || d.State != store.DeployRunning {
		t.Errorf("Deploy(an admin overrides) = %+v, %v; want it running", d, err)
	}
}

// TestReconcile: a deployment whose build ended while nobody listened (a
// crash between the two) is ended by Run, and the next starts.
func TestReconcile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	sha := e.commit("Ann <ann@example.com>", pipeline)
	b := e.push("main", sha)
	e.runJobs(engine.Success)
	// No hook: register by hand, as the recovery would.
	full, _ := e.st.Build(e.ctx, b.ID)
	if _, err := e.svc.Register(e.ctx, full); err != nil {
		t.Fatal(err)
	}
	e.runJobs(engine.Success) // the deployment's build passes; nobody hears
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go e.svc.Run(ctx, 10*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for version(e.envs()["staging"].Current) != "main-1" {
		if time.Now().After(deadline) {
			t.Fatalf("staging = %+v after 10s of Run, want main-1 succeeded", e.envs()["staging"])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCancelDeployment: someone cancelling a deployment's build cancels
// the deployment, and the next one starts.
func TestCancelDeployment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sha := e.commit("Ann <ann@example.com>", "concurrency: {push: parallel}\n"+pipeline)
	e.push("main", sha)
	e.push("main", sha)
	for range 2 {
		b, j, err := e.st.Lease(e.ctx, "agent", nil, time.Hour)
		if err != nil || j.Name != "build" {
			t.Fatalf("Lease() = %v, %v", j, err)
		}
		if err := e.builds.Finish(e.ctx, b.ID, j.ID, j.LeaseToken, &engine.JobResult{Status: engine.Success}); err != nil {
			t.Fatal(err)
		}
	}
	st := e.envs()["staging"]
	if st.Active == nil || len(st.Waiting) != 1 {
		t.Fatalf("staging = active %v, waiting %d; want one running, one waiting", st.Active, len(st.Waiting))
	}
	if _, err := e.builds.Cancel(e.ctx, st.Active.BuildID, "cancelled by ann"); err != nil {
		t.Fatal(err)
	}
	after := e.envs()["staging"]
	if after.Last == nil || after.Last.ID != st.Active.ID || after.Last.State != store.DeployCancelled ||
		!strings.Contains(after.Last.Reason, "cancelled by ann") {
		t.Errorf("the cancelled deployment = %+v, want cancelled saying by whom", after.Last)
	}
	if after.Active == nil || after.Active.ID != st.Waiting[0].ID {
		t.Errorf("after the cancel, active = %+v, want the waiting one started", after.Active)
	}
}
