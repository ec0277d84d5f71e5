package web

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/logstream"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// ui is the web UI over a real SQLite store, as the server mounts it.
type ui struct {
	t   *testing.T
	st  store.Store
	srv *httptest.Server
}

func newUI(t *testing.T, tls bool) *ui {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	mirrors := git.NewMirrors(t.TempDir())
	builds := build.New(st, mirrors, log, nil)
	disp := queue.New(st, builds, log, queue.Options{})
	broker := &logstream.Broker{}
	a := &api.Handler{Store: st, Builds: builds, Mirrors: mirrors, Broker: broker, Log: log, Queue: disp}
	mux := http.NewServeMux()
	a.Register(mux)
	(&Handler{API: a, Store: st, Builds: builds, Queue: disp, Broker: broker, Log: log}).Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &ui{t: t, st: st, srv: srv}
}

// user makes a user with a role on acme/app and returns their token's
// secret.
func (u *ui) user(name, role string) (string, *store.Token) {
	u.t.Helper()
	ctx := u.t.Context()
	usr := &store.User{Name: name}
	if err := u.st.CreateUser(ctx, usr); err != nil {
		u.t.Fatal(err)
	}
	secret := "gantry_" + name + "_secret"
	tok := &store.Token{Name: "first", Hash: api.HashToken(secret), Kind: store.TokenAPI, UserID: usr.ID}
	if err := u.st.CreateToken(ctx, tok); err != nil {
		u.t.Fatal(err)
	}
	if role != "" {
		if err := u.st.SetGrant(ctx, &store.Grant{Repo: "acme/app", User: name, Role: role}); err != nil {
			u.t.Fatal(err)
		}
	}
	return secret, tok
}

// browser is an HTTP client with cookies that does not follow redirects.
func (u *ui) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *u.srv.Client() // a copy: each browser its own cookies
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (u *ui) get(c *http.Client, path string) (*http.Response, string) {
	u.t.Helper()
	resp, err := c.Get(u.srv.URL + path)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (u *ui) post(c *http.Client, path string, form url.Values) (*http.Response, string) {
	u.t.Helper()
	resp, err := c.PostForm(u.srv.URL+path, form)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form token in the page:\n%s", body)
	}
	return m[1]
}

// signIn signs c in with secret and returns the session cookie.
func (u *ui) signIn(c *http.Client, secret, next string) (*http.Response, *http.Cookie) {
	u.t.Helper()
	_, body := u.get(c, "/signin")
	resp, _ := u.post(c, "/signin", url.Values{"csrf": {csrfOf(u.t, body)}, "token": {secret}, "next": {next}})
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie && ck.Value != "" {
			return resp, ck
		}
	}
	return resp, nil
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	for _, tls := range []bool{false, true} {
		u := newUI(t, tls)
		secret, _ := u.user("bob", store.RoleViewer)
		c := u.browser()
		resp, ck := u.signIn(c, secret, "/repos/acme/app")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/repos/acme/app" {
			t.Errorf("sign-in (tls %v) = %d to %q, want 303 to the page asked for", tls, resp.StatusCode, resp.Header.Get("Location"))
		}
		if ck == nil {
			t.Fatalf("sign-in (tls %v) set no session cookie", tls)
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != tls || ck.Path != "/" {
			t.Errorf("session cookie (tls %v) = %+v, want HttpOnly, SameSite=Lax, Secure only over TLS", tls, ck)
		}
		// The store keeps a hash of the cookie, never the cookie.
		if _, _, err := u.st.Session(t.Context(), hashSecret(ck.Value)); err != nil {
			t.Errorf("Session(hash of the cookie) = %v", err)
		}
		if _, _, err := u.st.Session(t.Context(), []byte(ck.Value)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Session(the cookie itself) = %v, want ErrNotFound", err)
		}
		if resp, body := u.get(c, "/"); resp.StatusCode != 200 || !strings.Contains(body, "bob") {
			t.Errorf("dashboard after sign-in = %d, want 200 naming bob", resp.StatusCode)
		}
		// Signing in is in the audit log, as bob's act.
		entries, err := u.st.AuditEntries(t.Context(), store.AuditFilter{Action: "session.signin"})
		if err != nil || len(entries) != 1 || entries[0].Actor != "bob" {
			t.Errorf("audit entries of the sign-in (tls %v) = %+v, %v; want one, by bob", tls, entries, err)
		}
	}
}

func TestSignInRefused(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	secret, _ := u.user("bob", store.RoleViewer)
	agent := &store.Token{Name: "agent", Hash: api.HashToken("gantry_agent_secret"), Kind: store.TokenAgent}
	if err := u.st.CreateToken(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, token string }{{"wrong token", "gantry_wrong"}, {"agent token", "gantry_agent_secret"}, {"empty", ""}} {
		c := u.browser()
		resp, ck := u.signIn(c, tt.token, "/")
		if resp.StatusCode != http.StatusUnauthorized || ck != nil {
			t.Errorf("sign-in with %s = %d, cookie %v; want 401 and no session", tt.name, resp.StatusCode, ck)
		}
	}
	// The sign-in form's own token: without it, 403.
	c := u.browser()
	resp, _ := u.post(c, "/signin", url.Values{"token": {secret}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without the form's token = %d, want 403", resp.StatusCode)
	}
	// Only this server's paths are places to go after signing in.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		resp, _ := u.signIn(u.browser(), secret, next)
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("sign-in with next %q goes to %q, want /", next, loc)
		}
	}
	// Without a session a page sends to the sign-in page, and a POST is
	// refused.
	resp, _ = u.get(u.browser(), "/builds/1")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fbuilds%2F1" {
		t.Errorf("GET /builds/1 signed out = %d to %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = u.post(u.browser(), "/builds/1/cancel", url.Values{})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /builds/1/cancel signed out = %d, want 403", resp.StatusCode)
	}
}

func TestSessionEnds(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	ctx := t.Context()
	secret, tok := u.user("bob", store.RoleViewer)
	signedIn := func(c *http.Client) bool {
		resp, _ := u.get(c, "/")
		return resp.StatusCode == 200
	}

	// Signing out deletes the session: the old cookie opens nothing.
	c := u.browser()
	_, ck := u.signIn(c, secret, "/")
	_, body := u.get(c, "/")
	resp, _ := u.post(c, "/signout", url.Values{"csrf": {csrfOf(t, body)}})
	if resp.StatusCode != http.StatusSeeOther || signedIn(c) {
		t.Errorf("sign-out = %d and still signed in = %v, want 303 and signed out", resp.StatusCode, signedIn(c))
	}
	if _, _, err := u.st.Session(ctx, hashSecret(ck.Value)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session() after sign-out = %v, want ErrNotFound", err)
	}
	replay := u.browser()
	replay.Jar.SetCookies(mustURL(u.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: ck.Value}})
	if signedIn(replay) {
		t.Error("the cookie of a signed-out session still opens the dashboard")
	}

	// An expired session opens nothing.
	expired := "expired-session-secret"
	if err := u.st.CreateSession(ctx, &store.Session{Hash: hashSecret(expired), TokenID: tok.ID, ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	old := u.browser()
	old.Jar.SetCookies(mustURL(u.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: expired}})
	if signedIn(old) {
		t.Error("an expired session opens the dashboard")
	}

	// Revoking the token ends the sessions it opened.
	c = u.browser()
	u.signIn(c, secret, "/")
	if !signedIn(c) {
		t.Fatal("not signed in")
	}
	if _, err := u.st.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if signedIn(c) {
		t.Error("a session whose token was revoked still opens the dashboard")
	}
}

func TestRolesAndForms(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	ctx := t.Context()
	repo := &store.Repo{Name: "acme/app", CloneURL: "https://example.com/acme/app.git", Forge: "github", WebhookSecret: "s", DefaultBranch: "main"}
	if err := u.st.CreateRepo(ctx, repo); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: repo.ID, Repo: repo.Name, Status: store.StatusQueued, Event: "push", Branch: "main", Commit: strings.Repeat("a", 40),
		Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := u.st.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	viewer, _ := u.user("vera", store.RoleViewer)
	dev, _ := u.user("dave", store.RoleDeveloper)
	stranger, _ := u.user("sam", "")
	buildURL := "/builds/" + itoa(b.ID)

	// A viewer with a valid form token is refused by role, as the API
	// would refuse it, and sees no buttons.
	c := u.browser()
	u.signIn(c, viewer, "/")
	_, body := u.get(c, buildURL)
	if strings.Contains(body, "/cancel") || strings.Contains(body, "/retry") {
		t.Error("a viewer's build page has a cancel or retry form")
	}
	resp, body := u.post(c, buildURL+"/cancel", url.Values{"csrf": {csrfOf(t, body)}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs role developer on acme/app") {
		t.Errorf("a viewer's cancel = %d, want 403 saying the role it needs:\n%s", resp.StatusCode, body)
	}
	_, body = u.get(c, "/repos/acme/app")
	if strings.Contains(body, `action="/trigger"`) {
		t.Error("a viewer's repo page has a trigger form")
	}

	// A user with no role on the repo sees neither it nor its builds.
	c = u.browser()
	u.signIn(c, stranger, "/")
	if resp, _ := u.get(c, buildURL); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a stranger's GET %s = %d, want 403", buildURL, resp.StatusCode)
	}
	if _, body := u.get(c, "/"); strings.Contains(body, "acme/app") {
		t.Error("a stranger's dashboard lists acme/app")
	}

	// A developer cancels with the form; without its token, or with
	// another session's, the same POST is refused.
	c = u.browser()
	u.signIn(c, dev, "/")
	_, body = u.get(c, buildURL)
	if !strings.Contains(body, `action="`+buildURL+`/cancel"`) {
		t.Fatal("a developer's page of a queued build has no cancel form")
	}
	other := u.browser()
	u.signIn(other, dev, "/")
	_, otherBody := u.get(other, buildURL)
	for name, form := range map[string]url.Values{"no token": {}, "another session's": {"csrf": {csrfOf(t, otherBody)}}} {
		if resp, _ := u.post(c, buildURL+"/cancel", form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cancel with %s form token = %d, want 403", name, resp.StatusCode)
		}
	}
	if got, _ := u.st.Build(ctx, b.ID); got.Status != store.StatusQueued {
		t.Fatalf("build after refused cancels = %s, want queued", got.Status)
	}
	resp, _ = u.post(c, buildURL+"/cancel", url.Values{"csrf": {csrfOf(t, body)}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != buildURL {
		t.Errorf("cancel = %d to %q, want 303 back to the build", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got, _ := u.st.Build(ctx, b.ID); got.Status != store.StatusCancelled || got.Reason != "cancelled by dave" {
		t.Errorf("build after cancel = %s (%s), want cancelled by dave", got.Status, got.Reason)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The audit page is an admin's: it lists who did what, filtered; anyone
// else has no link to it and is refused.
func TestAuditPage(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	ctx := t.Context()
	root := &store.User{Name: "root", Admin: true}
	if err := u.st.CreateUser(ctx, root); err != nil {
		t.Fatal(err)
	}
	rootSecret := "gantry_root_secret"
	if err := u.st.CreateToken(ctx, &store.Token{Name: "first", Hash: api.HashToken(rootSecret), Kind: store.TokenAPI, UserID: root.ID}); err != nil {
		t.Fatal(err)
	}
	bobSecret, _ := u.user("bob", store.RoleViewer)

	bob := u.browser()
	u.signIn(bob, bobSecret, "/")
	if _, body := u.get(bob, "/"); strings.Contains(body, `href="/audit"`) {
		t.Errorf("a viewer's dashboard links to the audit page")
	}
	if resp, body := u.get(bob, "/audit"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "it needs an admin") {
		t.Errorf("audit page as a viewer = %d, want 403 saying why", resp.StatusCode)
	}

	admin := u.browser()
	u.signIn(admin, rootSecret, "/")
	if _, body := u.get(admin, "/"); !strings.Contains(body, `href="/audit"`) {
		t.Errorf("an admin's dashboard has no link to the audit page")
	}
	resp, body := u.get(admin, "/audit?actor=bob")
	if resp.StatusCode != 200 || !strings.Contains(body, "session.signin") || !strings.Contains(body, `href="/audit?actor=bob"`) {
		t.Errorf("audit page filtered on bob = %d:\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, `href="/audit?actor=root"`) {
		t.Errorf("audit page filtered on bob shows root's acts:\n%s", body)
	}
	if _, body := u.get(admin, "/audit?action=nothing.such"); !strings.Contains(body, "No entry matches") {
		t.Errorf("audit page with a filter that matches nothing:\n%s", body)
	}
}
