package engine_test

import (
	"testing"

	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
)

// TestDeployment runs a deployment's plan: the environment's steps, with
// its env and the pipeline's, and GANTRY_ENVIRONMENT and GANTRY_RELEASE;
// the pipeline's jobs do not run.
func TestDeployment(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
env: {LEVEL: pipeline}
jobs:
  build: {steps: ["echo must not run"]}
environments:
  staging:
    deploy: {branch: main}
    env: {TARGET: "staging-${{ branch }}"}
    steps:
      - echo "$LEVEL $TARGET $GANTRY_ENVIRONMENT $GANTRY_RELEASE $GANTRY_EVENT $GANTRY_JOB"
  production:
    promote-from: staging
    steps: ["echo wrong environment"]
`, setup{trigger: plan.Trigger{Event: plan.EventDeploy, Branch: "main", Commit: "abc123", Repo: "acme/web",
		BuildNumber: 9, Environment: "staging", Release: "main-7"}})
	if res.Status != engine.Success || len(res.Jobs) != 1 || res.Jobs[0].Name != "deploy:staging" {
		t.Fatalf("Run = %s with jobs %+v, want deploy:staging alone, passed", res.Status, res.Jobs)
	}
	want := "pipeline staging-main staging main-7 deploy deploy:staging\n"
	if got := rec.log("deploy:staging"); got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}
