package build_test

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

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

type env struct {
	t      testing.TB
	store  store.Store
	builds *build.Service
	repo   *store.Repo
	origin string
}

func run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func setup(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	origin := t.TempDir()
	run(t, origin, "init", "-q", "-b", "main")
	repo := &store.Repo{Name: "acme/app", CloneURL: origin, Forge: "github", WebhookSecret: "k", DefaultBranch: "main"}
	if err := st.CreateRepo(ctx, repo); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, store: st, builds: build.New(st, git.NewMirrors(t.TempDir()), nil, nil), repo: repo, origin: origin}
}

func (e *env) commit(files map[string]string) string {
	e.t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.origin, name), []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	run(e.t, e.origin, "add", "-A")
	run(e.t, e.origin, "commit", "-q", "--allow-empty", "-m", "c")
	return run(e.t, e.origin, "rev-parse", "HEAD")
}

func (e *env) push(sha, delivery string) *store.Build {
	e.t.Helper()
	b, _, err := e.builds.Create(context.Background(), e.repo, build.Trigger{
		Trigger:    plan.Trigger{Event: plan.EventPush, Branch: "main", Commit: sha, Repo: e.repo.Name},
		DeliveryID: delivery,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func statuses(b *store.Build) map[string]string {
	out := map[string]string{}
	for _, j := range b.Jobs {
		out[j.Name] = j.Status
	}
	return out
}

func TestCreateRecordsWhyNothingRuns(t *testing.T) {
	t.Parallel()
	e := setup(t)
	none := e.push(e.commit(map[string]string{"README": "x"}), "d1")
	if none.Status != store.StatusSkipped || !strings.HasPrefix(none.Reason, "no .gantry.yml at commit ") {
		t.Errorf("build without a pipeline = %s %q, want skipped, no .gantry.yml", none.Status, none.Reason)
	}
	bad := e.push(e.commit(map[string]string{".gantry.yml": "jobs:\n  a:\n    stepz: []\n"}), "d2")
	if bad.Status != store.StatusError || !strings.Contains(bad.Reason, `.gantry.yml:3:5: job "a": unknown key "stepz"; did you mean "steps"?`) {
		t.Errorf("build with an invalid pipeline = %s %q, want error with the position", bad.Status, bad.Reason)
	}
	missing := e.push(strings.Repeat("ab", 20), "d3")
	if missing.Status != store.StatusError || !strings.Contains(missing.Reason, "commit not found") {
		t.Errorf("build of a missing commit = %s %q, want error, commit not found", missing.Status, missing.Reason)
	}
}

func TestFinishAdvancesTheGraph(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	b := e.push(e.commit(map[string]string{".gantry.yml": `
concurrency: parallel
jobs:
  a: {steps: ["true"]}
  b: {needs: [a], steps: ["true"]}
  c: {needs: [b], steps: ["true"]}
  report: {needs: [c], if: always(), steps: ["true"]}
`}), "d1")
	if got := statuses(b); got["a"] != "queued" || got["b"] != "pending" {
		t.Fatalf("new build jobs = %v, want a queued, b pending", got)
	}
	lb, job, err := e.store.Lease(ctx, "agent", nil, time.Minute)
	if err != nil || job.Name != "a" {
		t.Fatalf("Lease = %v %v, want job a", job, err)
	}
	if err := e.builds.Finish(ctx, lb.ID, job.ID, job.LeaseToken+1, &engine.JobResult{Status: engine.Success}); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Finish with a wrong token = %v, want ErrStaleLease", err)
	}
	if err := e.builds.Finish(ctx, lb.ID, job.ID, job.LeaseToken, &engine.JobResult{Status: engine.Success,
		Steps: []*engine.StepResult{{Name: "true", Status: engine.Success, ExitCode: 0, Attempts: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, job, _ = e.store.Lease(ctx, "agent", nil, time.Minute)
	if job.Name != "b" {
		t.Fatalf("next lease = %s, want b", job.Name)
	}
	e.builds.Finish(ctx, b.ID, job.ID, job.LeaseToken, &engine.JobResult{Status: engine.Failure, Reason: `step "x": exit code 3`,
		Steps: []*engine.StepResult{{Name: "x", Status: engine.Failure, ExitCode: 3, Attempts: 1}}})
	got, _ := e.store.Build(ctx, b.ID)
	want := map[string]string{"a": "success", "b": "failure", "c": "skipped", "report": "queued"}
	for k, v := range want {
		if statuses(got)[k] != v {
			t.Errorf("after b failed: jobs = %v, want %v", statuses(got), want)
			break
		}
	}
	if got.Jobs[1].ExitCode != 3 {
		t.Errorf("b's exit code = %d, want 3", got.Jobs[1].ExitCode)
	}
	_, job, _ = e.store.Lease(ctx, "agent", nil, time.Minute)
	e.builds.Finish(ctx, b.ID, job.ID, job.LeaseToken, &engine.JobResult{Status: engine.Success})
	got, _ = e.store.Build(ctx, b.ID)
	if got.Status != store.StatusFailure || got.FinishedAt.IsZero() {
		t.Errorf("build = %s (finished %v), want failure, finished", got.Status, got.FinishedAt)
	}
}

func TestScheduled(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	e.push(e.commit(map[string]string{".gantry.yml": `
on:
  push: {branches: [main]}
  schedule: [{cron: "*/5 * * * *"}]
concurrency: parallel
jobs: {nightly: {steps: ["true"]}}
`}), "d1")
	from := time.Date(2026, 11, 23, 10, 0, 30, 0, time.Local)
	to := from.Add(10 * time.Minute)
	for i := 0; i < 2; i++ { // the second look at the same window starts nothing
		if err := e.builds.Scheduled(ctx, from, to); err != nil {
			t.Fatal(err)
		}
	}
	builds, _ := e.store.Builds(ctx, store.BuildFilter{Repo: "acme/app"})
	var scheduled []*store.Build
	for _, b := range builds {
		if b.Event == plan.EventSchedule {
			scheduled = append(scheduled, b)
		}
	}
	if len(scheduled) != 2 {
		t.Fatalf("%d scheduled builds in a 10-minute window of */5, want 2", len(scheduled))
	}
	for _, b := range scheduled {
		if b.Branch != "main" || b.Status != store.StatusQueued || !strings.HasPrefix(b.Message, `scheduled by "*/5 * * * *" at `) {
			t.Errorf("scheduled build = %s %s %q", b.Branch, b.Status, b.Message)
		}
	}
}

// BenchmarkCreateWithHistory is a push to a branch that has 2,000 finished
// builds: what the webhook costs on a busy branch after a year. Looking
// for the unfinished builds it may have to wait for must not read the
// branch's history.
func BenchmarkCreateWithHistory(b *testing.B) {
	e := setup(b)
	ctx := context.Background()
	sha := e.commit(map[string]string{".gantry.yml": "jobs: {test: {steps: [\"true\"]}}\n"})
	for i := range 2000 {
		old := &store.Build{RepoID: e.repo.ID, Status: store.StatusSuccess, Event: "push", Branch: "main", Commit: sha,
			Pipeline: []byte("jobs: {}\n"), FinishedAt: time.Now(),
			Jobs: []*store.Job{{Name: "test", Status: store.StatusSuccess, ExitCode: 0}}}
		if err := e.store.CreateBuild(ctx, old); err != nil {
			b.Fatalf("build %d: %v", i, err)
		}
	}
	e.push(sha, "warm")
	i := 0
	for b.Loop() {
		i++
		nb := e.push(sha, fmt.Sprintf("d%d", i))
		b.StopTimer()
		if _, err := e.builds.Cancel(ctx, nb.ID, "next"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
