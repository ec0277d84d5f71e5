package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// auditLog returns the whole audit log, oldest first.
func auditLog(t *testing.T, st store.Store) []*store.AuditEntry {
	t.Helper()
	chain, err := st.AuditChain(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func entryText(e *store.AuditEntry) string {
	return fmt.Sprintf("%s %s %s %s reason=%q %v", e.Actor, e.Address, e.Action, e.Object, e.Reason, e.Detail)
}

// TestAuditRecordsEveryAct makes each change the API offers today and
// finds each in the audit log with who, from where, what, on which object
// and why.
func TestAuditRecordsEveryAct(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	ctx := t.Context()
	c := e.client(e.admin, false)
	c.Reason = "ticket OPS-7: move to the new host ✓"
	var adminID int64
	if tok, err := e.st.TokenByHash(ctx, api.HashToken(e.admin)); err != nil {
		t.Fatal(err)
	} else {
		adminID = tok.ID
	}
	admin := fmt.Sprintf("token:admin#%d", adminID)

	before := len(auditLog(t, e.st)) // the agent tokens newAgentEnv made
	if _, err := c.AddRepo(ctx, api.NewRepo{Name: "acme/web", CloneURL: "/srv/git/acme/web.git", WebhookSecret: "hush"}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateAgentToken(ctx, api.NewAgentToken{Name: "builders", Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeAgentToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddLock(ctx, api.NewLock{Name: "deploy", Capacity: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteLock(ctx, "deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, e.buildID); err != nil {
		t.Fatal(err)
	}
	retried, err := c.Retry(ctx, e.buildID, true)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := c.AddHook(ctx, api.NewHook{URL: "https://hooks.slack.com/services/T0/B0/XXXX", Events: []string{"build.failed", "build.fixed"},
		Repo: "acme/web", Branch: "main", Format: "slack"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteHook(ctx, hook.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRepo(ctx, "acme/web"); err != nil {
		t.Fatal(err)
	}

	got := auditLog(t, e.st)[before:]
	reason := c.Reason
	want := []string{
		fmt.Sprintf("%s 127.0.0.1 repo.add repo:acme/web reason=%q map[clone_url:/srv/git/acme/web.git default_branch:main forge:github]", admin, reason),
		fmt.Sprintf("%s 127.0.0.1 token.create token:%d reason=%q map[kind:agent labels:linux name:builders]", admin, tok.ID, reason),
		fmt.Sprintf("%s 127.0.0.1 token.revoke token:%d reason=%q map[kind:agent name:builders]", admin, tok.ID, reason),
		fmt.Sprintf("%s 127.0.0.1 lock.add lock:deploy reason=%q map[capacity:2]", admin, reason),
		fmt.Sprintf("%s 127.0.0.1 lock.rm lock:deploy reason=%q map[]", admin, reason),
		fmt.Sprintf("%s 127.0.0.1 build.cancel build:%d reason=%q map[number:1 repo:acme/app status:cancelled]", admin, e.buildID, reason),
		fmt.Sprintf("%s 127.0.0.1 build.retry build:%d reason=%q map[failed_only:true new_build:%d repo:acme/app]", admin, e.buildID, reason, retried.ID),
		fmt.Sprintf("%s 127.0.0.1 hook.add hook:%d reason=%q map[branch:main events:build.failed build.fixed format:slack repo:acme/web url:https://hooks.slack.com/…]",
			admin, hook.ID, reason),
		fmt.Sprintf("%s 127.0.0.1 hook.rm hook:%d reason=%q map[]", admin, hook.ID, reason),
		fmt.Sprintf("%s 127.0.0.1 repo.rm repo:acme/web reason=%q map[]", admin, reason),
	}
	if len(got) != len(want) {
		var lines []string
		for _, g := range got {
			lines = append(lines, entryText(g))
		}
		t.Fatalf("audit log after %d acts has %d new entries:\n%s", len(want), len(got), strings.Join(lines, "\n"))
	}
	for i, g := range got {
		if entryText(g) != want[i] {
			t.Errorf("entry %d = %s\nwant       %s", g.Seq, entryText(g), want[i])
		}
		if time.Since(g.At) > time.Minute || g.At.After(time.Now()) {
			t.Errorf("entry %d At = %v, want just now", g.Seq, g.At)
		}
	}
	// The webhook secret of the repo is nowhere in the log, nor the chat
	// hook's URL, nor its secret.
	for _, g := range auditLog(t, e.st) {
		if text := entryText(g); strings.Contains(text, "hush") || strings.Contains(text, "XXXX") || strings.Contains(text, hook.Secret) {
			t.Errorf("entry %d holds a secret: %s", g.Seq, entryText(g))
		}
	}
}

// TestAuditRecordsOnlyWhatChanged: refused requests change nothing and
// record nothing, a bad reason included.
func TestAuditRecordsOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	ctx := t.Context()
	c := e.client(e.admin, false)
	if _, err := c.AddLock(ctx, api.NewLock{Name: "deploy", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	before := len(auditLog(t, e.st))
	if _, err := c.AddLock(ctx, api.NewLock{Name: "deploy", Capacity: 1}); status(err) != http.StatusConflict {
		t.Errorf("adding a lock twice = %v, want 409", err)
	}
	if _, err := c.AddLock(ctx, api.NewLock{Name: "bad name", Capacity: 1}); status(err) != http.StatusBadRequest {
		t.Errorf("adding a lock with a bad name = %v, want 400", err)
	}
	if err := c.DeleteLock(ctx, "none"); status(err) != http.StatusNotFound {
		t.Errorf("removing a missing lock = %v, want 404", err)
	}
	for _, tt := range []struct{ reason, want string }{
		{"one\ttwo", "Gantry-Reason header: reason has a control character (U+0009) at byte 3: want one line of text"},
		{strings.Repeat("é", api.MaxReason+1), "Gantry-Reason header: reason is 501 characters long: at most 500"},
		{"\xff\xfe", "Gantry-Reason header: reason is not UTF-8 text"},
	} {
		bad := e.client(e.admin, false)
		bad.Reason = tt.reason
		_, err := bad.AddLock(ctx, api.NewLock{Name: "other", Capacity: 1})
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest || se.Message != tt.want {
			t.Errorf("reason %q: AddLock = %v, want 400 %q", tt.reason, err, tt.want)
		}
	}
	if locks, err := c.Locks(ctx); err != nil || len(locks) != 1 {
		t.Errorf("after refused requests there are %d locks (%v), want the first only", len(locks), err)
	}
	if after := auditLog(t, e.st); len(after) != before {
		t.Errorf("refused requests added %d audit entries, want none: %s", len(after)-before, entryText(after[len(after)-1]))
	}
	// A reason of exactly the longest length is taken.
	ok := e.client(e.admin, false)
	ok.Reason = strings.Repeat("é", api.MaxReason)
	if _, err := ok.AddLock(ctx, api.NewLock{Name: "other", Capacity: 1}); err != nil {
		t.Errorf("AddLock with a reason of %d characters = %v", api.MaxReason, err)
	}
	if log := auditLog(t, e.st); log[len(log)-1].Reason != ok.Reason {
		t.Errorf("recorded reason = %q, want the %d characters sent", log[len(log)-1].Reason, api.MaxReason)
	}
}

// TestAuditIsForAdmins: listing and verifying need an admin token; other
// API tokens get 403, agent tokens and strangers 401.
func TestAuditIsForAdmins(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	ctx := t.Context()
	if err := e.st.CreateToken(ctx, &store.Token{Name: "viewer", Hash: api.HashToken("viewer-secret")}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"admin", e.admin, 0},
		{"a non-admin API token", "viewer-secret", http.StatusForbidden},
		{"an agent token", e.a, http.StatusUnauthorized},
		{"no token", "", http.StatusUnauthorized},
	} {
		c := e.client(tt.token, false)
		if _, err := c.Audit(ctx, api.AuditQuery{}); status(err) != tt.want {
			t.Errorf("%s: Audit() = %v, want status %d", tt.name, err, tt.want)
		}
		if _, err := c.VerifyAudit(ctx, ""); status(err) != tt.want {
			t.Errorf("%s: VerifyAudit() = %v, want status %d", tt.name, err, tt.want)
		}
	}
}

func TestAuditListAndVerify(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	ctx := t.Context()
	c := e.client(e.admin, false)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := c.AddLock(ctx, api.NewLock{Name: name, Capacity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.Audit(ctx, api.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	// Two agent tokens from newAgentEnv, then three locks; newest first.
	if len(all) != 5 || all[0].Object != "lock:c" || all[0].Seq != 5 || all[4].Action != "token.create" {
		t.Fatalf("Audit() = %+v, want 5 entries, lock:c first", all)
	}
	if all[0].PrevHash != all[1].Hash || len(all[0].Hash) != 64 || all[4].PrevHash != "" {
		t.Errorf("hashes as listed: %q after %q; want each to name the one before, in hex", all[0].PrevHash, all[1].Hash)
	}
	if all[4].Detail == nil || all[0].Detail["capacity"] != "1" {
		t.Errorf("details = %v and %v", all[4].Detail, all[0].Detail)
	}
	byObject, err := c.Audit(ctx, api.AuditQuery{Object: "lock:b"})
	if err != nil || len(byObject) != 1 || byObject[0].Seq != 4 {
		t.Errorf("Audit(object lock:b) = %+v, %v; want entry 4", byObject, err)
	}
	since, err := c.Audit(ctx, api.AuditQuery{Since: all[1].At, Limit: 10})
	if err != nil || len(since) != 2 {
		t.Errorf("Audit(since entry 4) = %d entries, %v; want 2", len(since), err)
	}
	for _, q := range []string{"since=yesterday", "limit=0", "limit=1001", "limit=x"} {
		if _, err := c.Do(ctx, "GET", "/api/v1/audit?"+q, nil, nil); status(err) != http.StatusBadRequest {
			t.Errorf("GET /api/v1/audit?%s = %v, want 400", q, err)
		}
	}

	v, err := c.VerifyAudit(ctx, "")
	if err != nil || !v.OK || v.Checked != 5 || v.HeadSeq != 5 || v.HeadHash != all[0].Hash || v.Problem != nil {
		t.Errorf("VerifyAudit() = %+v, %v; want ok, 5 checked, head 5 %s", v, err, all[0].Hash)
	}
	v, err = c.VerifyAudit(ctx, fmt.Sprintf("5:%s", all[0].Hash))
	if err != nil || !v.OK {
		t.Errorf("VerifyAudit(anchor = head) = %+v, %v; want ok", v, err)
	}
	v, err = c.VerifyAudit(ctx, fmt.Sprintf("7:%s", all[0].Hash))
	if err != nil || v.OK || v.Problem == nil || v.Problem.Seq != 6 || v.Checked != 5 {
		t.Errorf("VerifyAudit(anchor past the end) = %+v, %v; want a problem at entry 6", v, err)
	}
	if _, err := c.VerifyAudit(ctx, "5:nothex"); status(err) != http.StatusBadRequest {
		t.Errorf("VerifyAudit(bad anchor) = %v, want 400", err)
	}
}

// failingAudit is a store whose audit appends fail while fail is set.
type failingAudit struct {
	store.Store
	fail atomic.Bool
}

func (f *failingAudit) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	return f.Store.AppendAudit(ctx, e)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditFailureIsNotHidden: an act done but not recorded answers 500,
// and the server's log names the act.
func TestAuditFailureIsNotHidden(t *testing.T) {
	t.Parallel()
	sq, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &failingAudit{Store: sq}
	var logs syncBuffer
	builds := build.New(st, nil, nil, nil)
	h := &api.Handler{Store: st, Builds: builds, Queue: queue.New(st, builds, nil, queue.Options{LeaseTTL: time.Minute}),
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := st.CreateToken(t.Context(), &store.Token{Name: "admin", Hash: api.HashToken("s"), Admin: true}); err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	c := &api.Client{Server: srv.URL, Token: "s"}
	if _, err := c.AddLock(t.Context(), api.NewLock{Name: "deploy", Capacity: 1}); status(err) != http.StatusInternalServerError {
		t.Errorf("AddLock with the audit log failing = %v, want 500", err)
	}
	if !strings.Contains(logs.String(), "lock.add lock:deploy by token:admin#1 was done but not recorded: disk full") {
		t.Errorf("server log = %q, want it to name the unrecorded act", logs.String())
	}
}
