package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// TestRepoAddAsksTheForge registers repositories through the binary: the
// server reads the repository at its URL, takes its default branch from
// there when none is given, and warns at once, without refusing, when it
// cannot read it (every build would fail).
func TestRepoAddAsksTheForge(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	dir, _ := makeRepo(t, map[string]string{".gantry.yml": "jobs: {test: {steps: [\"echo on $GANTRY_BRANCH\"]}}\n"})
	gitCmd(t, dir, "branch", "-m", "main", "trunk")

	out, errOut, code := s.cli("repo", "add", "acme/app", "--url", dir, "--webhook-secret", "k")
	if code != 0 || errOut != "" || !strings.Contains(out, "added acme/app (github, default branch trunk)") {
		t.Fatalf("repo add of a trunk repository = %d\n%s%s; want it added with default branch trunk and no warning", code, out, errOut)
	}
	// A manual build without a branch builds the default one.
	out, errOut, code = s.cli("trigger", "acme/app", "--output", "json")
	var b api.Build
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil {
		t.Fatalf("trigger = %d\n%s%s", code, out, errOut)
	}
	if b.Branch != "trunk" {
		t.Errorf("trigger without --branch built %q, want trunk", b.Branch)
	}
	if got := s.waitBuild(b.ID, 30*time.Second); got.Status != "success" {
		t.Errorf("build of trunk = %s, want success", got.Status)
	}

	// A name taken is refused, before the forge is asked.
	if out, errOut, code := s.cli("repo", "add", "acme/app", "--url", filepath.Join(t.TempDir(), "other"), "--webhook-secret", "k"); code == 0 || !strings.Contains(errOut, "already exists") || strings.Contains(errOut, "warning") {
		t.Errorf("repo add of a name taken = %d\n%s%s; want refused as already there, without asking the URL", code, out, errOut)
	}

	// --default-branch wins over what the repository says.
	out, errOut, code = s.cli("repo", "add", "acme/pinned", "--url", dir, "--webhook-secret", "k", "--default-branch", "release")
	if code != 0 || !strings.Contains(out, "default branch release") {
		t.Errorf("repo add --default-branch release = %d\n%s%s", code, out, errOut)
	}

	// A URL the server cannot read: registered, with git's reason on stderr.
	gone := filepath.Join(t.TempDir(), "gone.git")
	out, errOut, code = s.cli("repo", "add", "acme/gone", "--url", gone, "--webhook-secret", "k", "--output", "json")
	var added api.RepoAnswer
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil {
		t.Fatalf("repo add of a missing repository = %d\n%s%s; want it added with a warning", code, out, errOut)
	}
	wantWhy := "the server cannot read the repository: reach " + gone + ": git: fatal: '" + gone + "' does not appear to be a git repository"
	if !strings.Contains(added.Warning, wantWhy) || added.DefaultBranch != "main" {
		t.Errorf("repo add of a missing repository answered warning %q, default branch %q; want %q and main", added.Warning, added.DefaultBranch, wantWhy)
	}
	if !strings.HasPrefix(errOut, "gantry repo add: warning: "+wantWhy) {
		t.Errorf("repo add of a missing repository printed %q on stderr, want the warning", errOut)
	}
	out, _, _ = s.cli("repo", "list")
	if !strings.Contains(out, "acme/gone") {
		t.Errorf("repo list = %q, want acme/gone registered", out)
	}

	// Credentials in a clone URL are for fetching: no listing, answer,
	// warning or audit entry shows them. (A port nothing listens on, on
	// this machine: the probe fails at once.)
	secretURL := "https://ci-bot:s3cret-token@127.0.0.1:1/acme/private.git"
	out, errOut, code = s.cli("repo", "add", "acme/private", "--url", secretURL, "--webhook-secret", "k", "--output", "json")
	if code != 0 || strings.Contains(out+errOut, "s3cret-token") || !strings.Contains(out, "https://***@127.0.0.1:1/acme/private.git") {
		t.Errorf("repo add with credentials in the URL = %d\n%s%s; want them shown as ***", code, out, errOut)
	}
	for _, args := range [][]string{{"repo", "list"}, {"repo", "list", "--output", "json"}, {"audit", "--output", "json"}} {
		if out, errOut, _ := s.cli(args...); strings.Contains(out+errOut, "s3cret-token") {
			t.Errorf("gantry %s shows the clone URL's credentials:\n%s%s", strings.Join(args, " "), out, errOut)
		}
	}
}

// TestRepoSet fixes a repository registered with a wrong URL and rotates
// its webhook secret, through the binary: its builds stay, the old secret
// is refused at once, and the new settings build.
func TestRepoSet(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	dir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {test: {steps: [\"echo hi\"]}}\n"})
	wrong := filepath.Join(t.TempDir(), "typo.git")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", wrong, "--webhook-secret", "old"); code != 0 || !strings.Contains(errOut, "warning") {
		t.Fatalf("repo add with a wrong URL = %d %s, want added with a warning", code, errOut)
	}
	failed := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d1", "old")).body.Builds[0]
	if failed.Status != "error" || !strings.Contains(failed.Reason, "does not appear to be a git repository") {
		t.Fatalf("build from the wrong URL = %s %q, want an error saying why", failed.Status, failed.Reason)
	}

	if out, errOut, code := s.cli("repo", "set", "acme/app"); code != 2 || !strings.Contains(errOut, "nothing to change") {
		t.Errorf("repo set without a flag = %d\n%s%s; want a usage error", code, out, errOut)
	}
	if out, errOut, code := s.cli("repo", "set", "acme/none", "--url", dir); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("repo set of an unknown repo = %d\n%s%s; want not found", code, out, errOut)
	}
	if out, errOut, code := s.cli("repo", "set", "acme/app", "--forge", "sourcehut"); code == 0 || !strings.Contains(errOut, `forge "sourcehut"`) {
		t.Errorf("repo set --forge sourcehut = %d\n%s%s; want refused", code, out, errOut)
	}
	out, errOut, code := s.cli("repo", "set", "acme/app", "--url", dir, "--webhook-secret", "new")
	if code != 0 || errOut != "" || !strings.Contains(out, "updated acme/app: url, webhook-secret") {
		t.Fatalf("repo set --url --webhook-secret = %d\n%s%s; want updated without a warning", code, out, errOut)
	}

	if a := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d2", "old")); a.status != 401 {
		t.Errorf("push signed with the old secret = %d, want 401", a.status)
	}
	a := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "d3", "new"))
	if a.status != 201 {
		t.Fatalf("push signed with the new secret = %d, want 201", a.status)
	}
	if b := s.waitBuild(a.body.Builds[0].ID, 30*time.Second); b.Status != "success" {
		t.Errorf("build after the URL was fixed = %s %q, want success", b.Status, b.Reason)
	}
	if b, err := s.client().Build(t.Context(), failed.ID); err != nil || b.Status != "error" {
		t.Errorf("the build from before = %v, %v; want it kept", b, err)
	}
	out, _, _ = s.cli("audit", "--output", "json")
	if !strings.Contains(out, "repo.update") || !strings.Contains(out, `"webhook_secret": "changed"`) || strings.Contains(out, `"new"`) {
		t.Errorf("audit after repo set = %s; want repo.update with the secret changed but not shown", out)
	}
}
