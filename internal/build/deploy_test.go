package build_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/store"
)

const deliveryPipeline = `
jobs:
  test: {steps: ["true"]}
  build: {steps: ["true"], artifacts: [dist/*]}
  lint: {steps: ["true"]}
environments:
  staging:
    deploy: {branch: main}
    runs-on: [deployer]
    steps: ["./deploy"]
`

// finishAll leases every queued job and ends it as the outcome says.
func finishAll(t *testing.T, e *env, outcome map[string]engine.Status) {
	t.Helper()
	ctx := context.Background()
	for {
		b, j, err := e.store.Lease(ctx, "agent", []string{"deployer"}, time.Minute)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := e.builds.Finish(ctx, b.ID, j.ID, j.LeaseToken, &engine.JobResult{Status: outcome[j.Name]}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetryFailedRerunsArtifactJobs: retry --failed carries over the jobs
// that passed, except those with artifacts, which belong to the build that
// made them.
func TestRetryFailedRerunsArtifactJobs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := e.push(e.commit(map[string]string{".gantry.yml": deliveryPipeline}), "d1")
	finishAll(t, e, map[string]engine.Status{"test": engine.Success, "build": engine.Success, "lint": engine.Failure})
	r, err := e.builds.Retry(context.Background(), b.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(r); got["test"] != "success" || got["build"] != "queued" || got["lint"] != "queued" {
		t.Errorf("retry --failed jobs = %v, want test carried over, build (artifacts) and lint run again", got)
	}
}

// TestDeploymentBuild: the build of a deployment runs the environment's
// steps as one job, queued, on the release's commit and pipeline; its
// number of jobs and labels come from the environment; it is not retried.
func TestDeploymentBuild(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	rel := e.push(e.commit(map[string]string{".gantry.yml": deliveryPipeline}), "d1")
	rel, _ = e.store.Build(ctx, rel.ID)
	d, err := build.Deployment(rel, "staging", "main-1", "ann")
	if err != nil {
		t.Fatal(err)
	}
	if d.Event != "deploy" || d.Environment != "staging" || d.Release != "main-1" || d.Commit != rel.Commit ||
		d.Author != "ann" || string(d.Pipeline) != string(rel.Pipeline) || len(d.Jobs) != 1 ||
		d.Jobs[0].Name != "deploy:staging" || d.Jobs[0].Status != store.StatusQueued || d.Jobs[0].RunsOn[0] != "deployer" {
		t.Errorf("Deployment() = %+v (jobs %+v)", d, d.Jobs)
	}
	if _, err := build.Deployment(rel, "production", "main-1", "ann"); err == nil || !strings.Contains(err.Error(), `no environment "production"`) {
		t.Errorf("Deployment(missing environment) = %v", err)
	}
	if err := e.store.CreateBuild(ctx, d); err != nil {
		t.Fatal(err)
	}
	finishAll(t, e, map[string]engine.Status{"deploy:staging": engine.Success, "test": engine.Success, "build": engine.Success, "lint": engine.Success})
	if _, err := e.builds.Retry(ctx, d.ID, false); !errors.Is(err, build.ErrDeployment) {
		t.Errorf("Retry(a deployment's build) = %v, want ErrDeployment", err)
	}
}
