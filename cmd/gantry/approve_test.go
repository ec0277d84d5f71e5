package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// approvalPipeline: staging by itself; production only by deployers, after
// two releasers approved, never an author nor the requester; frozen has a
// freeze window that is always open (every minute, for two).
func approvalPipeline(out string) string {
	return fmt.Sprintf(`
jobs:
  build:
    steps:
      - run: |
          mkdir -p dist
          echo "app of $GANTRY_COMMIT" > dist/app
    artifacts: [dist/app]
environments:
  staging:
    deploy: {branch: main}
    steps: ["cp dist/app %[1]s/staging-app"]
  production:
    promote-from: staging
    groups: [deployers]
    approvals: {required: 2, groups: [releasers], author-may-approve: false}
    steps: ["cp dist/app %[1]s/production-app"]
  frozen:
    freeze:
      - {cron: "* * * * *", duration: 2m, reason: the big migration}
    steps: ["cp dist/app %[1]s/frozen-app"]
`, out)
}

// TestApprovalsEndToEnd: who may deploy, separation of duties, two
// approvals, a rejection, and a freeze window with an admin's override,
// through the real binary; each act in gantry audit.
func TestApprovalsEndToEnd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": approvalPipeline(out)})
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")
	tok := map[string]string{}
	// test is the author of the commits (makeRepo's "Test <test@example.com>").
	for _, u := range []string{"test", "dora", "bob", "cat", "eve"} {
		tok[u] = tokenIn(t, admin("user", "add", u))
		admin("role", "grant", "acme/app", "developer", "--user", u)
	}
	admin("group", "add", "deployers", "dora", "test")
	admin("group", "add", "releasers", "bob", "cat", "test", "dora")
	as := func(u string, args ...string) (string, string, int) {
		t.Helper()
		return s.cli(append(args, "--token", tok[u])...)
	}

	_, v1 := pushLive(t, s, first, "d1")

	// Who may deploy: eve, a developer outside deployers, is refused and
	// nothing changes.
	_, errOut, code := as("eve", "promote", "acme/app", "--from", "staging", "--to", "production")
	if code != 1 || !strings.Contains(errOut, "403: eve may not deploy to production: only members of deployers (and admins) may") {
		t.Errorf("promote as eve = %d %q, want 403 saying only deployers may", code, errOut)
	}
	if ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production"); len(ds) != 0 {
		t.Errorf("deployments to production after eve's refusal = %+v, want none", ds)
	}

	// dora, a deployer, promotes: it waits for approval.
	stdout, errOut, code := as("dora", "promote", "acme/app", "--from", "staging", "--to", "production")
	if code != 0 || !strings.Contains(stdout, "waiting for approval") {
		t.Fatalf("promote as dora = %d %q %q, want it waiting for approval", code, stdout, errOut)
	}
	ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")
	if len(ds) != 1 || ds[0].State != "waiting for approval" || ds[0].Approvals == nil || ds[0].Approvals.Required != 2 || len(ds[0].Approvals.ApprovedBy) != 0 {
		t.Fatalf("deployments = %+v, want one waiting for approval, 0 of 2", ds)
	}
	id := fmt.Sprint(ds[0].ID)

	// Separation of duties: the author, the requester, and a non-releaser
	// are refused, each told why; nothing is recorded.
	for _, c := range []struct{ who, says string }{
		{"test", "test authored a commit of release " + v1 + " (Test <test@example.com>), and production does not let its authors approve it (author-may-approve: false)"},
		{"dora", "dora requested deployment " + id + ", and production does not let the requester approve it"},
		{"eve", "eve may not approve deployments to production: only members of releasers may (approvals.groups), and eve is in no group"},
	} {
		if _, errOut, code := as(c.who, "approve", id); code != 1 || !strings.Contains(errOut, c.says) {
			t.Errorf("approve as %s = %d %q, want refused saying %q", c.who, code, errOut, c.says)
		}
	}
	// One releaser is not enough.
	if stdout, errOut, code := as("bob", "approve", id, "--comment", "checked the changelog"); code != 0 || !strings.Contains(stdout, "waiting for approval, approved 1/2 bob") {
		t.Fatalf("approve as bob = %d %q %q, want 1 of 2", code, stdout, errOut)
	}
	if _, errOut, code := as("bob", "approve", id); code != 1 || !strings.Contains(errOut, "bob has decided on deployment "+id+" already") {
		t.Errorf("approve as bob again = %d %q, want refused", code, errOut)
	}
	text := admin("envs", "acme/app")
	if !strings.Contains(text, "waiting for approval: 1/2 bob") {
		t.Errorf("gantry envs does not show the approval so far:\n%s", text)
	}
	text = admin("deployments", "acme/app", "--env", "production")
	if !strings.Contains(text, "waiting for approval") || !strings.Contains(text, "1/2 bob") {
		t.Errorf("gantry deployments does not show the approval so far:\n%s", text)
	}
	// The second releaser: it deploys the tested bytes.
	if _, errOut, code := as("cat", "approve", id); code != 0 {
		t.Fatalf("approve as cat = %d %q", code, errOut)
	}
	waitLive(t, s, "acme/app", "production", v1)
	if readFile(t, filepath.Join(out, "production-app")) != "app of "+first+"\n" {
		t.Errorf("production runs %q", readFile(t, filepath.Join(out, "production-app")))
	}
	ds = cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")
	if ds[0].State != "succeeded" || !slices.Equal(ds[0].Approvals.ApprovedBy, []string{"bob", "cat"}) {
		t.Errorf("deployment after approvals = %+v, want succeeded, approved by bob and cat", ds[0])
	}

	// A rejection ends a deployment; the reject needs a comment.
	stdout, _, _ = as("dora", "deploy", "acme/app", "production", "--release", v1, "--output", "json")
	if _, errOut, code := as("bob", "reject", id); code != exitUsage || !strings.Contains(errOut, "--comment is required") {
		t.Errorf("reject without a comment = %d %q, want a usage error", code, errOut)
	}
	ds = cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")
	second := fmt.Sprint(ds[0].ID)
	if stdout, errOut, code := as("bob", "reject", second, "--comment", "not on a Friday"); code != 0 || !strings.Contains(stdout, "failed") ||
		!strings.Contains(stdout, "rejected by bob: not on a Friday") {
		t.Errorf("reject as bob = %d %q %q, want it failed with the comment", code, stdout, errOut)
	}

	// A freeze window refuses everyone; an admin may override, with a reason.
	_, errOut, code = as("dora", "deploy", "acme/app", "frozen", "--release", v1)
	if code != 1 || !strings.Contains(errOut, "frozen is frozen until") || !strings.Contains(errOut, "(the big migration)") {
		t.Errorf("deploy to frozen as dora = %d %q, want refused: frozen", code, errOut)
	}
	if _, errOut, code := as("dora", "deploy", "acme/app", "frozen", "--release", v1, "--override-freeze", "--reason", "please"); code != 1 ||
		!strings.Contains(errOut, "dora may not override a freeze window: only an admin may") {
		t.Errorf("override as dora = %d %q, want refused", code, errOut)
	}
	if _, errOut, code := s.cli("deploy", "acme/app", "frozen", "--release", v1, "--override-freeze"); code != exitUsage || !strings.Contains(errOut, "--override-freeze needs --reason") {
		t.Errorf("override without a reason = %d %q, want a usage error", code, errOut)
	}
	envs := envsOf(t, s, "acme/app")
	if f := envs["frozen"].Frozen; f == nil || f.Reason != "the big migration" || !f.Until.After(time.Now()) || envs["frozen"].Last != nil {
		t.Errorf("envs frozen = %+v, want frozen for the big migration, nothing deployed", envs["frozen"])
	}
	if text := admin("envs", "acme/app"); !strings.Contains(text, "until ") || !strings.Contains(text, "(the big migration)") {
		t.Errorf("gantry envs does not show the freeze:\n%s", text)
	}
	if stdout, errOut, code := s.cli("deploy", "acme/app", "frozen", "--release", v1, "--override-freeze", "--reason", "INC-9 hotfix", "--wait"); code != 0 ||
		!strings.Contains(stdout, "succeeded") {
		t.Fatalf("override as admin = %d %q %q\nserver log:\n%s", code, stdout, errOut, s.stderr)
	}
	if readFile(t, filepath.Join(out, "frozen-app")) != "app of "+first+"\n" {
		t.Errorf("frozen runs %q after the override", readFile(t, filepath.Join(out, "frozen-app")))
	}

	// Every decision and the override are in the audit log, which verifies.
	audit := admin("audit", "--output", "json", "--limit", "1000")
	for _, want := range []string{`"action": "deployment.approve"`, `"actor": "bob"`, `"actor": "cat"`, `"comment": "checked the changelog"`,
		`"action": "deployment.reject"`, `"comment": "not on a Friday"`, `"action": "deployment.override-freeze"`, `"reason": "INC-9 hotfix"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit has no %s:\n%s", want, audit)
		}
	}
	if out := admin("audit", "verify"); !strings.HasPrefix(out, "audit log intact") {
		t.Errorf("gantry audit verify = %q", out)
	}
}
