package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tokenIn returns the first gantry_ token a command printed.
func tokenIn(t *testing.T, out string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "gantry_") {
			return f
		}
	}
	t.Fatalf("no token in %q", out)
	return ""
}

// A team through the CLI: the admin adds people, groups and roles; each
// may do what their role allows, sees only their repos, and is told what
// is missing when refused.
func TestUsersRolesAndTokens(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": "jobs:\n  test:\n    steps: [\"echo hi\"]\n"})
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	as := func(tok string, args ...string) (string, string, int) {
		t.Helper()
		return s.cli(append(args, "--token", tok)...)
	}
	for _, r := range []string{"acme/web", "acme/secret"} {
		admin("repo", "add", r, "--url", repoDir, "--webhook-secret", "k")
	}
	alice := tokenIn(t, admin("user", "add", "alice"))
	bob := tokenIn(t, admin("user", "add", "bob", "--expires", "7d"))
	admin("group", "add", "devs", "alice")
	admin("role", "grant", "acme/web", "developer", "--group", "devs")
	admin("role", "grant", "acme/web", "viewer", "--user", "bob")

	if out, _, code := as(alice, "whoami"); code != 0 || !strings.Contains(out, "alice (user)") || !strings.Contains(out, "developer on acme/web") {
		t.Errorf("whoami as alice = %d %q", code, out)
	}
	// alice, a developer through her group, may trigger; bob, a viewer,
	// may not, and is told why.
	if out, errOut, code := as(alice, "trigger", "acme/web", "--branch", "main"); code != 0 {
		t.Fatalf("trigger as alice = %d %s%s", code, out, errOut)
	}
	out, errOut, code := as(bob, "trigger", "acme/web", "--branch", "main")
	if code != 1 || !strings.Contains(errOut, "bob may not do this: it needs role developer on acme/web, and bob has viewer") {
		t.Errorf("trigger as bob = %d %q %q, want 1 with what is missing", code, out, errOut)
	}
	// Each sees only the repos they have a role on.
	out, _, _ = as(bob, "builds", "--output", "json")
	var builds []struct {
		Repo   string `json:"repo"`
		Author string `json:"author"`
	}
	if err := json.Unmarshal([]byte(out), &builds); err != nil || len(builds) != 1 || builds[0].Author != "alice" {
		t.Errorf("builds as bob = %q (%v), want alice's one build", out, err)
	}
	if out, _, _ := as(bob, "repo", "list"); !strings.Contains(out, "acme/web") || strings.Contains(out, "acme/secret") {
		t.Errorf("repo list as bob = %q, want acme/web only", out)
	}
	if _, errOut, code := as(bob, "user", "add", "mallory", "--admin"); code != 1 || !strings.Contains(errOut, "needs an admin") {
		t.Errorf("user add as bob = %d %q, want refused", code, errOut)
	}

	// Tokens are one's own: alice makes one, sees both, revokes the first.
	laptop := tokenIn(t, mustCLI(t, s, "token", "create", "--name", "laptop", "--expires", "30d", "--token", alice))
	out = mustCLI(t, s, "token", "list", "--output", "json", "--token", laptop)
	var toks []struct {
		ID        int64   `json:"id"`
		Name      string  `json:"name"`
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &toks); err != nil || len(toks) != 2 || toks[1].Name != "laptop" || toks[1].ExpiresAt == nil {
		t.Fatalf("token list = %q (%v), want first and laptop, with an expiry", out, err)
	}
	mustCLI(t, s, "token", "revoke", fmt.Sprint(toks[0].ID), "--token", laptop)
	if _, errOut, code := as(alice, "whoami"); code != 1 || !strings.Contains(errOut, "401") && !strings.Contains(errOut, "invalid API token") {
		t.Errorf("whoami with a revoked token = %d %q, want refused", code, errOut)
	}
	// bob may not revoke alice's token.
	if _, errOut, code := as(bob, "token", "revoke", fmt.Sprint(toks[1].ID)); code != 1 || !strings.Contains(errOut, "needs an admin") {
		t.Errorf("token revoke of alice's as bob = %d %q, want refused", code, errOut)
	}
	// Removing a user ends their tokens at once.
	admin("user", "rm", "alice")
	if _, _, code := as(laptop, "whoami"); code != 1 {
		t.Errorf("whoami of a removed user = %d, want 1", code)
	}
	if _, errOut, code := s.cli("user", "rm", "admin"); code != 1 || !strings.Contains(errOut, "last admin") {
		t.Errorf("removing the last admin = %d %q, want refused", code, errOut)
	}
	// Each of those acts is in the audit log, under the name of who did it.
	out = admin("audit", "--output", "json", "--limit", "1000")
	for _, want := range []string{`"actor": "admin"`, `"action": "user.add"`, `"object": "user:alice"`, `"action": "role.grant"`,
		`"action": "group.add"`, `"actor": "alice"`, `"action": "token.revoke"`, `"action": "user.rm"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit has no %s:\n%s", want, out)
		}
	}
	out = admin("role", "list", "acme/web")
	if !strings.Contains(out, "user bob") || strings.Contains(out, "alice") {
		t.Errorf("role list = %q", out)
	}
}

func mustCLI(t *testing.T, s *testServer, args ...string) string {
	t.Helper()
	out, errOut, code := s.cli(args...)
	if code != 0 {
		t.Fatalf("gantry %s = %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestRevokedTokenEndsStreams: the event stream and a followed log opened
// with a token end, with an error event, within seconds of its revocation.
func TestRevokedTokenEndsStreams(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {slow: {steps: [\"sleep 60\"]}}\n"})
	s := startServer(t, t.TempDir())
	mustCLI(t, s, "repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k")
	eve := tokenIn(t, mustCLI(t, s, "user", "add", "eve"))
	mustCLI(t, s, "role", "grant", "acme/web", "viewer", "--user", "eve")
	b := s.send(pushDelivery(t, "github", "acme/web", "main", sha, "d1", "k")).body.Builds[0]

	open := func(path string) *bufio.Reader {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+eve)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %v, %v", path, resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewReader(resp.Body)
	}
	events := open("/api/v1/events")
	logs := open(fmt.Sprintf("/api/v1/builds/%d/logs?follow=1", b.ID))
	var toks []struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, s, "token", "list", "--user", "eve", "--output", "json")), &toks); err != nil || len(toks) != 1 {
		t.Fatalf("token list --user eve = %+v, %v", toks, err)
	}
	mustCLI(t, s, "token", "revoke", fmt.Sprint(toks[0].ID))
	revoked := time.Now()
	for name, r := range map[string]*bufio.Reader{"events": events, "logs": logs} {
		var got []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Errorf("the %s stream ended (%v) without an error event; it sent %q", name, err, got)
				break
			}
			got = append(got, line)
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, "revoked or has expired") {
				break
			}
		}
		if took := time.Since(revoked); took > 15*time.Second {
			t.Errorf("the %s stream ended %v after the revocation", name, took)
		}
	}
	s.cli("cancel", fmt.Sprint(b.ID))
}
