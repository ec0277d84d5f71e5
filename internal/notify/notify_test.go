package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/bitbucket"
	"github.com/gantry-ci/gantry/internal/forge/gitea"
	"github.com/gantry-ci/gantry/internal/forge/github"
	"github.com/gantry-ci/gantry/internal/forge/gitlab"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
	"github.com/google/go-cmp/cmp"
)

const sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

var reporters = map[string]forge.Reporter{
	"github": github.Reporter(), "gitea": gitea.Reporter(), "gitlab": gitlab.Reporter(), "bitbucket": bitbucket.Reporter(),
}

func openStore(t testing.TB) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// request is what a fake received.
type request struct {
	Method, Path string // Path as sent, escapes included
	Header       http.Header
	Body         []byte
	At           time.Time
}

// fake is an HTTP server that records what it receives and answers with
// answer(n, r), n counting requests from 0.
type fake struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	answer func(n int, r *request) (int, http.Header, string)
}

func newFake(t *testing.T, answer func(n int, r *request) (int, http.Header, string)) *fake {
	f := &fake{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, At: time.Now()}
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		code, h, text := 201, http.Header{}, `{}`
		if f.answer != nil {
			code, h, text = f.answer(n, &req)
		}
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		io.WriteString(w, text)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// waitFor polls cond until it holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, st store.Store, opts notify.Options) *notify.Notifier {
	t.Helper()
	if opts.Reporters == nil {
		opts.Reporters = reporters
	}
	if opts.Credentials == nil {
		opts.Credentials = func(context.Context, string) (string, error) { return "tok", nil }
	}
	if opts.PublicURL == "" {
		opts.PublicURL = "http://ci.example.com/"
	}
	if opts.Backoff == 0 {
		opts.Backoff, opts.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond
	}
	opts.Poll = 10 * time.Millisecond
	n := notify.New(st, opts)
	n.Start(t.Context())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	return n
}

func newRepo(t *testing.T, st store.Store, name, forgeName, apiURL string) *store.Repo {
	t.Helper()
	r := &store.Repo{Name: name, CloneURL: "https://example.com/" + name + ".git", Forge: forgeName, WebhookSecret: "k", APIURL: apiURL}
	if err := st.CreateRepo(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// newBuild stores a queued build of r on branch with jobs test and build.
func newBuild(t *testing.T, st store.Store, r *store.Repo, branch string) *store.Build {
	t.Helper()
	b := &store.Build{RepoID: r.ID, Repo: r.Name, Status: store.StatusQueued, Event: "push", Branch: branch, Commit: sha,
		Author: "alice", Message: "Fix the frobnicator\n\nlonger text", Pipeline: []byte("jobs: {}"),
		Jobs: []*store.Job{
			{Name: "test", Status: store.StatusQueued, ExitCode: -1},
			{Name: "build", Position: 1, Status: store.StatusPending, ExitCode: -1},
		}}
	if err := st.CreateBuild(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// set returns a copy of b with the build and job statuses given, as the
// build service would pass it to Changed.
func set(b *store.Build, status string, jobs ...string) *store.Build {
	c := *b
	c.Status = status
	c.Jobs = nil
	now := time.Now()
	if status != store.StatusQueued {
		c.StartedAt = now.Add(-time.Minute)
	}
	if store.Finished(status) {
		c.FinishedAt = now
	}
	for i, j := range b.Jobs {
		cj := *j
		cj.Status = jobs[i]
		if store.Finished(cj.Status) {
			cj.StartedAt, cj.FinishedAt = now.Add(-30*time.Second), now
			if cj.Status == store.StatusFailure {
				cj.ExitCode = 2
			} else if cj.Status == store.StatusSuccess {
				cj.ExitCode = 0
			}
		}
		c.Jobs = append(c.Jobs, &cj)
	}
	return &c
}

func deliveries(t *testing.T, st store.Store, f store.DeliveryFilter) []*store.Delivery {
	t.Helper()
	f.Limit = 1000
	ds, err := st.Deliveries(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func allFinal(t *testing.T, st store.Store) func() bool {
	return func() bool {
		ds := deliveries(t, st, store.DeliveryFilter{})
		if len(ds) == 0 {
			return false
		}
		for _, d := range ds {
			if !store.DeliveryFinal(d.State) {
				return false
			}
		}
		return true
	}
}

// lastByContext maps each status context to the body of the last request
// that posted it.
func lastByContext(t *testing.T, reqs []request, field string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, r := range reqs {
		var body map[string]string
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("body %q: %v", r.Body, err)
		}
		out[body[field]] = body
	}
	return out
}

// Each forge gets the build's status and each job's on the commit, at the
// documented path, with the documented headers and credential scheme, in
// its own vocabulary; the last state of every context is the final one.
func TestCommitStatusPerForge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		forge, prefix, path string
		ctxField, state     string
		check               func(r *request) string // what is wrong, or ""
	}{
		{"github", "", "/repos/acme/app/statuses/" + sha, "context", "state", func(r *request) string {
			for k, v := range map[string]string{"Authorization": "Bearer tok", "Accept": "application/vnd.github+json",
				"X-Github-Api-Version": "2022-11-28", "Content-Type": "application/json"} {
				if r.Header.Get(k) != v {
					return fmt.Sprintf("%s = %q, want %q", k, r.Header.Get(k), v)
				}
			}
			if r.Header.Get("User-Agent") == "" {
				return "no User-Agent (GitHub refuses requests without one)"
			}
			return ""
		}},
		{"gitea", "/api/v1", "/api/v1/repos/acme/app/statuses/" + sha, "context", "state", func(r *request) string {
			if r.Header.Get("Authorization") != "token tok" {
				return "Authorization = " + r.Header.Get("Authorization")
			}
			return ""
		}},
		{"gitlab", "/api/v4", "/api/v4/projects/acme%2Fapp/statuses/" + sha, "name", "state", func(r *request) string {
			if r.Header.Get("PRIVATE-TOKEN") != "tok" || r.Header.Get("Authorization") != "" {
				return fmt.Sprintf("PRIVATE-TOKEN = %q, Authorization = %q", r.Header.Get("PRIVATE-TOKEN"), r.Header.Get("Authorization"))
			}
			return ""
		}},
		{"bitbucket", "/2.0", "/2.0/repositories/acme/app/commit/" + sha + "/statuses/build", "key", "state", func(r *request) string {
			if r.Header.Get("Authorization") != "Bearer tok" {
				return "Authorization = " + r.Header.Get("Authorization")
			}
			return ""
		}},
	} {
		t.Run(tc.forge, func(t *testing.T) {
			t.Parallel()
			var problems []string
			var mu sync.Mutex
			f := newFake(t, func(n int, r *request) (int, http.Header, string) {
				bad := ""
				switch {
				case r.Method != "POST" || r.Path != tc.path:
					bad = fmt.Sprintf("%s %s, want POST %s", r.Method, r.Path, tc.path)
				default:
					bad = tc.check(r)
				}
				if bad != "" {
					mu.Lock()
					problems = append(problems, bad)
					mu.Unlock()
					return 400, nil, `{"message":"` + bad + `"}`
				}
				return 201, http.Header{"Content-Type": {"application/json"}}, `{"id":1}`
			})
			st := openStore(t)
			r := newRepo(t, st, "acme/app", tc.forge, f.URL+tc.prefix)
			n := start(t, st, notify.Options{})
			b := newBuild(t, st, r, "main")
			n.Changed(b)
			waitFor(t, 5*time.Second, "the queued statuses", func() bool { return len(f.requests()) >= 3 })
			n.Changed(set(b, store.StatusRunning, store.StatusRunning, store.StatusPending))
			n.Changed(set(b, store.StatusFailure, store.StatusSuccess, store.StatusFailure))
			// 3 queued, 2 running (the build and test), 3 final.
			waitFor(t, 30*time.Second, "every delivery", func() bool {
				return len(deliveries(t, st, store.DeliveryFilter{})) == 8 && allFinal(t, st)()
			})
			mu.Lock()
			if len(problems) > 0 {
				t.Fatalf("the fake %s refused requests: %v", tc.forge, problems)
			}
			mu.Unlock()

			want := map[string]map[forge.State]string{
				"github":    {forge.StatePending: "pending", forge.StateSuccess: "success", forge.StateFailure: "failure"},
				"gitea":     {forge.StatePending: "pending", forge.StateSuccess: "success", forge.StateFailure: "failure"},
				"gitlab":    {forge.StatePending: "pending", forge.StateSuccess: "success", forge.StateFailure: "failed"},
				"bitbucket": {forge.StatePending: "INPROGRESS", forge.StateSuccess: "SUCCESSFUL", forge.StateFailure: "FAILED"},
			}[tc.forge]
			final := lastByContext(t, f.requests(), tc.ctxField)
			for ctx, state := range map[string]forge.State{"gantry": forge.StateFailure, "gantry/test": forge.StateSuccess, "gantry/build": forge.StateFailure} {
				body := final[ctx]
				if body == nil {
					t.Errorf("no status for %s; got %v", ctx, final)
					continue
				}
				if body[tc.state] != want[state] {
					t.Errorf("last %s state = %q, want %q", ctx, body[tc.state], want[state])
				}
				link := body["target_url"] + body["url"]
				if link != fmt.Sprintf("http://ci.example.com/builds/%d", b.ID) {
					t.Errorf("%s links to %q, want the build page", ctx, link)
				}
			}
			if d := final["gantry"]["description"]; d != fmt.Sprintf("Build #%d failed: build", b.Number) {
				t.Errorf("build description = %q", d)
			}
			// The first statuses were pending, for all three contexts.
			first := lastByContext(t, f.requests()[:3], tc.ctxField)
			for _, ctx := range []string{"gantry", "gantry/test", "gantry/build"} {
				if first[ctx][tc.state] != want[forge.StatePending] {
					t.Errorf("first %s state = %q, want %q", ctx, first[ctx][tc.state], want[forge.StatePending])
				}
			}
			for _, d := range deliveries(t, st, store.DeliveryFilter{}) {
				if d.State != store.DeliveryDelivered && d.State != store.DeliverySuperseded {
					t.Errorf("delivery %d %s = %s %q", d.ID, d.Event, d.State, d.LastError)
				}
			}
		})
	}
}

// 5xx answers and refused connections are retried with backoff until the
// forge answers; a 4xx is a failure at once, with what the forge said.
func TestRetriesAndFailures(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(n int, r *request) (int, http.Header, string) {
		var body map[string]string
		json.Unmarshal(r.Body, &body)
		switch {
		case body["context"] == "gantry/build":
			return 422, nil, `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom"}]}`
		case body["context"] == "gantry" && n < 4:
			return 502, nil, "<html>bad gateway</html>"
		}
		return 201, nil, `{}`
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	n := start(t, st, notify.Options{})
	n.Changed(newBuild(t, st, r, "main"))
	waitFor(t, 10*time.Second, "every delivery", allFinal(t, st))
	byEvent := map[string]*store.Delivery{}
	for _, d := range deliveries(t, st, store.DeliveryFilter{}) {
		byEvent[d.Event] = d
	}
	if d := byEvent["gantry"]; d.State != store.DeliveryDelivered || d.Attempts < 2 || d.LastStatus != 201 {
		t.Errorf("status retried after 502s = %s after %d attempts, last %d %q; want delivered after retries", d.State, d.Attempts, d.LastStatus, d.LastError)
	}
	if d := byEvent["gantry/build"]; d.State != store.DeliveryFailed || d.Attempts != 1 || d.LastStatus != 422 ||
		d.LastError != `422 Unprocessable Entity: {"message":"Validation Failed","errors":[{"resource":"Status","code":"custom"}]}` {
		t.Errorf("status refused with 422 = %s after %d attempts, %d %q; want failed at once with the answer", d.State, d.Attempts, d.LastStatus, d.LastError)
	}

	// A forge that never answers: bounded attempts, then failed, visibly.
	st2 := openStore(t)
	down := newFake(t, nil)
	down.Close()
	r2 := newRepo(t, st2, "acme/app", "github", down.URL)
	n2 := start(t, st2, notify.Options{MaxAttempts: 3})
	n2.Changed(newBuild(t, st2, r2, "main"))
	waitFor(t, 10*time.Second, "the deliveries to give up", allFinal(t, st2))
	for _, d := range deliveries(t, st2, store.DeliveryFilter{}) {
		if d.State != store.DeliveryFailed || d.Attempts != 3 || !strings.HasPrefix(d.LastError, "gave up after 3 attempts: ") ||
			!strings.Contains(d.LastError, "connection refused") || d.FinishedAt.IsZero() {
			t.Errorf("delivery to a dead forge = %s after %d attempts: %q", d.State, d.Attempts, d.LastError)
		}
	}
}

// GitHub's primary rate limit: 403 with x-ratelimit-remaining: 0. Nothing
// more goes to that host until x-ratelimit-reset, then everything does.
func TestRateLimitHoldsTheHost(t *testing.T) {
	t.Parallel()
	var reset time.Time
	f := newFake(t, func(n int, r *request) (int, http.Header, string) {
		if n == 0 {
			reset = time.Now().Add(2 * time.Second).Truncate(time.Second)
			return 403, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {fmt.Sprint(reset.Unix())}},
				`{"message":"API rate limit exceeded for user ID 1."}`
		}
		return 201, nil, `{}`
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	n := start(t, st, notify.Options{Concurrency: 1})
	n.Changed(newBuild(t, st, r, "main"))
	waitFor(t, 10*time.Second, "every delivery", allFinal(t, st))
	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want the refused one and 3 after the reset", len(reqs))
	}
	for _, r := range reqs[1:] {
		if r.At.Before(reset) {
			t.Errorf("a request at %v, before the rate limit's reset at %v", r.At.Format(time.StampMilli), reset.Format(time.StampMilli))
		}
	}
	for _, d := range deliveries(t, st, store.DeliveryFilter{}) {
		if d.State != store.DeliveryDelivered {
			t.Errorf("delivery %s = %s %q, want delivered after the reset", d.Event, d.State, d.LastError)
		}
	}
}

// A repo without credentials gets no statuses; that is recorded once, and
// logged once, however many builds it has.
func TestNoCredentials(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	var logs bytes.Buffer
	var logMu sync.Mutex
	n := start(t, st, notify.Options{
		Credentials:     func(context.Context, string) (string, error) { return "", nil },
		CredentialsHint: "set GANTRY_FORGE_TOKEN",
		Log:             slog.New(slog.NewTextHandler(&lockedBuffer{b: &logs, mu: &logMu}, nil)),
	})
	for range 3 {
		n.Changed(newBuild(t, st, r, "main"))
	}
	waitFor(t, 5*time.Second, "the notice", func() bool { return len(deliveries(t, st, store.DeliveryFilter{})) > 0 })
	time.Sleep(200 * time.Millisecond)
	ds := deliveries(t, st, store.DeliveryFilter{})
	if len(ds) != 1 || ds[0].State != store.DeliverySkipped ||
		ds[0].LastError != "no forge credentials for acme/app: commit statuses are not posted (set GANTRY_FORGE_TOKEN)" {
		t.Errorf("deliveries = %+v, want one skipped notice", ds)
	}
	if len(f.requests()) != 0 {
		t.Errorf("%d requests to the forge without credentials", len(f.requests()))
	}
	logMu.Lock()
	if c := strings.Count(logs.String(), "commit statuses not posted"); c != 1 {
		t.Errorf("logged %d times, want once:\n%s", c, logs.String())
	}
	logMu.Unlock()
}

type lockedBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Two servers that both see the same change send each status once.
func TestTwoNotifiersSendOnce(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "gitea", f.URL)
	a, b := start(t, st, notify.Options{}), start(t, st, notify.Options{})
	build := newBuild(t, st, r, "main")
	done := set(build, store.StatusSuccess, store.StatusSuccess, store.StatusSuccess)
	a.Changed(done)
	b.Changed(done)
	a.Changed(done)
	waitFor(t, 5*time.Second, "the statuses", func() bool { return len(f.requests()) >= 3 })
	time.Sleep(200 * time.Millisecond)
	if got := len(f.requests()); got != 3 {
		t.Errorf("%d requests, want 3: one per context", got)
	}
}

// A hook receives the events it subscribes to, signed with its secret:
// checked here the way a receiver would, with nothing but the secret.
func TestHookSignedEvents(t *testing.T) {
	t.Parallel()
	const secret = "a-shared-secret-of-the-hook"
	f := newFake(t, func(n int, r *request) (int, http.Header, string) {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(r.Body)
		if r.Header.Get("Gantry-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			return 401, nil, "bad signature"
		}
		return 204, nil, ""
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", "")
	all := &store.Hook{URL: f.URL + "/in?token=x", Secret: secret, Events: []string{"build.*"}, Format: store.HookJSON}
	finished := &store.Hook{URL: f.URL + "/finished", Secret: secret, Events: []string{"build.finished"}, RepoID: r.ID, Branch: "release/*", Format: store.HookJSON}
	chat := &store.Hook{URL: f.URL + "/services/T0/B0/XXXX", Secret: secret, Events: []string{"build.failed", "build.fixed"}, Branch: "main", Format: store.HookSlack}
	for _, h := range []*store.Hook{all, finished, chat} {
		if err := st.CreateHook(t.Context(), h); err != nil {
			t.Fatal(err)
		}
	}
	n := start(t, st, notify.Options{Credentials: func(context.Context, string) (string, error) { return "", nil }})
	main := newBuild(t, st, r, "main")
	n.Changed(main)
	n.Changed(set(main, store.StatusRunning, store.StatusRunning, store.StatusPending))
	failed := set(main, store.StatusFailure, store.StatusFailure, store.StatusSkipped)
	if err := st.Update(t.Context(), main.ID, func(b *store.Build) error { b.Status = store.StatusFailure; return nil }); err != nil {
		t.Fatal(err)
	}
	n.Changed(failed)
	rel := newBuild(t, st, r, "release/1.0")
	n.Changed(set(rel, store.StatusSuccess, store.StatusSuccess, store.StatusSuccess))
	fixed := newBuild(t, st, r, "main")
	n.Changed(set(fixed, store.StatusSuccess, store.StatusSuccess, store.StatusSuccess))
	want := []string{
		"/in build.created main queued", "/in build.started main running", "/in build.finished main failure", "/in build.failed main failure",
		"/in build.created release/1.0 success", "/in build.started release/1.0 success", "/in build.finished release/1.0 success",
		"/finished build.finished release/1.0 success",
		"/in build.created main success", "/in build.started main success", "/in build.finished main success", "/in build.fixed main success",
	}
	waitFor(t, 30*time.Second, "every delivery", func() bool {
		return len(deliveries(t, st, store.DeliveryFilter{Kind: store.DeliveryHook})) == len(want)+2 && allFinal(t, st)()
	})
	var got, chats []string
	for _, r := range f.requests() {
		if strings.HasPrefix(r.Path, "/services/") {
			var msg map[string]string
			if err := json.Unmarshal(r.Body, &msg); err != nil || len(msg) != 1 {
				t.Errorf("chat message %s: %v", r.Body, err)
			}
			chats = append(chats, msg["text"])
			continue
		}
		var p notify.Payload
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("payload %s: %v", r.Body, err)
		}
		if r.Header.Get("Gantry-Event") != p.Event || r.Header.Get("Gantry-Delivery") == "" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v for event %s", r.Header, p.Event)
		}
		if p.Repo.Name != "acme/app" || p.Build == nil || p.Build.Commit != sha || p.Build.URL != fmt.Sprintf("http://ci.example.com/builds/%d", p.Build.ID) {
			t.Errorf("payload %s", r.Body)
		}
		if p.Event == "build.fixed" && (p.Previous == nil || p.Previous.ID != main.ID || p.Previous.Status != "failure") {
			t.Errorf("build.fixed names the previous build %+v, want %d, failed", p.Previous, main.ID)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", r.Path, p.Event, p.Build.Branch, p.Build.Status))
	}
	if diff := cmp.Diff(want, got, sortStrings); diff != "" {
		t.Errorf("events received (-want +got):\n%s", diff)
	}
	wantChats := []string{
		fmt.Sprintf(":x: <http://ci.example.com/builds/%d|acme/app #%d> failed on `main` at 6dcb09b5b5 by alice: Fix the frobnicator", main.ID, main.Number),
		fmt.Sprintf(":white_check_mark: <http://ci.example.com/builds/%d|acme/app #%d> is fixed (#%d had failed) on `main` at 6dcb09b5b5 by alice: Fix the frobnicator",
			fixed.ID, fixed.Number, main.Number),
	}
	if diff := cmp.Diff(wantChats, chats, sortStrings); diff != "" {
		t.Errorf("chat messages (-want +got):\n%s", diff)
	}
	for _, d := range deliveries(t, st, store.DeliveryFilter{Kind: store.DeliveryHook}) {
		if d.State != store.DeliveryDelivered || d.LastStatus != 204 {
			t.Errorf("hook delivery %d %s = %s %d %q", d.ID, d.Event, d.State, d.LastStatus, d.LastError)
		}
		if strings.Contains(d.URL, "token") || strings.Contains(d.URL, "XXXX") {
			t.Errorf("a delivery shows a hook's secret URL: %s", d.URL)
		}
	}
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

// The issue keys a build's branch, title and commit message name are
// recorded with it.
func TestIssueLinks(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", "")
	n := start(t, st, notify.Options{Credentials: func(context.Context, string) (string, error) { return "", nil }})
	b := newBuild(t, st, r, "feature/OPS-12-retry")
	b.Title, b.Message = "Retry deliveries", "Retry on 5xx (ABC-3, UTF-8 safe)\n\nCloses #7"
	n.Changed(b)
	n.Changed(set(b, store.StatusRunning, store.StatusRunning, store.StatusPending))
	var got []string
	waitFor(t, 5*time.Second, "the links", func() bool {
		got, _ = st.BuildIssues(t.Context(), b.ID)
		return len(got) > 0
	})
	if diff := cmp.Diff([]string{"#7", "ABC-3", "OPS-12"}, got); diff != "" {
		t.Errorf("issues of the build (-want +got):\n%s", diff)
	}
}

// Stop stores what is queued, and does not wait past its ctx for a
// receiver that hangs: that delivery is due again at once, for the next
// server.
func TestStop(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hang) }) }
	t.Cleanup(release)
	f := newFake(t, func(n int, r *request) (int, http.Header, string) {
		<-hang
		return 201, nil, ""
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	n := notify.New(st, notify.Options{Name: "a", Reporters: reporters, PublicURL: "http://ci",
		Credentials: func(context.Context, string) (string, error) { return "tok", nil }})
	n.Start(t.Context())
	b := newBuild(t, st, r, "main")
	n.Changed(b)
	waitFor(t, 5*time.Second, "a send on the wire", func() bool { return len(f.requests()) > 0 })
	n.Changed(set(b, store.StatusSuccess, store.StatusSuccess, store.StatusSuccess))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	n.Stop(ctx)
	n.Stop(ctx) // twice is fine
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Stop took %v with a hanging receiver, want about its ctx's 200ms", d)
	}
	ds := deliveries(t, st, store.DeliveryFilter{})
	states := map[string]int{}
	interrupted := 0
	for _, d := range ds {
		states[d.State]++
		if d.LastError == "interrupted: the server stopped" {
			interrupted++
		}
		if d.State == store.DeliveryPending && time.Until(d.NextAttemptAt) > time.Second {
			t.Errorf("delivery %d is due at %v, want at once", d.ID, d.NextAttemptAt)
		}
	}
	// 3 queued statuses and 3 final ones were stored, the final ones
	// after Stop began; the one on the wire was interrupted (and, since a
	// final one follows it, superseded).
	if len(ds) != 6 || states[store.DeliverySending] != 0 || interrupted != 1 {
		t.Errorf("deliveries after Stop: %d, by state %v, %d interrupted; want 6, none sending, 1 interrupted", len(ds), states, interrupted)
	}
	// Restarted, the server sends it all.
	release()
	start(t, st, notify.Options{Name: "a"})
	waitFor(t, 10*time.Second, "every delivery", allFinal(t, st))
}
