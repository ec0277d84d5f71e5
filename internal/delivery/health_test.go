package delivery_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

const healthPipeline = `
jobs:
  build: {steps: [make]}
environments:
  qa:
    deploy: {branch: main}
    steps: [./deploy qa]
  staging:
    approvals: {required: 1}
    freeze: [{cron: "* * * * *", duration: 2m, reason: migration}]
    steps: [./deploy staging]
    health: {url: "http://app.internal/healthz"}
`

// finishDeployment leases the one queued deployment job and ends it as an
// agent would report it: its step passed, then its health check ended
// health.
func (e *env) finishDeployment(health engine.Status) *store.Build {
	e.t.Helper()
	b, j, err := e.st.Lease(e.ctx, "agent", nil, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	if b.Event != plan.EventDeploy {
		e.t.Fatalf("leased %s build %d, want a deployment", b.Event, b.ID)
	}
	res := &engine.JobResult{Name: j.Name, Status: health, Steps: []*engine.StepResult{
		{Name: "./deploy staging", Status: engine.Success, ExitCode: 0},
		{Name: plan.HealthStep, Status: health, ExitCode: map[engine.Status]int{engine.Success: 0, engine.Failure: 1}[health]},
	}}
	if health != engine.Success {
		res.Reason = `step "health": health check failed: 4 tries failed, the last: 503 Service Unavailable`
	}
	if err := e.builds.Finish(e.ctx, b.ID, j.ID, j.LeaseToken, res); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestHealthCheckRollsBack: a release that fails its environment's health
// check is failed with the reason, and the release live before goes back
// by itself, ahead of a deployment waiting in line, with neither the
// environment's approvals nor its freeze window holding it. When the
// rollback fails its check too, nothing more is tried.
func TestHealthCheckRollsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sha := e.commit("Ann <ann@example.com>", healthPipeline)
	admin := delivery.Actor{Name: "root", Admin: true, OverrideFreeze: "first deploy"}

	// main-1 goes live (an admin deploys it through the freeze, approved).
	e.push("main", sha)
	e.runJobs(engine.Success) // the build
	e.runJobs(engine.Success) // its deployment to qa
	first, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "staging", Version: "main-1",
		Kind: deploy.KindDeploy, By: admin.Name, Admin: true, OverrideFreeze: admin.OverrideFreeze})
	if err != nil {
		t.Fatal(err)
	}
	approve := func(id int64) {
		t.Helper()
		if _, err := e.svc.Decide(e.ctx, id, delivery.Actor{Name: "bob"}, store.VerdictApprove, ""); err != nil {
			t.Fatal(err)
		}
	}
	approve(first.ID)
	e.finishDeployment(engine.Success)

	// main-4's deployment starts (approved, overridden) and fails its check,
	// while another deployment of main-4 waits behind it.
	e.push("main", sha)
	e.runJobs(engine.Success)
	e.runJobs(engine.Success)
	second, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "staging", Version: "main-4",
		Kind: deploy.KindDeploy, By: admin.Name, Admin: true, OverrideFreeze: admin.OverrideFreeze})
	if err != nil {
		t.Fatalf("Deploy(main-4) = %v", err)
	}
	approve(second.ID)
	waiting, err := e.svc.Deploy(e.ctx, delivery.Request{Repo: "acme/app", Environment: "staging", Version: "main-4",
		Kind: deploy.KindDeploy, By: admin.Name, Admin: true, OverrideFreeze: admin.OverrideFreeze})
	if err != nil {
		t.Fatal(err)
	}
	e.finishDeployment(engine.Failure)

	failed, _ := e.st.Deployment(e.ctx, second.ID)
	if failed.State != store.DeployFailed || !strings.Contains(failed.Reason, "health check failed") ||
		!strings.Contains(failed.Reason, "rolling back to main-1 (deployment ") {
		t.Errorf("failed deployment = %s %q, want failed, saying the check failed and that main-1 goes back", failed.State, failed.Reason)
	}
	open, _ := e.st.Deployments(e.ctx, store.DeploymentFilter{Repo: "acme/app", Environment: "staging", States: []string{store.DeployRunning}})
	if len(open) != 1 || open[0].Kind != deploy.KindAutoRollback || open[0].Version != "main-1" || open[0].RollbackOf != failed.ReleaseID {
		t.Fatalf("running = %+v, want the automatic rollback to main-1, replacing main-4", open)
	}
	if w, _ := e.st.Deployment(e.ctx, waiting.ID); w.State != store.DeployPending {
		t.Errorf("the deployment waiting in line is %s, want still pending behind the rollback", w.State)
	}

	// The rollback fails its check too: failed, and no rollback of it.
	e.finishDeployment(engine.Failure)
	rb, _ := e.st.Deployment(e.ctx, open[0].ID)
	if rb.State != store.DeployFailed || !strings.Contains(rb.Reason, "the automatic rollback failed too") {
		t.Errorf("rollback = %s %q, want failed, saying nothing more is tried", rb.State, rb.Reason)
	}
	autos, _ := e.st.Deployments(e.ctx, store.DeploymentFilter{Repo: "acme/app", Environment: "staging"})
	n := 0
	for _, d := range autos {
		if d.Kind == deploy.KindAutoRollback {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d automatic rollbacks, want 1", n)
	}
	// The waiting one gets its turn now (its approval pending).
	if w, _ := e.st.Deployment(e.ctx, waiting.ID); w.State != store.DeployPending {
		t.Errorf("waiting deployment = %s", w.State)
	}
	if got := e.envs()["staging"]; version(got.Current) != "main-1" {
		t.Errorf("staging's current = %s, want main-1, the last that succeeded", version(got.Current))
	}
}

// TestAutoRollbackDecision covers deploy.AutoRollback's refusals.
func TestAutoRollbackDecision(t *testing.T) {
	live := &store.Deployment{ReleaseID: 7, Version: "main-7"}
	tests := []struct {
		failed    *store.Deployment
		succeeded []*store.Deployment
		target    int64
		why       string
	}{
		{&store.Deployment{ReleaseID: 8, Kind: deploy.KindAuto}, []*store.Deployment{live}, 7, ""},
		{&store.Deployment{ReleaseID: 8, Kind: deploy.KindAutoRollback}, []*store.Deployment{live}, 0, "the automatic rollback failed too"},
		{&store.Deployment{ReleaseID: 8, Kind: deploy.KindDeploy, Environment: "qa"}, nil, 0, "no release succeeded in qa before"},
		{&store.Deployment{ReleaseID: 7, Kind: deploy.KindDeploy}, []*store.Deployment{live}, 0, "main-7 was the release live before too"},
	}
	for _, tt := range tests {
		target, why := deploy.AutoRollback(tt.failed, tt.succeeded)
		if target != tt.target || (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
			t.Errorf("AutoRollback(%+v) = %d %q, want %d %q", tt.failed, target, why, tt.target, tt.why)
		}
	}
}
