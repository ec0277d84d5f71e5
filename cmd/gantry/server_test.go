package main

// End-to-end tests of `gantry server`: the real binary, real git
// repositories, real SQLite, and webhooks in each forge's documented format
// (the published example payloads of ../shared/fixtures, with the repository
// and commit pointed at a repository made here).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

const testToken = "gantry_test_admin_token"

type testServer struct {
	t       testing.TB
	addr    string
	url     string
	data    string
	cmd     *exec.Cmd
	stderr  *lockedWriter // the server's stderr, read while it writes
	stopped bool
	env     []string // added to the server's environment
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer starts `gantry server` on a free port with its data in dir.
func startServer(t testing.TB, dir string, extra ...string) *testServer {
	t.Helper()
	s := &testServer{t: t, addr: freeAddr(t), data: dir}
	s.url = "http://" + s.addr
	s.start(extra...)
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	return s
}

func (s *testServer) start(extra ...string) {
	s.t.Helper()
	args := append([]string{"server", "--addr", s.addr, "--data", s.data, "--agents", "2", "--drain-timeout", "10s"}, extra...)
	s.cmd = exec.Command("gantry", args...)
	s.stderr = &lockedWriter{w: &bytes.Buffer{}}
	s.cmd.Stdout = io.Discard
	s.cmd.Stderr = s.stderr
	s.cmd.Env = append(append(os.Environ(), "GANTRY_ADMIN_TOKEN="+testToken), s.env...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.stopped = false
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server did not become healthy: %v\n%s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *testServer) stop(sig syscall.Signal) {
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	s.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-done
		s.t.Errorf("server did not stop within 20s of %v\n%s", sig, s.stderr)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String returns what was written so far, when w is a *bytes.Buffer.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*bytes.Buffer).String()
}

func (s *testServer) client() *api.Client {
	return &api.Client{Server: s.url, Token: testToken}
}

// cli runs the gantry client against s and returns stdout, stderr and the
// exit code.
func (s *testServer) cli(args ...string) (string, string, int) {
	s.t.Helper()
	return s.cliIn(s.url, "", args...)
}

// cliIn runs the gantry client against server (a URL) with stdin.
func (s *testServer) cliIn(server, stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command("gantry", args...)
	cmd.Env = append(os.Environ(), "GANTRY_SERVER="+server, "GANTRY_TOKEN="+testToken)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func gitCmd(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// makeRepo makes a git repository whose main branch holds files, and
// returns its path and head commit.
func makeRepo(t testing.TB, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	gitCmd(t, dir, "init", "-q", "-b", "main")
	return dir, commit(t, dir, files)
}

func commit(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", "change")
	return gitCmd(t, dir, "rev-parse", "HEAD")
}

func fixture(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "fixtures", "webhooks", path))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// set assigns value at a dotted path in a decoded JSON document; numbers
// in the path index arrays.
func set(doc map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	var cur any = doc
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[p] = value
				return
			}
			cur = c[p]
		case []any:
			var n int
			fmt.Sscan(p, &n)
			if last {
				c[n] = value
				return
			}
			cur = c[n]
		}
	}
}

// delivery is a webhook as a forge would send it.
type delivery struct {
	forge   string
	headers map[string]string
	body    []byte
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// pushDelivery builds a signed push of commit to branch of repo in forge's
// format, from the forge's published example payload.
func pushDelivery(t testing.TB, forgeName, repo, branch, commit, id, secret string) delivery {
	t.Helper()
	var doc map[string]any
	h := map[string]string{"Content-Type": "application/json"}
	switch forgeName {
	case "github":
		doc = fixture(t, "github/push.json")
		set(doc, "repository.full_name", repo)
		set(doc, "ref", "refs/heads/"+branch)
		set(doc, "after", commit)
		set(doc, "head_commit.id", commit)
		h["X-GitHub-Event"] = "push"
		h["X-GitHub-Delivery"] = id
	case "gitea":
		doc = fixture(t, "gitea/push.json")
		set(doc, "repository.full_name", repo)
		set(doc, "ref", "refs/heads/"+branch)
		set(doc, "after", commit)
		h["X-Gitea-Event"] = "push"
		h["X-Gitea-Delivery"] = id
	case "gitlab":
		doc = fixture(t, "gitlab/push.json")
		set(doc, "project.path_with_namespace", repo)
		set(doc, "ref", "refs/heads/"+branch)
		set(doc, "after", commit)
		set(doc, "checkout_sha", commit)
		h["X-Gitlab-Event"] = "Push Hook"
		h["X-Gitlab-Event-UUID"] = id
		h["X-Gitlab-Token"] = secret
	case "bitbucket":
		doc = fixture(t, "bitbucket/repo_push.json")
		set(doc, "repository.full_name", repo)
		set(doc, "push.changes.0.new.name", branch)
		set(doc, "push.changes.0.new.target.hash", commit)
		h["X-Event-Key"] = "repo:push"
		h["X-Request-UUID"] = id
	}
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	switch forgeName {
	case "github":
		h["X-Hub-Signature-256"] = "sha256=" + hmacHex(secret, body)
	case "gitea":
		h["X-Gitea-Signature"] = hmacHex(secret, body)
	case "bitbucket":
		h["X-Hub-Signature"] = "sha256=" + hmacHex(secret, body)
	}
	return delivery{forge: forgeName, headers: h, body: body}
}

type hookAnswer struct {
	status int
	body   struct {
		Message string      `json:"message"`
		Error   string      `json:"error"`
		Builds  []api.Build `json:"builds"`
	}
}

func (s *testServer) send(d delivery) hookAnswer {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.url+"/hooks/"+d.forge, bytes.NewReader(d.body))
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST /hooks/%s: %v", d.forge, err)
	}
	defer resp.Body.Close()
	var a hookAnswer
	a.status = resp.StatusCode
	json.NewDecoder(resp.Body).Decode(&a.body)
	return a
}

// waitBuild waits until build id has finished and returns it.
func (s *testServer) waitBuild(id int64, within time.Duration) *api.Build {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, err := s.client().Build(context.Background(), id)
		if err == nil && b.FinishedAt != nil {
			return b
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("build %d not finished after %v (last: %+v, %v)\nserver log:\n%s", id, within, b, err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const helloPipeline = `
jobs:
  test:
    steps:
      - name: greet
        run: echo "hello from $GANTRY_BRANCH at $GANTRY_COMMIT"
  build:
    needs: [test]
    steps: ["echo built"]
`

func TestServerPushEndToEnd(t *testing.T) {
	t.Parallel()
	for _, forgeName := range []string{"github", "gitea", "gitlab", "bitbucket"} {
		t.Run(forgeName, func(t *testing.T) {
			t.Parallel()
			repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
			s := startServer(t, t.TempDir())
			name := "acme/" + forgeName + "-app"
			if out, errOut, code := s.cli("repo", "add", name, "--url", repoDir, "--webhook-secret", "s3cret", "--forge", forgeName); code != 0 {
				t.Fatalf("repo add = %d: %s%s", code, out, errOut)
			}
			a := s.send(pushDelivery(t, forgeName, name, "main", sha, "delivery-1", "s3cret"))
			if a.status != http.StatusCreated || len(a.body.Builds) != 1 {
				t.Fatalf("push = %d %+v, want 201 with one build\n%s", a.status, a.body, s.stderr)
			}
			id := a.body.Builds[0].ID

			// The CLI follows the logs until the build ends, and exits 0.
			out, errOut, code := s.cli("logs", fmt.Sprint(id), "--follow")
			if code != 0 {
				t.Fatalf("logs --follow = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			want := fmt.Sprintf("[test] hello from main at %s\n[build] built\n", sha)
			if out != want {
				t.Errorf("logs --follow printed %q, want %q", out, want)
			}
			b := s.waitBuild(id, 30*time.Second)
			if b.Status != "success" || b.Commit != sha || b.Branch != "main" || b.Event != "push" || b.Number != 1 {
				t.Errorf("build = %s %s %s %s #%d, want success of %s on main by push, #1", b.Status, b.Commit, b.Branch, b.Event, b.Number, sha)
			}
			if len(b.Jobs) != 2 || b.Jobs[0].ExitCode == nil || *b.Jobs[0].ExitCode != 0 || len(b.Jobs[0].Steps) != 1 || b.Jobs[0].Steps[0].Name != "greet" {
				t.Errorf("jobs = %+v, want test and build, exit 0, step greet", b.Jobs)
			}
			// The same through the JSON output of the CLI.
			out, _, code = s.cli("build", fmt.Sprint(id), "--output", "json")
			var fromCLI api.Build
			if err := json.Unmarshal([]byte(out), &fromCLI); code != 0 || err != nil || fromCLI.Status != "success" {
				t.Errorf("gantry build --output json = %d %v %q", code, err, out)
			}
			// A redelivery gets the same build back, and makes none.
			again := s.send(pushDelivery(t, forgeName, name, "main", sha, "delivery-1", "s3cret"))
			if again.status != http.StatusOK || len(again.body.Builds) != 1 || again.body.Builds[0].ID != id {
				t.Errorf("redelivery = %d %+v, want 200 with build %d", again.status, again.body, id)
			}
			builds, err := s.client().Builds(context.Background(), name, "", "", 0)
			if err != nil || len(builds) != 1 {
				t.Errorf("builds after redelivery = %d (%v), want 1", len(builds), err)
			}
		})
	}
}

// TestServerPostgres runs the real server on PostgreSQL: a push builds,
// and the build is in the database, not the data dir: a server started
// afterwards with another data dir serves it, and numbers on from it.
func TestServerPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": helloPipeline})
	s := startServer(t, t.TempDir(), "--database", db)
	if out, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "s3cret"); code != 0 {
		t.Fatalf("repo add = %d: %s%s", code, out, errOut)
	}
	a := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "pg-1", "s3cret"))
	if a.status != http.StatusCreated || len(a.body.Builds) != 1 {
		t.Fatalf("push = %d %+v, want 201 with one build\n%s", a.status, a.body, s.stderr)
	}
	id := a.body.Builds[0].ID
	out, errOut, code := s.cli("logs", fmt.Sprint(id), "--follow")
	if want := fmt.Sprintf("[test] hello from main at %s\n[build] built\n", sha); code != 0 || out != want {
		t.Errorf("logs --follow = %d %q %s, want 0 and %q", code, out, errOut, want)
	}
	if b := s.waitBuild(id, 30*time.Second); b.Status != "success" || b.Number != 1 {
		t.Errorf("build = %s #%d, want success #1", b.Status, b.Number)
	}
	s.stop(syscall.SIGTERM)

	other := startServer(t, t.TempDir(), "--database", db)
	if b := other.waitBuild(id, 5*time.Second); b.Status != "success" || b.Commit != sha {
		t.Errorf("build %d from a second server on the same database = %s %s, want success of %s", id, b.Status, b.Commit, sha)
	}
	again := other.send(pushDelivery(t, "github", "acme/app", "main", sha, "pg-1", "s3cret"))
	if again.status != http.StatusOK || len(again.body.Builds) != 1 || again.body.Builds[0].ID != id {
		t.Errorf("redelivery to the second server = %d %+v, want 200 with build %d", again.status, again.body, id)
	}
	next := other.send(pushDelivery(t, "github", "acme/app", "main", sha, "pg-2", "s3cret"))
	if next.status != http.StatusCreated || len(next.body.Builds) != 1 {
		t.Fatalf("second push = %d %+v, want 201\n%s", next.status, next.body, other.stderr)
	}
	if b := other.waitBuild(next.body.Builds[0].ID, 30*time.Second); b.Status != "success" || b.Number != 2 {
		t.Errorf("second build = %s #%d, want success #2", b.Status, b.Number)
	}
}

func TestServerRefusesBadInput(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": `
on: {push: {branches: [main]}}
jobs: {test: {steps: ["true"]}}
`})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "right"); code != 0 {
		t.Fatalf("repo add: %s", errOut)
	}
	count := func() int {
		bs, err := s.client().Builds(context.Background(), "acme/app", "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}

	wrong := pushDelivery(t, "github", "acme/app", "main", sha, "d-wrong", "not-the-secret")
	if a := s.send(wrong); a.status != http.StatusUnauthorized {
		t.Errorf("wrong signature = %d %+v, want 401", a.status, a.body)
	}
	unsigned := pushDelivery(t, "github", "acme/app", "main", sha, "d-unsigned", "right")
	delete(unsigned.headers, "X-Hub-Signature-256")
	if a := s.send(unsigned); a.status != http.StatusUnauthorized {
		t.Errorf("missing signature = %d, want 401", a.status)
	}
	tampered := pushDelivery(t, "github", "acme/app", "main", sha, "d-tampered", "right")
	tampered.body = bytes.Replace(tampered.body, []byte(sha), []byte(strings.Repeat("0", 40)), 1)
	if a := s.send(tampered); a.status != http.StatusUnauthorized {
		t.Errorf("tampered body = %d, want 401", a.status)
	}
	if n := count(); n != 0 {
		t.Errorf("%d builds after refused deliveries, want 0", n)
	}
	if a := s.send(pushDelivery(t, "github", "acme/unknown", "main", sha, "d-unknown", "right")); a.status != http.StatusNotFound {
		t.Errorf("unknown repo = %d, want 404", a.status)
	}
	big := pushDelivery(t, "github", "acme/app", "main", sha, "d-big", "right")
	big.body = append(big.body[:len(big.body)-1], []byte(`,"padding":"`+strings.Repeat("x", 11<<20)+`"}`)...)
	if a := s.send(big); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("11 MiB body = %d, want 413", a.status)
	}
	if a := s.send(delivery{forge: "github", headers: map[string]string{"X-GitHub-Event": "push"}, body: []byte("{not json")}); a.status != http.StatusBadRequest {
		t.Errorf("malformed body = %d, want 400", a.status)
	}
	if a := s.send(delivery{forge: "sourcehut", body: []byte("{}")}); a.status != http.StatusNotFound {
		t.Errorf("unknown forge = %d, want 404", a.status)
	}
	if n := count(); n != 0 {
		t.Errorf("%d builds after refused deliveries, want 0", n)
	}

	// A push the pipeline's on: filter excludes is recorded as skipped,
	// with the reason.
	a := s.send(pushDelivery(t, "github", "acme/app", "feature/x", sha, "d-feature", "right"))
	if a.status != http.StatusCreated || len(a.body.Builds) != 1 {
		t.Fatalf("filtered push = %d %+v, want 201 with a build", a.status, a.body)
	}
	b := s.waitBuild(a.body.Builds[0].ID, 10*time.Second)
	if b.Status != "skipped" || b.Reason != `branch "feature/x" matches none of on.push.branches [main]` {
		t.Errorf("filtered build = %s %q, want skipped with the reason", b.Status, b.Reason)
	}

	// GitHub's ping answers 200.
	ping := fixture(t, "github/ping.json")
	set(ping, "repository.full_name", "acme/app")
	body, _ := json.Marshal(ping)
	d := delivery{forge: "github", body: body, headers: map[string]string{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p1", "X-Hub-Signature-256": "sha256=" + hmacHex("right", body)}}
	if a := s.send(d); a.status != http.StatusOK || a.body.Message != "pong" {
		t.Errorf("ping = %d %+v, want 200 pong", a.status, a.body)
	}

	// The API wants a token.
	resp, err := http.Get(s.url + "/api/v1/builds")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/builds without a token = %v %v, want 401", resp.StatusCode, err)
	}
	if _, errOut, code := s.cli("builds", "--token", "wrong"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("builds with a wrong token = %d %q, want exit 1 and a 401", code, errOut)
	}
}

// kill -9 of the server during a build, then a restart: no build stays
// running, the job ends as error "server restarted", queued builds still
// run, and the log written before the crash is still there.
func TestServerCrashRecovery(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  long:
    steps:
      - run: |
          echo "before the crash"
          sleep 30
          echo "never"
`})
	data := t.TempDir()
	s := startServer(t, data, "--agents", "1")
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	first := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "c1", "k")).body.Builds[0].ID
	second := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "c2", "k")).body.Builds[0].ID
	// Wait for the first line of the running build to be stored.
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines, _ := s.client().Logs(context.Background(), first, "")
		if len(lines) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line stored while running\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop(syscall.SIGKILL)

	s.start("--agents", "1")
	b := s.waitBuild(first, 10*time.Second)
	if b.Status != "error" || b.Jobs[0].Status != "error" || b.Jobs[0].Reason != "server restarted" {
		t.Errorf("crashed build = %s, job %s %q; want error, error \"server restarted\"", b.Status, b.Jobs[0].Status, b.Jobs[0].Reason)
	}
	lines, err := s.client().Logs(context.Background(), first, "")
	if err != nil || len(lines) != 1 || lines[0].Line != "before the crash" {
		t.Errorf("logs after the crash = %+v %v, want the line written before it", lines, err)
	}
	// The queued build runs after the restart (and is cancelled here so
	// the test need not wait 30s).
	deadline = time.Now().Add(15 * time.Second)
	for {
		b2, err := s.client().Build(context.Background(), second)
		if err == nil && b2.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued build did not start after the restart: %+v %v", b2, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, errOut, code := s.cli("cancel", fmt.Sprint(second)); code != 0 {
		t.Fatalf("cancel: %s", errOut)
	}
	if b2 := s.waitBuild(second, 10*time.Second); b2.Status != "cancelled" {
		t.Errorf("cancelled build = %s, want cancelled", b2.Status)
	}
}

// 1,000 deliveries as fast as possible, 50 at a time, 250 distinct: every
// one answered 2xx, exactly one build per distinct delivery, none lost.
func TestServerDeliveryStorm(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "concurrency: parallel\njobs: {ok: {steps: [\"true\"]}}\n"})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	const total, distinct, workers = 1000, 250, 50
	deliveries := make([]delivery, distinct)
	for i := range deliveries {
		deliveries[i] = pushDelivery(t, "github", "acme/app", "main", sha, fmt.Sprintf("storm-%d", i), "k")
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	byDelivery := map[int]map[int64]bool{}
	work := make(chan int)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d := deliveries[i%distinct]
				req, _ := http.NewRequest("POST", s.url+"/hooks/github", bytes.NewReader(d.body))
				for k, v := range d.headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("delivery %d: %v", i, err)
					continue
				}
				var a struct{ Builds []api.Build }
				json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				if byDelivery[i%distinct] == nil {
					byDelivery[i%distinct] = map[int64]bool{}
				}
				for _, b := range a.Builds {
					byDelivery[i%distinct][b.ID] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if statuses[201] != distinct || statuses[200] != total-distinct || len(statuses) != 2 {
		t.Errorf("answers = %v, want %d×201 and %d×200", statuses, distinct, total-distinct)
	}
	for i := 0; i < distinct; i++ {
		if len(byDelivery[i]) != 1 {
			t.Errorf("delivery %d answered with builds %v, want always the same one", i, byDelivery[i])
		}
	}
	builds, err := s.client().Builds(context.Background(), "acme/app", "", "", 1000)
	if err != nil || len(builds) != distinct {
		t.Fatalf("%d builds (%v), want %d", len(builds), err, distinct)
	}
	// Oldest first (builds is newest first): each wait then covers the
	// progress since the one before, so a loaded machine that runs the
	// 250 builds slowly passes, and a build that is stuck still fails.
	for _, b := range slices.Backward(builds) {
		s.waitBuild(b.ID, 60*time.Second)
	}
	for _, b := range builds {
		if b := s.waitBuild(b.ID, time.Second); b.Status != "success" {
			t.Errorf("build %d = %s %q, jobs %+v, want success", b.ID, b.Status, b.Reason, b.Jobs)
		}
	}
}

func TestServerCancelRetryAndTrigger(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  flaky:
    steps: ["test -f ok-marker || { echo flaky failed; exit 1; }"]
  stable:
    steps: ["echo stable ran"]
  after:
    needs: [flaky, stable]
    steps: ["echo after ran"]
`})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	// A manual trigger builds the branch head.
	out, errOut, code := s.cli("trigger", "acme/app", "--branch", "main", "--follow")
	if code != 1 {
		t.Fatalf("trigger --follow of a failing build = %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "[flaky] flaky failed") || !strings.Contains(out, "[stable] stable ran") || strings.Contains(out, "after ran") {
		t.Errorf("trigger --follow printed %q", out)
	}
	builds, _ := s.client().Builds(context.Background(), "acme/app", "", "", 0)
	first := builds[0]
	if first.Status != "failure" || first.Event != "manual" {
		t.Fatalf("first build = %s %s, want failure, manual", first.Status, first.Event)
	}
	// retry --failed reuses stable and runs flaky again (still failing).
	out, errOut, code = s.cli("retry", fmt.Sprint(first.ID), "--failed", "--output", "json")
	var retried api.Build
	if err := json.Unmarshal([]byte(out), &retried); code != 0 || err != nil {
		t.Fatalf("retry --failed = %d %v %s", code, err, errOut)
	}
	b := s.waitBuild(retried.ID, 20*time.Second)
	if b.RetryOf != first.ID || b.Number != 2 || b.Status != "failure" {
		t.Errorf("retry = %+v, want build #2 retrying %d, failure", b, first.ID)
	}
	for _, j := range b.Jobs {
		if j.Name == "stable" && j.Reason != "passed in build 1" {
			t.Errorf("stable in the retry = %s %q, want reused from build 1", j.Status, j.Reason)
		}
	}
	lines, _ := s.client().Logs(context.Background(), b.ID, "stable")
	if len(lines) != 0 {
		t.Errorf("stable ran again in the retry: %+v", lines)
	}
}

// prDelivery is a signed GitHub pull_request event for head commit sha of
// branch into main.
func prDelivery(t *testing.T, repo, action string, number int, branch, sha, id, secret string) delivery {
	t.Helper()
	doc := fixture(t, "github/pull_request_opened.json")
	set(doc, "action", action)
	set(doc, "number", float64(number))
	set(doc, "repository.full_name", repo)
	set(doc, "pull_request.number", float64(number))
	set(doc, "pull_request.head.sha", sha)
	set(doc, "pull_request.head.ref", branch)
	set(doc, "pull_request.head.repo.full_name", repo)
	set(doc, "pull_request.base.ref", "main")
	set(doc, "pull_request.base.repo.full_name", repo)
	body, _ := json.Marshal(doc)
	return delivery{forge: "github", body: body, headers: map[string]string{
		"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": id,
		"X-Hub-Signature-256": "sha256=" + hmacHex(secret, body)}}
}

// Pushes to one branch queue behind each other; a new commit of a pull
// request cancels the build of the one before.
func TestServerConcurrency(t *testing.T) {
	t.Parallel()
	// The first build holds until the three pushes are in, so that the
	// later two wait for it however slow the machine.
	gate := filepath.Join(t.TempDir(), "gate")
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": fmt.Sprintf("jobs: {slow: {steps: [\"while [ ! -e %s ]; do sleep 0.05; done\"]}}\n", gate)})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	var ids []int64
	for i := 0; i < 3; i++ {
		a := s.send(pushDelivery(t, "github", "acme/app", "main", sha, fmt.Sprintf("q%d", i), "k"))
		if a.status != http.StatusCreated {
			t.Fatalf("push %d = %d %+v", i, a.status, a.body)
		}
		ids = append(ids, a.body.Builds[0].ID)
		if i > 0 && a.body.Builds[0].Reason != "waiting for build #1 to finish (concurrency: queue)" {
			t.Errorf("build %d reason = %q, want it to wait for build #1", i+1, a.body.Builds[0].Reason)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var prev *api.Build
	for _, id := range ids {
		b := s.waitBuild(id, 20*time.Second)
		if b.Status != "success" {
			t.Errorf("build %d = %s %q, want success", b.Number, b.Status, b.Reason)
		}
		if prev != nil && b.StartedAt.Before(*prev.FinishedAt) {
			t.Errorf("build #%d started at %v, before build #%d finished at %v", b.Number, b.StartedAt, prev.Number, prev.FinishedAt)
		}
		prev = b
	}

	// The pull request's builds hold on a gate of their own, so that the
	// first still runs when the second push comes.
	prGate := gate + "-pr"
	prSHA := commit(t, repoDir, map[string]string{"feature.txt": "x",
		".gantry.yml": fmt.Sprintf("jobs: {slow: {steps: [\"while [ ! -e %s ]; do sleep 0.05; done\"]}}\n", prGate)})
	first := s.send(prDelivery(t, "acme/app", "opened", 7, "feature", prSHA, "pr-1", "k"))
	if first.status != http.StatusCreated {
		t.Fatalf("pull request opened = %d %+v", first.status, first.body)
	}
	second := s.send(prDelivery(t, "acme/app", "synchronize", 7, "feature", prSHA, "pr-2", "k"))
	if second.status != http.StatusCreated {
		t.Fatalf("pull request synchronize = %d %+v", second.status, second.body)
	}
	b1 := s.waitBuild(first.body.Builds[0].ID, 10*time.Second)
	if err := os.WriteFile(prGate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if b1.Status != "cancelled" || b1.Reason != fmt.Sprintf("superseded by build #%d", second.body.Builds[0].Number) {
		t.Errorf("older pull request build = %s %q, want cancelled, superseded", b1.Status, b1.Reason)
	}
	if b2 := s.waitBuild(second.body.Builds[0].ID, 10*time.Second); b2.Status != "success" || b2.Event != "pull_request" || b2.PullRequest != 7 {
		t.Errorf("newer pull request build = %s %s #%d, want success", b2.Status, b2.Event, b2.PullRequest)
	}
}

func TestServerEventsAndMetrics(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {ok: {steps: [\"echo ok\"]}}\n"})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	// Subscribe to build state changes before anything happens.
	req, _ := http.NewRequest("GET", s.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/v1/events = %v %v", resp, err)
	}
	seen := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		var acc string
		for {
			n, err := resp.Body.Read(buf)
			acc += string(buf[:n])
			for {
				i := strings.Index(acc, "\n\n")
				if i < 0 {
					break
				}
				seen <- acc[:i]
				acc = acc[i+2:]
			}
			if err != nil {
				close(seen)
				return
			}
		}
	}()
	a := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "e1", "k"))
	id := a.body.Builds[0].ID
	deadline := time.After(15 * time.Second)
	var statuses []string
wait:
	for {
		select {
		case ev, ok := <-seen:
			if !ok {
				t.Fatal("event stream ended")
			}
			data, found := strings.CutPrefix(ev[strings.Index(ev, "data: "):], "data: ")
			var b api.Build
			if !strings.HasPrefix(ev, "event: build\n") || !found || json.Unmarshal([]byte(data), &b) != nil || b.ID != id {
				continue
			}
			statuses = append(statuses, b.Status)
			if b.Status == "success" {
				break wait
			}
		case <-deadline:
			t.Fatalf("no success event for build %d; saw %v", id, statuses)
		}
	}
	if statuses[0] != "queued" {
		t.Errorf("first event status = %s, want queued (saw %v)", statuses[0], statuses)
	}

	mresp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`gantry_builds{status="success"} 1`,
		`gantry_webhooks_total{forge="github",outcome="build"} 1`,
		`gantry_queue_depth 0`,
		`gantry_build_duration_seconds_count 1`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// A job no agent can take says why it waits.
func TestServerExplainsWaitingJobs(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {train: {runs-on: [gpu], steps: [\"true\"]}}\n"})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "x1", "k")).body.Builds[0].ID
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := s.client().Build(context.Background(), id)
		if err == nil && b.Jobs[0].Reason == "waiting: no agent has labels [gpu]" {
			if b.Status != "queued" || b.Jobs[0].Status != "queued" {
				t.Errorf("build = %s, job %s; want both queued", b.Status, b.Jobs[0].Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job reason = %+v %v, want it to name the missing label", b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _, _ := s.cli("build", fmt.Sprint(id))
	if !strings.Contains(out, "waiting: no agent has labels [gpu]") {
		t.Errorf("gantry build does not show why the job waits:\n%s", out)
	}
}

// Without GANTRY_ADMIN_TOKEN the first start prints a generated token once;
// it works, and a second start prints none.
func TestServerGeneratesAdminTokenOnce(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addr := freeAddr(t)
	start := func() (*exec.Cmd, *lockedWriter) {
		cmd := exec.Command("gantry", "server", "--addr", addr, "--data", data, "--agents", "0")
		out := &lockedWriter{w: &bytes.Buffer{}}
		cmd.Stdout = out
		cmd.Stderr = io.Discard
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GANTRY_ADMIN_TOKEN=") {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("server did not start")
			}
		}
		return cmd, out
	}
	cmd, out := start()
	time.Sleep(100 * time.Millisecond)
	var token string
	for _, f := range strings.Fields(out.String()) {
		if strings.HasPrefix(f, "gantry_") {
			token = f
		}
	}
	if token == "" {
		t.Fatalf("first start printed no token:\n%s", out)
	}
	c := &api.Client{Server: "http://" + addr, Token: token}
	if _, err := c.Repos(context.Background()); err != nil {
		t.Errorf("the printed token does not work: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	cmd, out = start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(out.String(), "gantry_") {
		t.Errorf("second start printed a token again:\n%s", out)
	}
	if _, err := c.Repos(context.Background()); err != nil {
		t.Errorf("the token stopped working after a restart: %v", err)
	}
}

// SIGTERM drains: the running job finishes, then the server exits 0.
func TestServerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": "jobs: {work: {steps: [\"sleep 1; echo finished\"]}}\n"})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	id := s.send(pushDelivery(t, "github", "acme/app", "main", sha, "t1", "k")).body.Builds[0].ID
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := s.client().Build(context.Background(), id)
		if err == nil && b.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("build did not start: %+v %v", b, err)
		}
	}
	s.stopped = true
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM = %v, want 0\n%s", err, s.stderr)
	}
	s.start()
	b := s.waitBuild(id, 10*time.Second)
	if b.Status != "success" {
		t.Errorf("build drained by SIGTERM = %s %+v, want success", b.Status, b.Jobs)
	}
	lines, _ := s.client().Logs(context.Background(), id, "")
	if len(lines) != 1 || lines[0].Line != "finished" {
		t.Errorf("logs = %+v, want the line printed after SIGTERM", lines)
	}
}
