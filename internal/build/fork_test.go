package build_test

import (
	"context"
	"testing"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// A build of a pull request from a fork is recorded as such, and so is
// its retry: a retry of a stranger's code is still a stranger's code.
func TestForkFlagIsRecordedAndRetried(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.builds = build.New(e.store, git.NewMirrors(t.TempDir()), nil, nil, build.Options{BuildForks: true})
	ctx := context.Background()
	sha := e.commit(map[string]string{".gantry.yml": "jobs: {test: {secrets: [TOKEN], steps: [\"true\"]}}\n"})
	b, _, err := e.builds.Create(ctx, e.repo, build.Trigger{
		Trigger:  plan.Trigger{Event: plan.EventPullRequest, Branch: "feature", BaseBranch: "main", Commit: sha, Repo: e.repo.Name},
		FromFork: true, PullRequest: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.store.Build(ctx, b.ID)
	if err != nil || !stored.FromFork || stored.Status != store.StatusQueued {
		t.Fatalf("fork build = %+v, %v; want queued, FromFork", stored, err)
	}
	_, j, err := e.store.Lease(ctx, "agent", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.builds.Finish(ctx, b.ID, j.ID, j.LeaseToken, &engine.JobResult{Name: "test", Status: engine.Success}); err != nil {
		t.Fatal(err)
	}
	for _, failedOnly := range []bool{false, true} {
		r, err := e.builds.Retry(ctx, b.ID, failedOnly)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := e.store.Build(ctx, r.ID); got == nil || !got.FromFork {
			t.Errorf("Retry(fork build, failed only %v) = FromFork false, want true", failedOnly)
		}
	}

	own := e.push(sha, "own")
	if got, _ := e.store.Build(ctx, own.ID); got.FromFork {
		t.Errorf("push build FromFork = true, want false")
	}
}
