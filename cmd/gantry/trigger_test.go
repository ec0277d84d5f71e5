package main

import (
	"strings"
	"testing"
)

// A manual build of a branch at a given commit must be of a commit on that
// branch: else any commit, a fork's too, could pass for the branch's, and
// make its releases.
func TestTriggerCommitMustBeOnBranch(t *testing.T) {
	t.Parallel()
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": "jobs:\n  test:\n    steps: [\"true\"]\n"})
	commit(t, repoDir, map[string]string{"README": "second\n"})
	gitCmd(t, repoDir, "checkout", "-q", "-b", "elsewhere")
	other := commit(t, repoDir, map[string]string{"README": "not on main\n"})
	gitCmd(t, repoDir, "checkout", "-q", "main")
	s := startServer(t, t.TempDir())
	mustCLI(t, s, "repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")

	// An older commit of main is fine.
	if out, errOut, code := s.cli("trigger", "acme/app", "--branch", "main", "--commit", first); code != 0 {
		t.Errorf("trigger of an older commit of main = %d %s%s, want 0", code, out, errOut)
	}
	// A commit of another branch is refused, and no build is made.
	_, errOut, code := s.cli("trigger", "acme/app", "--branch", "main", "--commit", other)
	if code != 1 || !strings.Contains(errOut, "commit "+other+" is not on branch main of acme/app") {
		t.Errorf("trigger of another branch's commit as main = %d %q, want 1 saying it is not on main", code, errOut)
	}
	if out := mustCLI(t, s, "builds", "acme/app"); strings.Count(out, "manual") != 1 {
		t.Errorf("builds after a refused trigger:\n%s", out)
	}
	// The same commit as its own branch's is fine.
	if _, errOut, code := s.cli("trigger", "acme/app", "--branch", "elsewhere", "--commit", other); code != 0 {
		t.Errorf("trigger of elsewhere at its own commit = %d %s", code, errOut)
	}
}
