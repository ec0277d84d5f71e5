package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// healthPipeline deploys dist/app to staging by copying it into out, and
// checks staging's health at url; production, promoted from staging and
// approved by a releaser, gets the same bytes.
func healthPipeline(out, url string) string {
	return fmt.Sprintf(`
jobs:
  build:
    steps:
      - run: |
          mkdir -p dist
          cp app.txt dist/app
    artifacts: [dist/app]
environments:
  staging:
    deploy: {branch: main}
    steps: ["cp dist/app %[1]s/staging-app"]
    health: {url: "%[2]s", interval: 50ms, successes: 2, retries: 2}
  production:
    promote-from: staging
    approvals: {required: 1, groups: [releasers]}
    steps: ["cp dist/app %[1]s/production-app"]
`, out, url)
}

// appService is the service staging runs: healthy while the app deployed
// into dir does not say "broken".
func appService(t *testing.T, dir string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(dir, "staging-app"))
		if err != nil || strings.Contains(string(b), "broken") {
			http.Error(w, "unhealthy: "+strings.TrimSpace(string(b)), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHealthRollbackEndToEnd, through the binary: a push deploys to
// staging by itself, where the health check passes; production takes the
// very bytes after a releaser approves; a second release that breaks the
// service fails its health check on staging and the first release goes
// back by itself, bytes and all; gantry envs, deployments and audit say
// so at every point, and the audit log verifies.
func TestHealthRollbackEndToEnd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	srv := appService(t, out)
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": healthPipeline(out, srv.URL+"/healthz"), "app.txt": "app v1\n"})
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")
	tok := map[string]string{}
	for _, u := range []string{"test", "rita", "nina"} { // test authored the commits
		tok[u] = tokenIn(t, admin("user", "add", u))
		admin("role", "grant", "acme/app", "developer", "--user", u)
	}
	admin("group", "add", "releasers", "rita", "test")

	b1 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", first, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	v1 := fmt.Sprintf("main-%d", b1.Number)
	st := waitLive(t, s, "acme/app", "staging", v1)
	if log := logText(t, s, st.Current.BuildID); !strings.Contains(log, "health: try 2 passed (2 of 2 in a row)") {
		t.Errorf("staging's deployment log does not show the health check passing:\n%s", log)
	}
	if envs := envsOf(t, s, "acme/app"); envs["production"].Current != nil || envs["production"].Active != nil {
		t.Errorf("production before any promotion = %+v, want nothing", envs["production"])
	}

	// Production waits for a releaser: the author and a non-member are refused.
	stdout := admin("promote", "acme/app", "--from", "staging", "--to", "production", "--output", "json")
	var d api.Deployment
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("promote printed %q: %v", stdout, err)
	}
	if e := envsOf(t, s, "acme/app")["production"]; len(e.Waiting) != 1 || e.Waiting[0].State != "waiting for approval" {
		t.Fatalf("production after the promotion = %+v, want one waiting for approval", e)
	}
	id := fmt.Sprint(d.ID)
	if _, errOut, code := s.cli("approve", id, "--token", tok["test"]); code != 1 || !strings.Contains(errOut, "test authored a commit of release "+v1) {
		t.Errorf("approve as the author = %d %q, want refused", code, errOut)
	}
	if _, errOut, code := s.cli("approve", id, "--token", tok["nina"]); code != 1 || !strings.Contains(errOut, "only members of releasers may") {
		t.Errorf("approve as a non-member = %d %q, want refused", code, errOut)
	}
	if _, errOut, code := s.cli("approve", id, "--token", tok["rita"]); code != 0 {
		t.Fatalf("approve as rita = %d %q", code, errOut)
	}
	waitLive(t, s, "acme/app", "production", v1)
	if got, want := digest(readFile(t, filepath.Join(out, "production-app"))), digest(readFile(t, filepath.Join(out, "staging-app"))); got != want || got != digest("app v1\n") {
		t.Errorf("production runs bytes of SHA-256 %s, staging %s, want both %s", got, want, digest("app v1\n"))
	}
	arts := cliJSON[[]api.Artifact](t, s, "artifacts", fmt.Sprint(b1.ID))
	if len(arts) != 1 || arts[0].SHA256 != digest("app v1\n") {
		t.Errorf("artifacts = %+v, want dist/app with the digest production runs", arts)
	}

	// A release that breaks the service: staging's check fails, v1 goes back.
	second := commit(t, repoDir, map[string]string{"app.txt": "app v2 broken\n"})
	b2 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", second, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	v2 := fmt.Sprintf("main-%d", b2.Number)
	var failed, rollback *api.Deployment
	waitFor(t, 60*time.Second, "no automatic rollback of "+v2+" that succeeded\nserver log:\n"+s.stderr.String(), func() bool {
		failed, rollback = nil, nil
		for _, d := range cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "staging") {
			switch {
			case d.Release == v2 && d.State == "failed":
				failed = &d
			case d.Kind == "auto-rollback" && d.State == "succeeded":
				rollback = &d
			}
		}
		return failed != nil && rollback != nil
	})
	if !strings.Contains(failed.Reason, "health check failed: 3 tries failed, the last: 500 Internal Server Error: unhealthy: app v2 broken") ||
		!strings.Contains(failed.Reason, fmt.Sprintf("rolling back to %s (deployment %d)", v1, rollback.ID)) {
		t.Errorf("the failed deployment's reason = %q, want the health check's failure and the rollback", failed.Reason)
	}
	if rollback.Release != v1 || rollback.RequestedBy != "" {
		t.Errorf("rollback = %+v, want %s by Gantry itself", rollback, v1)
	}
	if got := readFile(t, filepath.Join(out, "staging-app")); got != "app v1\n" {
		t.Errorf("staging runs %q after the rollback, want v1's bytes", got)
	}
	e := envsOf(t, s, "acme/app")
	if e["staging"].Current == nil || e["staging"].Current.Release != v1 || e["staging"].Current.Kind != "auto-rollback" ||
		e["staging"].Active != nil || len(e["staging"].Waiting) != 0 {
		t.Errorf("staging = %+v, want %s live again by the automatic rollback, nothing active or waiting", e["staging"], v1)
	}
	if e["production"].Current == nil || e["production"].Current.Release != v1 {
		t.Errorf("production = %+v, want %s untouched", e["production"], v1)
	}
	text := admin("deployments", "acme/app", "--env", "staging")
	if !strings.Contains(text, "auto-rollback") || !strings.Contains(text, "health check failed") {
		t.Errorf("gantry deployments does not show the rollback and why:\n%s", text)
	}
	audit := admin("audit", "--output", "json", "--limit", "1000")
	for _, want := range []string{`"action": "deployment.auto-rollback"`, `"instead_of": "` + v2 + `"`, `"action": "deployment.approve"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit has no %s", want)
		}
	}
	if out := admin("audit", "verify"); !strings.HasPrefix(out, "audit log intact") {
		t.Errorf("gantry audit verify = %q", out)
	}
}
