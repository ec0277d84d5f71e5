package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// TestFreezeEndToEnd: an admin freezes staging; a push's release waits
// there, saying until when, why and who froze it; a developer's deploy is
// refused and may not set or remove freezes; removing the freeze lets the
// waiting deployment start. Bad requests change nothing; both acts are
// in the audit log.
func TestFreezeEndToEnd(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")
	dev := tokenIn(t, admin("user", "add", "dev"))
	admin("role", "grant", "acme/app", "developer", "--user", "dev")

	// A first release, so that the repo's environments are known.
	b1 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", first, "d1", "k")).body.Builds[0].ID, 60*time.Second)
	v1 := fmt.Sprintf("main-%d", b1.Number)
	waitLive(t, s, "acme/app", "staging", v1)

	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"freeze", "add", "acme/app", "staging", "--until", "2h", "--token", dev, "--reason", "mine"}, 1,
			"dev may not do this: it needs role admin on acme/app"},
		{[]string{"freeze", "add", "acme/app", "staging", "--until", "2h"}, exitUsage, "--until and --reason are required"},
		{[]string{"freeze", "add", "acme/app", "staging", "--until", "soon", "--reason", "x"}, exitUsage, `--until "soon": want an RFC 3339 time`},
		{[]string{"freeze", "add", "acme/app", "stagign", "--until", "2h", "--reason", "x"}, 1,
			"acme/app has no environment stagign (it has staging, production, qa)"},
		{[]string{"freeze", "add", "acme/app", "staging", "--until", "2020-01-01T00:00:00Z", "--reason", "x"}, 1, "in the past"},
		{[]string{"freeze", "add", "acme/app", "staging", "--until", "100d", "--reason", "x"}, 1, "more than the 90 days a freeze may"},
		{[]string{"freeze", "add", "acme/app", "staging", "--from", "3h", "--until", "2h", "--reason", "x"}, 1, "before it starts"},
	} {
		if _, errOut, code := s.cli(c.args...); code != c.code || !strings.Contains(errOut, c.says) {
			t.Errorf("gantry %s = %d %q, want %d saying %q", strings.Join(c.args, " "), code, errOut, c.code, c.says)
		}
	}
	if fs := cliJSON[[]api.Freeze](t, s, "freeze", "list", "acme/app"); len(fs) != 0 {
		t.Fatalf("freezes after refused requests = %+v, want none", fs)
	}

	var f api.Freeze
	if err := json.Unmarshal([]byte(admin("freeze", "add", "acme/app", "staging", "--until", "2h", "--reason", "INC-12 database failover", "--output", "json")), &f); err != nil {
		t.Fatal(err)
	}
	if f.ID == 0 || f.SetBy != "admin" || f.Reason != "INC-12 database failover" || f.Until.Sub(time.Now()) < time.Hour {
		t.Errorf("freeze add = %+v, want set by admin for 2h", f)
	}
	if text := admin("freeze", "list", "acme/app"); !strings.Contains(text, "INC-12 database failover") || !strings.Contains(text, "staging") {
		t.Errorf("gantry freeze list:\n%s", text)
	}

	// A push: its release waits on staging; a person's deploy is refused.
	second := commit(t, repoDir, map[string]string{"README": "two"})
	b2 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", second, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	v2 := fmt.Sprintf("main-%d", b2.Number)
	why := fmt.Sprintf("(INC-12 database failover; freeze %d, set by admin)", f.ID)
	var st api.Environment
	waitFor(t, 30*time.Second, "staging does not show the release waiting for the freeze", func() bool {
		st = envsOf(t, s, "acme/app")["staging"]
		return len(st.Waiting) == 1 && st.Waiting[0].Release == v2 && strings.Contains(st.Waiting[0].Waiting, why)
	})
	if st.Current.Release != v1 || st.Frozen == nil || st.Frozen.SetBy != "admin" || st.Frozen.ID != f.ID {
		t.Errorf("staging = %+v (frozen %+v), want %s still live, frozen by admin's freeze", st.Current, st.Frozen, v1)
	}
	if _, errOut, code := s.cli("deploy", "acme/app", "staging", "--release", v2, "--token", dev); code != 1 || !strings.Contains(errOut, "staging is frozen until") ||
		!strings.Contains(errOut, why) {
		t.Errorf("deploy as dev = %d %q, want refused: frozen, saying why and by whom", code, errOut)
	}
	if _, errOut, code := s.cli("freeze", "rm", fmt.Sprint(f.ID), "--token", dev); code != 1 || !strings.Contains(errOut, "needs role admin") {
		t.Errorf("freeze rm as dev = %d %q, want refused", code, errOut)
	}

	// Removing the freeze lets the waiting release go.
	if text := admin("freeze", "rm", fmt.Sprint(f.ID), "--reason", "failover done"); !strings.Contains(text, fmt.Sprintf("removed freeze %d of staging of acme/app", f.ID)) {
		t.Errorf("freeze rm = %q", text)
	}
	waitLive(t, s, "acme/app", "staging", v2)
	if _, errOut, code := s.cli("freeze", "rm", fmt.Sprint(f.ID)); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("freeze rm again = %d %q, want 404", code, errOut)
	}
	audit := admin("audit", "--output", "json", "--limit", "1000")
	for _, want := range []string{`"action": "freeze.add"`, `"action": "freeze.remove"`, `"reason": "failover done"`, `"reason": "INC-12 database failover"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit has no %s", want)
		}
	}
}
