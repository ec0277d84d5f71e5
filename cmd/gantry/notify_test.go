package main

// End-to-end tests of commit statuses, hooks, deliveries and badges: the
// real gantry binary, and forges and hook receivers faked over real
// sockets, each checking what its documentation says a request must be.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

// forgeAPI is what each forge's status API documents, for the fakes.
type forgeAPI struct {
	prefix string            // of the API under the fake's URL
	auth   map[string]string // headers that carry the token "tok" and the required ones
	// context and state name the fields of the body; success is the state
	// a passing build gets.
	context, state, link, success string
}

var forgeAPIs = map[string]forgeAPI{
	// GitHub REST: POST /repos/{owner}/{repo}/statuses/{sha}.
	"github": {"", map[string]string{"Authorization": "Bearer tok", "Accept": "application/vnd.github+json",
		"X-Github-Api-Version": "2022-11-28", "Content-Type": "application/json"}, "context", "state", "target_url", "success"},
	// Gitea/Forgejo swagger repoCreateStatus, under /api/v1.
	"gitea": {"/api/v1", map[string]string{"Authorization": "token tok", "Content-Type": "application/json"},
		"context", "state", "target_url", "success"},
	// GitLab: POST /projects/:id/statuses/:sha, the id a URL-encoded path.
	"gitlab": {"/api/v4", map[string]string{"Private-Token": "tok", "Content-Type": "application/json"},
		"name", "state", "target_url", "success"},
	// Bitbucket Cloud: POST /repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build.
	"bitbucket": {"/2.0", map[string]string{"Authorization": "Bearer tok", "Content-Type": "application/json"},
		"key", "state", "url", "SUCCESSFUL"},
}

func docPath(forgeName, repo, sha string) string {
	owner, name, _ := strings.Cut(repo, "/")
	switch forgeName {
	case "github":
		return "/repos/" + owner + "/" + name + "/statuses/" + sha
	case "gitea":
		return "/api/v1/repos/" + owner + "/" + name + "/statuses/" + sha
	case "gitlab":
		return "/api/v4/projects/" + owner + "%2F" + name + "/statuses/" + sha
	}
	return "/2.0/repositories/" + owner + "/" + name + "/commit/" + sha + "/statuses/build"
}

// fakeForge records the statuses a forge's API accepted, and refuses
// (400) any request that is not the documented one.
type fakeForge struct {
	mu       sync.Mutex
	forge    string
	api      forgeAPI
	path     string
	statuses []map[string]string // bodies, in order
	times    []time.Time
	problems []string
	// answer, when set, may answer a request instead (n counts them).
	answer func(n int, w http.ResponseWriter) bool
	n      int
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.answer != nil && f.answer(f.n-1, w) {
		return
	}
	problem := ""
	if r.Method != "POST" || r.URL.EscapedPath() != f.path {
		problem = fmt.Sprintf("%s %s, want POST %s", r.Method, r.URL.EscapedPath(), f.path)
	}
	for k, v := range f.api.auth {
		if r.Header.Get(k) != v {
			problem = fmt.Sprintf("header %s = %q, want %q", k, r.Header.Get(k), v)
		}
	}
	var status map[string]string
	if err := json.Unmarshal(body, &status); err != nil {
		problem = fmt.Sprintf("body %q: %v", body, err)
	}
	if problem != "" {
		f.problems = append(f.problems, problem)
		http.Error(w, `{"message":"`+problem+`"}`, 400)
		return
	}
	f.statuses = append(f.statuses, status)
	f.times = append(f.times, time.Now())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	io.WriteString(w, `{"id":1}`)
}

// final is the last state posted for each context.
func (f *fakeForge) final() map[string]map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]string{}
	for _, s := range f.statuses {
		out[s[f.api.context]] = s
	}
	return out
}

func (f *fakeForge) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) > 0 {
		t.Fatalf("the %s fake refused requests: %v", f.forge, f.problems)
	}
}

// waitStatuses waits until the fake's last state of each context is want.
func waitStatuses(t *testing.T, f *fakeForge, s *testServer, within time.Duration, want string, contexts ...string) map[string]map[string]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		final := f.final()
		ok := true
		for _, c := range contexts {
			ok = ok && final[c][f.api.state] == want
		}
		if ok {
			return final
		}
		if time.Now().After(deadline) {
			out, _, _ := s.cli("deliveries")
			t.Fatalf("statuses after %v = %v, want %s for %v\ndeliveries:\n%s\nserver log:\n%s", within, final, want, contexts, out, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func deliveriesJSON(t *testing.T, s *testServer, args ...string) []api.Delivery {
	t.Helper()
	out, errOut, code := s.cli(append([]string{"deliveries", "--output", "json", "--limit", "1000"}, args...)...)
	if code != 0 {
		t.Fatalf("gantry deliveries = %d: %s", code, errOut)
	}
	var ds []api.Delivery
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatalf("gantry deliveries --output json: %v\n%s", err, out)
	}
	return ds
}

// A push to each forge: the build's status and each job's arrive on the
// commit, as the forge's API documents them, pending first and then
// success, linked to the build's page under --public-url; gantry
// deliveries shows each delivered. GitHub's first answer is its primary
// rate limit, which holds every status until the reset it names.
func TestServerCommitStatuses(t *testing.T) {
	t.Parallel()
	// The forge token is the server's, never a step's.
	const pipeline = `
jobs:
  test:
    steps:
      - run: echo "token=${FORGE_TOKEN:-unset}"
  build:
    needs: [test]
    steps: ["echo built"]
`
	for _, forgeName := range []string{"github", "gitea", "gitlab", "bitbucket"} {
		t.Run(forgeName, func(t *testing.T) {
			t.Parallel()
			repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": pipeline})
			name := "acme/" + forgeName + "-app"
			f := &fakeForge{forge: forgeName, api: forgeAPIs[forgeName], path: docPath(forgeName, name, sha)}
			var reset time.Time
			if forgeName == "github" {
				f.answer = func(n int, w http.ResponseWriter) bool {
					if n > 0 {
						return false
					}
					reset = time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
					w.Header().Set("X-Ratelimit-Remaining", "0")
					w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(reset.Unix()))
					http.Error(w, `{"message":"API rate limit exceeded"}`, 403)
					return true
				}
			}
			fake := httptest.NewServer(f)
			t.Cleanup(fake.Close)
			s := startServer(t, t.TempDir(), "--public-url", "http://ci.example.com:8080/", "--delivery-backoff", "100ms")
			if out, errOut, code := s.cli("repo", "add", name, "--url", repoDir, "--webhook-secret", "s3cret",
				"--forge", forgeName, "--api-url", fake.URL+f.api.prefix); code != 0 {
				t.Fatalf("repo add = %d: %s%s", code, out, errOut)
			}
			setForgeToken(t, s, name)
			a := s.send(pushDelivery(t, forgeName, name, "main", sha, "d1", "s3cret"))
			if a.status != http.StatusCreated || len(a.body.Builds) != 1 {
				t.Fatalf("push = %d %+v\n%s", a.status, a.body, s.stderr)
			}
			id := a.body.Builds[0].ID
			if b := s.waitBuild(id, 30*time.Second); b.Status != "success" {
				t.Fatalf("build = %s, want success", b.Status)
			}
			if lines, err := s.client().Logs(context.Background(), id, "test"); err != nil || len(lines) != 1 || lines[0].Line != "token=unset" {
				t.Errorf("a step saw %+v (%v), want token=unset", lines, err)
			}
			final := waitStatuses(t, f, s, 20*time.Second, f.api.success, "gantry", "gantry/test", "gantry/build")
			f.check(t)
			for c, st := range final {
				if st[f.api.link] != fmt.Sprintf("http://ci.example.com:8080/builds/%d", id) {
					t.Errorf("%s links to %q, want the build's page", c, st[f.api.link])
				}
			}
			f.mu.Lock()
			// The build was pending first. On GitHub the pending statuses
			// waited for the rate limit's reset, and the final ones
			// superseded them meanwhile.
			if first := f.statuses[0][f.api.state]; forgeName != "github" && first == f.api.success {
				t.Errorf("the first status posted was %q: want the build pending first", first)
			}
			if forgeName == "github" {
				for _, at := range f.times {
					if at.Before(reset) {
						t.Errorf("a status posted at %s, before the rate limit's reset at %s", at.Format(time.StampMilli), reset.Format(time.StampMilli))
					}
				}
			}
			f.mu.Unlock()

			ds := deliveriesJSON(t, s, "--repo", name)
			delivered := 0
			for _, d := range ds {
				switch {
				case d.State == "delivered":
					delivered++
				case d.State == "superseded" || (d.State == "pending" || d.State == "sending"):
					// A pending status of the build may still be on its
					// way after the final ones; it is superseded or sent.
				default:
					t.Errorf("delivery %d %s = %s %d %q", d.ID, d.Event, d.State, d.LastStatus, d.LastError)
				}
				if d.Kind != "status" || d.Forge != forgeName || d.BuildID != id {
					t.Errorf("delivery %+v", d)
				}
			}
			if delivered < 3 {
				t.Errorf("%d deliveries delivered, want at least the 3 final statuses: %+v", delivered, ds)
			}
			out, _, _ := s.cli("deliveries", "--repo", name, "--state", "delivered")
			if !strings.HasPrefix(out, "ID  ") || !strings.Contains(out, "gantry/build") || !strings.Contains(out, "delivered") {
				t.Errorf("gantry deliveries printed:\n%s", out)
			}
			if strings.Contains(s.stderr.String(), "tok") && strings.Contains(s.stderr.String(), "Bearer tok") {
				t.Errorf("the server logged the forge token:\n%s", s.stderr)
			}
		})
	}
}

// kill -9 of the server while the forge is down: the statuses it owes are
// in the database; after a restart, once the forge is back, they arrive.
func TestServerDeliveriesSurviveKill(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	forgeAddr := freeAddr(t) // nothing listens here yet: the forge is down
	f := &fakeForge{forge: "gitea", api: forgeAPIs["gitea"], path: docPath("gitea", "acme/app", sha)}
	s := startServer(t, t.TempDir(), "--delivery-backoff", "200ms")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k", "--forge", "gitea",
		"--api-url", "http://"+forgeAddr+"/api/v1"); code != 0 {
		t.Fatal(errOut)
	}
	setForgeToken(t, s, "acme/app")
	id := s.send(pushDelivery(t, "gitea", "acme/app", "main", sha, "k1", "k")).body.Builds[0].ID
	if b := s.waitBuild(id, 30*time.Second); b.Status != "success" {
		t.Fatalf("build = %s", b.Status)
	}
	// The final status of the build was tried, and refused by the dead
	// forge's host.
	deadline := time.Now().Add(15 * time.Second)
	for {
		tried := false
		for _, d := range deliveriesJSON(t, s, "--repo", "acme/app") {
			if d.Event == "gantry" && d.State == "pending" && d.Attempts >= 1 && strings.Contains(d.LastError, "connection refused") {
				tried = true
			}
		}
		if tried {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := s.cli("deliveries")
			t.Fatalf("no delivery tried and pending while the forge is down:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop(syscall.SIGKILL)

	ln, err := net.Listen("tcp", forgeAddr)
	if err != nil {
		t.Fatalf("bring the forge up: %v", err)
	}
	fake := httptest.NewUnstartedServer(f)
	fake.Listener.Close()
	fake.Listener = ln
	fake.Start()
	t.Cleanup(fake.Close)
	s.start("--delivery-backoff", "200ms")
	waitStatuses(t, f, s, 30*time.Second, "success", "gantry", "gantry/test", "gantry/build")
	f.check(t)
	deadline = time.Now().Add(15 * time.Second)
	for {
		final := true
		for _, d := range deliveriesJSON(t, s, "--repo", "acme/app") {
			if d.State != "delivered" && d.State != "superseded" {
				final = false
			}
		}
		if final {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := s.cli("deliveries")
			t.Fatalf("deliveries after the restart:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Without forge credentials nothing is posted; gantry deliveries and the
// log say so once, not per build.
func TestServerNoForgeCredentials(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	f := &fakeForge{forge: "github", api: forgeAPIs["github"], path: docPath("github", "acme/app", sha)}
	fake := httptest.NewServer(f)
	t.Cleanup(fake.Close)
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k", "--api-url", fake.URL); code != 0 {
		t.Fatal(errOut)
	}
	for i := range 2 {
		id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, fmt.Sprint("n", i), "k")).body.Builds[0].ID
		s.waitBuild(id, 30*time.Second)
	}
	time.Sleep(300 * time.Millisecond)
	ds := deliveriesJSON(t, s)
	if len(ds) != 1 || ds[0].State != "skipped" || ds[0].Repo != "acme/app" ||
		ds[0].LastError != "no forge credentials for acme/app: commit statuses are not posted (set the repo's secret FORGE_TOKEN (gantry secret set OWNER/NAME FORGE_TOKEN))" {
		t.Errorf("deliveries = %+v, want one skipped, saying why", ds)
	}
	if n := len(f.final()); n != 0 {
		t.Errorf("%d statuses posted without credentials", n)
	}
	if c := strings.Count(s.stderr.String(), "commit statuses not posted"); c != 1 {
		t.Errorf("the server logged the missing credentials %d times, want once:\n%s", c, s.stderr)
	}
}

// hookReceiver checks each delivery's signature as a receiver would, with
// nothing but the secret it was given, and records the events.
type hookReceiver struct {
	mu       sync.Mutex
	secrets  map[string]string // by path
	events   map[string][]string
	problems []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	mac := hmac.New(sha256.New, []byte(h.secrets[r.URL.Path]))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.Header.Get("Gantry-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
		h.problems = append(h.problems, fmt.Sprintf("%s: signature %q does not verify", r.URL.Path, got))
		http.Error(w, "bad signature", 401)
		return
	}
	var p struct {
		Event string `json:"event"`
		Build struct {
			Status string `json:"status"`
		} `json:"build"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Event != r.Header.Get("Gantry-Event") || r.Header.Get("Gantry-Delivery") == "" {
		h.problems = append(h.problems, fmt.Sprintf("%s: %v %s %v", r.URL.Path, err, body, r.Header))
	}
	h.events[r.URL.Path] = append(h.events[r.URL.Path], p.Event)
	w.WriteHeader(200)
}

func TestServerHooks(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	rcv := &hookReceiver{secrets: map[string]string{}, events: map[string][]string{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}

	// Bad input is refused, clearly, and stores nothing.
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"hook", "add", srv.URL + "/x", "--events", "build.finised"}, 2, `unknown event "build.finised": want one of build.created,`},
		{[]string{"hook", "add", srv.URL + "/x"}, 2, "no events"},
		{[]string{"hook", "add", "ftp://example.com/x", "--events", "build.*"}, 1, `url "ftp://example.com/x": want an http:// or https:// URL`},
		{[]string{"hook", "add", srv.URL + "/x", "--events", "build.*", "--repo", "acme/nope"}, 1, `repo "acme/nope" is not registered`},
		{[]string{"hook", "add", srv.URL + "/x", "--events", "build.*", "--format", "xml"}, 1, `format "xml": want json or slack`},
		{[]string{"hook", "rm", "x"}, 2, `hook ID "x": want a positive number`},
	} {
		_, errOut, code := s.cli(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("gantry %v = %d %q, want %d and %q", tc.args, code, errOut, tc.code, tc.err)
		}
	}
	// The server checks event names too, whoever calls it.
	if _, err := s.client().AddHook(context.Background(), api.NewHook{URL: srv.URL, Events: []string{"push"}}); err == nil ||
		!strings.Contains(err.Error(), `400: unknown event "push"`) {
		t.Errorf("POST /api/v1/hooks with an unknown event = %v, want 400 naming it", err)
	}
	if hs, _ := s.client().Hooks(context.Background()); len(hs) != 0 {
		t.Fatalf("hooks after refused adds = %+v", hs)
	}

	// A secret from stdin is not printed; a made one is, once.
	rcv.secrets["/finished"] = "a-secret-from-stdin-0123"
	out, errOut, code := s.cliIn(s.url, rcv.secrets["/finished"]+"\n", "hook", "add", srv.URL+"/finished", "--events", "build.finished,deployment.*", "--secret-stdin")
	if code != 0 || !strings.HasPrefix(out, "added hook 1: "+srv.URL+"/finished gets build.finished, deployment.*") || strings.Contains(out, "a-secret") {
		t.Fatalf("hook add --secret-stdin = %d %q %q", code, out, errOut)
	}
	out, errOut, code = s.cli("hook", "add", srv.URL+"/all", "--events", "build.*", "--repo", "acme/app", "--branch", "main")
	if code != 0 || !strings.Contains(out, "shown only this once") {
		t.Fatalf("hook add = %d %q %q", code, out, errOut)
	}
	fields := strings.Fields(out)
	secret := fields[len(fields)-1]
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("hook add printed %q, want the secret last", out)
	}
	rcv.mu.Lock()
	rcv.secrets["/all"] = secret
	rcv.mu.Unlock()
	out, _, _ = s.cli("hook", "list", "--output", "json")
	var hooks []api.Hook
	if err := json.Unmarshal([]byte(out), &hooks); err != nil || len(hooks) != 2 || hooks[1].Repo != "acme/app" || hooks[1].Branch != "main" || hooks[0].Secret != "" || strings.Contains(out, "whsec_") {
		t.Errorf("hook list --output json = %v %s", err, out)
	}

	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "h1", "k")).body.Builds[0].ID
	if b := s.waitBuild(id, 30*time.Second); b.Status != "success" {
		t.Fatalf("build = %s", b.Status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rcv.mu.Lock()
		n := len(rcv.events["/finished"]) + len(rcv.events["/all"])
		rcv.mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := s.cli("deliveries")
			t.Fatalf("events received: %v\ndeliveries:\n%s", rcv.events, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	rcv.mu.Lock()
	if len(rcv.problems) > 0 {
		t.Errorf("receiver: %v", rcv.problems)
	}
	if got := fmt.Sprint(rcv.events["/finished"]); got != "[build.finished]" {
		t.Errorf("/finished got %s", got)
	}
	if got := fmt.Sprint(rcv.events["/all"]); got != "[build.created build.started build.finished]" {
		t.Errorf("/all got %s", got)
	}
	rcv.mu.Unlock()
	ds := deliveriesJSON(t, s, "--kind", "hook")
	if len(ds) != 4 {
		t.Errorf("%d hook deliveries, want 4: %+v", len(ds), ds)
	}
	for _, d := range ds {
		if d.State != "delivered" || d.LastStatus != 200 || d.BuildID != id || d.HookID == 0 {
			t.Errorf("hook delivery = %+v", d)
		}
	}

	if out, _, code := s.cli("hook", "rm", "1"); code != 0 || out != "removed hook 1\n" {
		t.Errorf("hook rm 1 = %d %q", code, out)
	}
	if _, errOut, code := s.cli("hook", "rm", "1"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("hook rm 1 again = %d %q, want 1 and a 404", code, errOut)
	}
	out, _, _ = s.cli("hook", "list")
	if !strings.HasPrefix(out, "ID  ") || strings.Contains(out, "/finished") || !strings.Contains(out, srv.URL+"/all") {
		t.Errorf("hook list after rm:\n%s", out)
	}
}

func getBadge(t *testing.T, s *testServer, path, etag string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// Badges need no token, say the state of the latest finished build of a
// branch, and are revalidated cheaply with an ETag.
func TestServerBadge(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	gitCmd(t, repoDir, "checkout", "-q", "-b", "feature")
	bad := commit(t, repoDir, map[string]string{".gantry.yml": "jobs: {test: {steps: [\"exit 3\"]}}\n"})
	gitCmd(t, repoDir, "checkout", "-q", "main") // the forge's default branch, which repo add finds
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	code, h, body := getBadge(t, s, "/badge/acme/app.svg", "")
	if code != 200 || !strings.Contains(body, "build: unknown") || !strings.HasPrefix(h.Get("Content-Type"), "image/svg+xml") ||
		!strings.Contains(h.Get("Cache-Control"), "no-cache") || h.Get("ETag") == "" {
		t.Errorf("badge before any build = %d %v %s", code, h, body)
	}
	if code, _, body := getBadge(t, s, "/badge/acme/nope.svg", ""); code != 404 || !strings.Contains(body, "build: unknown") {
		t.Errorf("badge of an unknown repo = %d %s, want 404 and an unknown badge", code, body)
	}
	if code, _, _ := getBadge(t, s, "/badge/acme/app", ""); code != 404 {
		t.Errorf("badge without .svg = %d, want 404", code)
	}

	for i, c := range []struct{ branch, sha string }{{"main", sha}, {"feature", bad}} {
		id := s.send(pushDelivery(t, "github", "acme/app", c.branch, c.sha, fmt.Sprint("b", i), "k")).body.Builds[0].ID
		s.waitBuild(id, 30*time.Second)
	}
	code, h, body = getBadge(t, s, "/badge/acme/app.svg", "")
	if code != 200 || !strings.Contains(body, "build: passing") {
		t.Errorf("badge of main = %d %s, want passing", code, body)
	}
	if code, _, _ := getBadge(t, s, "/badge/acme/app.svg", h.Get("ETag")); code != 304 {
		t.Errorf("badge with its ETag = %d, want 304", code)
	}
	if code, _, body := getBadge(t, s, "/badge/acme/app.svg?branch=feature", h.Get("ETag")); code != 200 || !strings.Contains(body, "build: failing") {
		t.Errorf("badge of feature = %d %s, want failing", code, body)
	}
}

// githubPushWith is a signed GitHub push whose head commit has message.
func githubPushWith(t *testing.T, repo, branch, sha, id, secret, message string) delivery {
	t.Helper()
	doc := fixture(t, "github/push.json")
	set(doc, "repository.full_name", repo)
	set(doc, "ref", "refs/heads/"+branch)
	set(doc, "after", sha)
	set(doc, "head_commit.id", sha)
	set(doc, "head_commit.message", message)
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return delivery{forge: "github", body: body, headers: map[string]string{"Content-Type": "application/json",
		"X-GitHub-Event": "push", "X-GitHub-Delivery": id, "X-Hub-Signature-256": "sha256=" + hmacHex(secret, body)}}
}

// Issue keys in branch names and commit messages find their builds.
func TestServerIssueLinks(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	first := s.send(githubPushWith(t, "acme/app", "feature/OPS-12-login", sha, "i1", "k", "Fix the login (ABC-3)\n\nCloses #7")).body.Builds[0].ID
	second := s.send(githubPushWith(t, "acme/app", "main", sha, "i2", "k", "Merge OPS-12, UTF-8 names")).body.Builds[0].ID
	s.waitBuild(first, 30*time.Second)
	s.waitBuild(second, 30*time.Second)

	ids := func(key string) []int64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, errOut, code := s.cli("issue", key, "--output", "json")
			var answer struct {
				Key    string      `json:"key"`
				Builds []api.Build `json:"builds"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &answer) != nil || answer.Key != key {
				t.Fatalf("gantry issue %s = %d %q %q", key, code, out, errOut)
			}
			var got []int64
			for _, b := range answer.Builds {
				got = append(got, b.ID)
			}
			if len(got) > 0 || time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := ids("OPS-12"); fmt.Sprint(got) != fmt.Sprint([]int64{second, first}) {
		t.Errorf("builds of OPS-12 = %v, want [%d %d]", got, second, first)
	}
	if got := ids("#7"); fmt.Sprint(got) != fmt.Sprint([]int64{first}) {
		t.Errorf("builds of #7 = %v, want [%d]", got, first)
	}
	if got := ids("ABC-3"); fmt.Sprint(got) != fmt.Sprint([]int64{first}) {
		t.Errorf("builds of ABC-3 = %v, want [%d]", got, first)
	}
	out, _, code := s.cli("issue", "OPS-12")
	if code != 0 || !strings.HasPrefix(out, "ID  ") || !strings.Contains(out, "feature/OPS-12-login") {
		t.Errorf("gantry issue OPS-12 = %d\n%s", code, out)
	}
	if out, _, code := s.cli("issue", "NOPE-1"); code != 0 || out != "no build names NOPE-1\nno release ships NOPE-1\n" {
		t.Errorf("gantry issue NOPE-1 = %d %q", code, out)
	}
	if _, errOut, code := s.cli("issue", "UTF-8"); code != 2 || !strings.Contains(errOut, `"UTF-8" is not an issue key`) {
		t.Errorf("gantry issue UTF-8 = %d %q, want 2 and why", code, errOut)
	}
}

// Two servers on one PostgreSQL database, both sending: every status
// reaches the forge once.
func TestServerPostgresStatusesOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	f := &fakeForge{forge: "gitlab", api: forgeAPIs["gitlab"], path: docPath("gitlab", "acme/app", sha)}
	fake := httptest.NewServer(f)
	t.Cleanup(fake.Close)
	// Both servers read the secret: they share the key.
	env := []string{"GANTRY_SECRET_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))}
	a := startServerEnv(t, t.TempDir(), env, "--database", db, "--delivery-backoff", "100ms")
	b := startServerEnv(t, t.TempDir(), env, "--database", db, "--delivery-backoff", "100ms")
	if _, errOut, code := a.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k", "--forge", "gitlab",
		"--api-url", fake.URL+"/api/v4"); code != 0 {
		t.Fatal(errOut)
	}
	setForgeToken(t, a, "acme/app")
	var ids []int64
	for i, s := range []*testServer{a, b} {
		ids = append(ids, s.send(pushDelivery(t, "gitlab", "acme/app", "main", sha, fmt.Sprint("pg", i), "k")).body.Builds[0].ID)
	}
	for _, id := range ids {
		a.waitBuild(id, 60*time.Second)
	}
	waitStatuses(t, f, a, 30*time.Second, "success", "gantry", "gantry/test", "gantry/build")
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending := 0
		for _, d := range deliveriesJSON(t, b) {
			if d.State == "pending" || d.State == "sending" {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := a.cli("deliveries")
			t.Fatalf("deliveries still pending:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.check(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]int{}
	for _, st := range f.statuses {
		seen[st["target_url"]+" "+st["name"]+" "+st["state"]+" "+st["description"]]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("status %q posted %d times", k, n)
		}
	}
}

// setForgeToken gives repo the forge token "tok", as its secret.
func setForgeToken(t *testing.T, s *testServer, repo string) {
	t.Helper()
	if out, errOut, code := s.cliIn(s.url, "tok", "secret", "set", repo, "FORGE_TOKEN"); code != 0 {
		t.Fatalf("secret set FORGE_TOKEN = %d: %s%s", code, out, errOut)
	}
}
