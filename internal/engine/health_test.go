package engine_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/plan"
)

var deployTrigger = plan.Trigger{Event: plan.EventDeploy, Branch: "main", Commit: "abc123", Repo: "acme/web",
	BuildNumber: 9, Environment: "staging", Release: "main-7"}

// healthServer answers 503 to the first failing GETs, then 200, and
// counts them.
func healthServer(t *testing.T, failing int64) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= failing {
			http.Error(w, "warming up\nsecond line", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// healthStep returns the result of the deployment job's health step.
func healthStep(t *testing.T, res *engine.Result) *engine.StepResult {
	t.Helper()
	j := jobResult(res, "deploy:staging")
	if j == nil || len(j.Steps) == 0 || j.Steps[len(j.Steps)-1].Name != plan.HealthStep {
		t.Fatalf("deployment job %+v has no last step %q", j, plan.HealthStep)
	}
	return j.Steps[len(j.Steps)-1]
}

// TestHealthURLPasses: a service that answers 503 twice, then 200, passes
// a check that forgives 3 failures and wants 2 passes in a row; the log
// says each try. The URL takes expressions.
func TestHealthURLPasses(t *testing.T) {
	t.Parallel()
	srv, n := healthServer(t, 2)
	res, rec, _ := run(t, `
jobs: {build: {steps: [x]}}
environments:
  staging:
    env: {BASE: `+srv.URL+`}
    steps: ["echo deployed"]
    health: {url: "${{ env.BASE }}/healthz", interval: 10ms, successes: 2, retries: 3}
`, setup{trigger: deployTrigger})
	if res.Status != engine.Success {
		t.Fatalf("deployment = %s (%s), want success; log:\n%s", res.Status, res.Jobs[0].Reason, rec.log("deploy:staging"))
	}
	if st := healthStep(t, res); st.Status != engine.Success {
		t.Errorf("health step = %+v, want success", st)
	}
	if got := n.Load(); got != 4 {
		t.Errorf("%d GETs, want 4 (2 failed, 2 passed)", got)
	}
	log := rec.log("deploy:staging")
	for _, want := range []string{
		"deployed\n",
		"health: GET " + srv.URL + "/healthz until 2 in a row pass",
		"health: try 1 failed: 503 Service Unavailable: warming up (1 of 3 failures forgiven)\n",
		"health: try 4 passed (2 of 2 in a row)\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestHealthURLFails: a service that never answers 2xx fails the check,
// and so the deployment, after retries+1 tries, saying why.
func TestHealthURLFails(t *testing.T) {
	t.Parallel()
	srv, n := healthServer(t, 1000)
	res, rec, _ := run(t, `
jobs: {build: {steps: [x]}}
environments:
  staging:
    steps: ["echo deployed"]
    health: {url: "`+srv.URL+`", interval: 10ms, retries: 2}
`, setup{trigger: deployTrigger})
	if res.Status != engine.Failure {
		t.Fatalf("deployment = %s, want failure; log:\n%s", res.Status, rec.log("deploy:staging"))
	}
	st := healthStep(t, res)
	want := "health check failed: 3 tries failed, the last: 503 Service Unavailable: warming up"
	if st.Status != engine.Failure || st.Reason != want {
		t.Errorf("health step = %s %q, want failure %q", st.Status, st.Reason, want)
	}
	if got := res.Jobs[0].Reason; got != `step "health": `+want {
		t.Errorf("job reason = %q", got)
	}
	if got := n.Load(); got != 3 {
		t.Errorf("%d GETs, want 3", got)
	}
}

// TestHealthAfterFailedSteps: when a step fails, the check does not run.
func TestHealthAfterFailedSteps(t *testing.T) {
	t.Parallel()
	srv, n := healthServer(t, 0)
	res, _, _ := run(t, `
jobs: {build: {steps: [x]}}
environments:
  staging:
    steps: ["exit 3"]
    health: {url: "`+srv.URL+`"}
`, setup{trigger: deployTrigger})
	if st := healthStep(t, res); res.Status != engine.Failure || st.Status != engine.Skipped {
		t.Errorf("deployment %s, health step %s, want failure and skipped", res.Status, st.Status)
	}
	if n.Load() != 0 {
		t.Errorf("the check ran after a failed step")
	}
}

// TestHealthCommand: a command check runs in the workspace, with the
// job's env, until it passes; its output is in the log; a command that
// outlives its timeout counts as a failed try.
func TestHealthCommand(t *testing.T) {
	t.Parallel()
	res, rec, _ := run(t, `
jobs: {build: {steps: [x]}}
environments:
  staging:
    env: {WANT: ready}
    steps: ["echo starting > state"]
    health:
      run: 'cat state; n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; if [ "$n" = 0 ]; then sleep 5; fi; [ "$n" -ge 2 ] && echo $WANT > state; grep -q $WANT state'
      timeout: 1s
      interval: 10ms
      successes: 1
`, setup{trigger: deployTrigger})
	log := rec.log("deploy:staging")
	if res.Status != engine.Success {
		t.Fatalf("deployment = %s (%s), want success; log:\n%s", res.Status, res.Jobs[0].Reason, log)
	}
	for _, want := range []string{
		"health: try 1 failed: did not finish within 1s (1 of 3 failures forgiven)\n",
		"health: try 2 failed: exit code 1 (2 of 3 failures forgiven)\n",
		"health: try 3 passed (1 of 1 in a row)\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
