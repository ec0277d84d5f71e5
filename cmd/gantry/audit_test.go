package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestAuditEndToEnd runs the real server on SQLite and on PostgreSQL: acts
// made through the CLI with --reason, and a webhook's build, are each in
// `gantry audit` with actor, address and reason; `gantry audit verify`
// passes, then catches a row edited and a row removed directly in the
// database, and with --anchor the removal of the newest entries.
func TestAuditEndToEnd(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			var exec func(q string)
			var s *testServer
			switch kind {
			case "sqlite":
				s = startServer(t, data)
				exec = func(q string) {
					t.Helper()
					// The server writes too (job heartbeats): wait for its lock.
					db, err := sql.Open("sqlite", filepath.Join(data, "gantry.db")+"?_pragma=busy_timeout(10000)")
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					if _, err := db.Exec(q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
			case "postgres":
				url := pgtest.URL(t)
				s = startServer(t, data, "--database", url)
				exec = func(q string) {
					t.Helper()
					db, err := pgxpool.New(context.Background(), url)
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					if _, err := db.Exec(context.Background(), q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
			}
			testAuditEndToEnd(t, s, exec, map[string]string{
				"sqlite":   "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
				"postgres": "ALTER TABLE audit_log DISABLE TRIGGER USER",
			}[kind])
		})
	}
}

func testAuditEndToEnd(t *testing.T, s *testServer, exec func(q string), unprotect string) {
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {test: {steps: [\"sleep 30\"]}}\n"})
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := s.cli(args...)
		if code != 0 {
			t.Fatalf("gantry %s = %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	const why = "ticket OPS-42: onboarding"
	run("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "hush", "--reason", why)
	var b api.Build
	if err := json.Unmarshal([]byte(run("trigger", "acme/web", "--output", "json", "--reason", "try the new runner")), &b); err != nil {
		t.Fatal(err)
	}
	run("cancel", fmt.Sprint(b.ID), "--reason", "wrong branch")
	var retried api.Build
	if err := json.Unmarshal([]byte(run("retry", fmt.Sprint(b.ID), "--output", "json")), &retried); err != nil { // no reason given
		t.Fatal(err)
	}
	run("lock", "add", "deploy", "--capacity", "1", "--reason", why)
	run("lock", "rm", "deploy", "--reason", why)
	var tok api.AgentToken
	if err := json.Unmarshal([]byte(run("agent-token", "create", "builders", "--output", "json", "--reason", why)), &tok); err != nil {
		t.Fatal(err)
	}
	run("agent-token", "revoke", fmt.Sprint(tok.ID), "--reason", "laptop lost")
	a := s.send(pushDelivery(t, "github", "acme/web", "main", sha, "d-1", "hush"))
	if a.status != http.StatusCreated || len(a.body.Builds) != 1 {
		t.Fatalf("push = %d %+v", a.status, a.body)
	}
	pushed := a.body.Builds[0].ID
	// A redelivery makes no build and no entry.
	s.send(pushDelivery(t, "github", "acme/web", "main", sha, "d-1", "hush"))
	t.Cleanup(func() {
		// Before the server stops (cleanups run last first): no build of
		// `sleep 30` holds up its drain.
		s.client().Cancel(context.Background(), retried.ID)
		s.client().Cancel(context.Background(), pushed)
	})

	// The listing, newest first: who, from where, what, on what, why.
	out := run("audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`^SEQ +TIME +ACTOR +ADDRESS +ACTION +OBJECT +REASON +DETAIL$`,
		fmt.Sprintf(`^9 .* forge:github +127\.0\.0\.1 +build\.trigger +build:%d +- +author=.* branch=main commit=%s delivery=d-1 event=push number=3 repo=acme/web$`, pushed, sha),
		fmt.Sprintf(`^8 .* admin +127\.0\.0\.1 +token\.revoke +token:%d +laptop lost +kind=agent name=builders$`, tok.ID),
		fmt.Sprintf(`^7 .* admin +127\.0\.0\.1 +token\.create +token:%d +ticket OPS-42: onboarding +kind=agent labels="" name=builders$`, tok.ID),
		`^6 .* admin +127\.0\.0\.1 +lock\.rm +lock:deploy +ticket OPS-42: onboarding +-$`,
		`^5 .* admin +127\.0\.0\.1 +lock\.add +lock:deploy +ticket OPS-42: onboarding +capacity=1$`,
		fmt.Sprintf(`^4 .* admin +127\.0\.0\.1 +build\.retry +build:%d +- +failed_only=false new_build=%d repo=acme/web$`, b.ID, retried.ID),
		fmt.Sprintf(`^3 .* admin +127\.0\.0\.1 +build\.cancel +build:%d +wrong branch +number=1 repo=acme/web status=cancelled$`, b.ID),
		fmt.Sprintf(`^2 .* admin +127\.0\.0\.1 +build\.trigger +build:%d +try the new runner +branch=main commit=%s number=1 repo=acme/web$`, b.ID, sha),
		`^1 .* admin +127\.0\.0\.1 +repo\.add +repo:acme/web +ticket OPS-42: onboarding +clone_url=\S+ default_branch=main forge=github$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("gantry audit printed %d lines, want a header and 9 entries:\n%s", len(lines), out)
	}
	for i, l := range lines {
		if !regexp.MustCompile(want[i]).MatchString(l) {
			t.Errorf("gantry audit line %d = %q\nwant match %s", i, l, want[i])
		}
	}
	if strings.Contains(out, "hush") {
		t.Errorf("gantry audit shows the webhook secret:\n%s", out)
	}

	// Filters, and JSON.
	var entries []api.AuditEntry
	if err := json.Unmarshal([]byte(run("audit", "--actor", "admin", "--since", "1h", "--output", "json")), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 8 || entries[0].Action != "token.revoke" || entries[0].Reason != "laptop lost" || entries[0].Address != "127.0.0.1" {
		t.Errorf("gantry audit --actor admin --output json = %+v, want the 8 acts of the admin token", entries)
	}
	if out := run("audit", "--action", "build.cancel", "--object", fmt.Sprintf("build:%d", b.ID)); strings.Count(out, "\n") != 2 || !strings.Contains(out, "wrong branch") {
		t.Errorf("gantry audit --action build.cancel --object build:%d =\n%s\nwant the one cancel", b.ID, out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := run("audit", "--since", future); strings.Count(out, "\n") != 1 {
		t.Errorf("gantry audit --since %s =\n%s\nwant only the header", future, out)
	}
	if out, errOut, code := s.cli("audit", "--since", "yesterday"); code != exitUsage || out != "" || !strings.Contains(errOut, `--since: "yesterday": want an RFC 3339 time`) {
		t.Errorf("gantry audit --since yesterday = %d %q %q, want usage error", code, out, errOut)
	}
	if _, errOut, code := s.cli("lock", "add", "x", "--reason", "two\nlines"); code != exitUsage || !strings.Contains(errOut, "--reason: reason has a control character (U+000A)") {
		t.Errorf("lock add --reason with a newline = %d %q, want usage error", code, errOut)
	}

	// verify: intact, then catches a direct edit, a removal, and with an
	// anchor the removal of the newest entries.
	out = run("audit", "verify")
	m := regexp.MustCompile(`^audit log intact: 9 entries checked; newest (9:[0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("gantry audit verify printed %q", out)
	}
	anchor := m[1]
	exec(unprotect)
	exec("DELETE FROM audit_log WHERE seq = 9")
	if out := run("audit", "verify"); !strings.HasPrefix(out, "audit log intact: 8 entries checked; newest 8:") {
		t.Errorf("after the newest entry was removed, gantry audit verify = %q; the chain alone cannot tell", out)
	}
	out, errOut, code := s.cli("audit", "verify", "--anchor", anchor)
	if code != exitFailed || out != "audit log BROKEN at entry 9: the log ends at entry 8 but the anchor names entry 9: entry 9 was removed\n"+
		"8 entries before it are intact; the last of them is "+strings.TrimSpace(strings.TrimPrefix(run("audit", "verify"), "audit log intact: 8 entries checked; newest "))+"\n" {
		t.Errorf("gantry audit verify --anchor %s = %d\n%s%s", anchor, code, out, errOut)
	}
	exec("DELETE FROM audit_log WHERE seq = 5")
	out, _, code = s.cli("audit", "verify")
	if code != exitFailed || !strings.HasPrefix(out, "audit log BROKEN at entry 5: entry 5 was removed: the log goes from entry 4 to entry 6\n4 entries before it are intact") {
		t.Errorf("after removing entry 5, gantry audit verify = %d %q", code, out)
	}
	exec("UPDATE audit_log SET reason = 'routine' WHERE seq = 3")
	out, _, code = s.cli("audit", "verify", "--output", "json")
	var v api.AuditVerification
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitFailed || v.OK || v.Problem == nil || v.Problem.Seq != 3 ||
		v.Problem.Message != "entry 3 was altered: its fields do not match its hash" || v.Checked != 2 {
		t.Errorf("after editing entry 3, gantry audit verify --output json = %d %q", code, out)
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "2025-01-02T15:04:05Z", want: time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)},
		{in: "2025-01-02T15:04:05.5+02:00", want: time.Date(2025, 1, 2, 13, 4, 5, 500000000, time.UTC)},
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "7d", want: now.Add(-7 * 24 * time.Hour)},
		{in: "0d", want: now},
		{in: "yesterday", err: `"yesterday": want an RFC 3339 time`},
		{in: "", err: `"": want an RFC 3339 time`},
		{in: "-1h", err: "must not be negative"},
		{in: "1.5d", err: "whole number of days"},
		{in: "d", err: "whole number of days"},
		{in: "99999d", err: "whole number of days"},
		{in: "2025-01-02", err: "want an RFC 3339 time"},
	} {
		got, err := parseSince(tt.in, now)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseSince(%q) = %v, %v; want an error saying %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || !got.Equal(tt.want)):
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2025-01-02T15:04:05Z", "1h30m", "-5m", "9223372036854775807d", "1e9h"} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSince(s, now)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Errorf("parseSince(%q) error %q does not quote the input", s, err)
			}
			return
		}
		if exact, perr := time.Parse(time.RFC3339Nano, s); perr == nil {
			if !got.Equal(exact) {
				t.Errorf("parseSince(%q) = %v, want the time itself %v", s, got, exact)
			}
			return
		}
		if got.After(now) {
			t.Errorf("parseSince(%q) = %v, after now %v: a duration ago must not be in the future", s, got, now)
		}
	})
}
