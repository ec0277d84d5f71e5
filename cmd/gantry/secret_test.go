package main

// End-to-end tests of secrets: the real server and CLI, real SQLite, real
// git repositories and webhooks, and, for remote agents, a real `gantry
// agent` over HTTP.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

// The secret the tests set: it changes under base64 and URL encoding.
const (
	secretValue = "s3cr3t value/with@chars"
	certValue   = "-----BEGIN TEST KEY-----\nline-one-abc\nline-two-def\n-----END TEST KEY-----"
)

// secretForms are what no answer, log or file may hold.
func secretForms() []string {
	forms := []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue)),
		base64.StdEncoding.EncodeToString([]byte(secretValue + "\n"))[:28],
		url.QueryEscape(secretValue), url.PathEscape(secretValue), "line-one-abc", "line-two-def"}
	return forms
}

func holdsSecret(s string) string {
	for _, f := range secretForms() {
		if strings.Contains(s, f) {
			return f
		}
	}
	return ""
}

// startServerEnv is startServer with variables added to the server's
// environment.
func startServerEnv(t testing.TB, dir string, env []string, extra ...string) *testServer {
	t.Helper()
	s := &testServer{t: t, addr: freeAddr(t), data: dir, env: env}
	s.url = "http://" + s.addr
	s.start(extra...)
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	return s
}

// recorder is a reverse proxy in front of a server that keeps every
// answer the server gave, streams included.
type recorder struct {
	url  string
	mu   sync.Mutex
	seen bytes.Buffer
	n    int
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, _ := url.Parse(target)
	rec := &recorder{}
	p := httputil.NewSingleHostReverseProxy(u)
	p.FlushInterval = -1 // log streams pass at once
	p.ModifyResponse = func(resp *http.Response) error {
		rec.mu.Lock()
		rec.n++
		fmt.Fprintf(&rec.seen, "\n== %s %s -> %d\n", resp.Request.Method, resp.Request.URL, resp.StatusCode)
		rec.mu.Unlock()
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(resp.Body, rec), resp.Body}
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.Write(p)
}

func (r *recorder) answers() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.String(), r.n
}

const leakyPipeline = `
jobs:
  deploy:
    secrets: [DEPLOY_TOKEN, CERT]
    steps:
      - name: leak
        run: |
          echo "plain: $DEPLOY_TOKEN"
          printf '%s' "$DEPLOY_TOKEN" | base64
          echo "$DEPLOY_TOKEN" | base64
          printf '%s\n' "$DEPLOY_TOKEN" | sed -e 's/ /+/g' -e 's#/#%2F#g' -e 's/@/%40/g'
          printf 'split: %.10s' "$DEPLOY_TOKEN"; sleep 1; printf '%s\n' "${DEPLOY_TOKEN#??????????}"
          echo "$CERT" | sed 's/^/> /'
  other:
    steps:
      - run: 'echo "other sees: ${DEPLOY_TOKEN:-none}"' 
`

// The whole way of a secret: set from stdin, listed without its value,
// handed to the one job that names it, masked in every form it prints it
// in (split across writes too), absent from every answer the CLI got and
// from every file of the server; and a copy of the database opened under
// another key reveals nothing, and says why.
func TestServerSecretsEndToEnd(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": leakyPipeline})
	data := t.TempDir()
	s := startServer(t, data)
	rec := newRecorder(t, s.url)
	cli := func(stdin string, args ...string) (string, string, int) { return s.cliIn(rec.url, stdin, args...) }
	if _, errOut, code := cli("", "repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}

	// A value on the command line is refused, and nothing is stored.
	_, errOut, code := cli("", "secret", "set", "acme/web", "DEPLOY_TOKEN", secretValue)
	if code != exitUsage || !strings.Contains(errOut, "the value is read from stdin, never from the command line") {
		t.Errorf("secret set with a value argument = %d %q, want 2 and why", code, errOut)
	}
	_, errOut, code = cli("", "secret", "set", "acme/web", "DEPLOY_TOKEN")
	if code != exitUsage || !strings.Contains(errOut, "the value is empty") {
		t.Errorf("secret set with nothing on stdin = %d %q, want 2, the value is empty", code, errOut)
	}
	if out, _, _ := cli("", "secret", "list", "acme/web", "--output", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("after refused sets, secret list = %s, want []", out)
	}

	// Set from stdin; the trailing newline of echo is dropped.
	for _, c := range []struct{ stdin, name, env, want string }{
		{secretValue + "\n", "DEPLOY_TOKEN", "", "created secret DEPLOY_TOKEN of acme/web\n"},
		{certValue + "\n", "CERT", "", "created secret CERT of acme/web\n"},
		{"prod-only-value", "DEPLOY_TOKEN", "production", "created secret DEPLOY_TOKEN of acme/web for environment production\n"},
		{secretValue, "DEPLOY_TOKEN", "", "updated secret DEPLOY_TOKEN of acme/web\n"},
	} {
		args := []string{"secret", "set", "acme/web", c.name}
		if c.env != "" {
			args = append(args, "--environment", c.env)
		}
		if out, errOut, code := cli(c.stdin, args...); code != 0 || out != c.want {
			t.Fatalf("secret set %s %q = %d %q %s, want %q", c.name, c.env, code, out, errOut, c.want)
		}
	}
	out, _, code := cli("", "secret", "list", "acme/web")
	if code != 0 || !strings.HasPrefix(out, "NAME          ENVIRONMENT  KEY ") || !strings.Contains(out, "\nCERT          -            ") ||
		!strings.Contains(out, "\nDEPLOY_TOKEN  -  ") || !strings.Contains(out, "\nDEPLOY_TOKEN  production  ") {
		t.Errorf("secret list =\n%s\nwant CERT, DEPLOY_TOKEN unscoped and for production", out)
	}
	out, _, _ = cli("", "secret", "list", "acme/web", "--output", "json")
	var listed []api.Secret
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 3 || listed[1].Name != "DEPLOY_TOKEN" ||
		listed[1].Environment != "" || listed[1].KeyID == "" || listed[1].UpdatedAt.Before(listed[1].CreatedAt) {
		t.Errorf("secret list --output json = %s (%v)", out, err)
	}

	// A build: the one job that names the secret gets it; it is masked in
	// every form, split across writes and lines too.
	out, errOut, code = cli("", "trigger", "acme/web", "--follow")
	want := "[deploy] plain: ***\n[deploy] ***\n[deploy] ***\n[deploy] ***\n[deploy] split: ***\n" +
		"[deploy] > ***\n[deploy] > ***\n[deploy] > ***\n[deploy] > ***\n[other] other sees: none\n"
	if code != 0 {
		t.Fatalf("trigger --follow = %d\n%s\n%s", code, out, errOut)
	}
	// Followed live, the two jobs' lines may interleave; stored, they are
	// in job order.
	if !sameLines(out, want) {
		t.Errorf("trigger --follow printed\n%s\nwant (in any order)\n%s", out, want)
	}
	builds, _ := s.client().Builds(context.Background(), "acme/web", "", "", 0)
	id := fmt.Sprint(builds[0].ID)
	if out, _, _ := cli("", "logs", id); out != want {
		t.Errorf("logs =\n%s\nwant\n%s", out, want)
	}
	for _, args := range [][]string{{"logs", id, "--output", "json"}, {"build", id, "--output", "json"}, {"build", id},
		{"builds", "acme/web", "--output", "json"}, {"repo", "list", "--output", "json"}, {"queue"}, {"agents", "--output", "json"}} {
		if out, errOut, code := cli("", args...); code != 0 || holdsSecret(out+errOut) != "" {
			t.Errorf("gantry %v = %d, holds %q:\n%s%s", args, code, holdsSecret(out+errOut), out, errOut)
		}
	}
	if out, errOut, code := cli("", "secret", "rm", "acme/web", "DEPLOY_TOKEN", "--environment", "production"); code != 0 ||
		out != "removed secret DEPLOY_TOKEN of acme/web for environment production\n" {
		t.Errorf("secret rm --environment production = %d %q %s", code, out, errOut)
	}
	if _, errOut, code := cli("", "secret", "rm", "acme/web", "NOPE"); code != exitFailed || !strings.Contains(errOut, "acme/web has no secret NOPE") {
		t.Errorf("secret rm of a missing secret = %d %q, want 1 and why", code, errOut)
	}

	// Not one answer the CLI got holds the value, in any form.
	seen, n := rec.answers()
	if n < 15 {
		t.Errorf("the recorder saw %d answers; the test is not looking", n)
	}
	if f := holdsSecret(seen); f != "" {
		t.Errorf("an API answer holds %q:\n%s", f, seen)
	}
	if !strings.Contains(seen, "plain: ***") {
		t.Errorf("the recorded answers lack the masked log; the test is not looking:\n%s", seen)
	}

	// At rest: no file of the server holds the value.
	s.stop(syscall.SIGTERM)
	var dbFiles []string
	filepath.Walk(data, func(path string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(path)
		if f := holdsSecret(string(b)); f != "" {
			t.Errorf("%s holds %q", path, f)
		}
		if strings.HasPrefix(filepath.Base(path), "gantry.db") {
			dbFiles = append(dbFiles, path)
		}
		return nil
	})

	// The database copied without its key: a server with another key
	// warns at start, and a job that needs the secret fails saying why.
	stolen := t.TempDir()
	for _, f := range dbFiles {
		b, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(stolen, filepath.Base(f)), b, 0o600)
	}
	otherKey := base64.StdEncoding.EncodeToString(secret.NewKey())
	s2 := startServerEnv(t, stolen, []string{"GANTRY_SECRET_KEY=" + otherKey})
	if _, err := os.Stat(filepath.Join(stolen, "secret.key")); !os.IsNotExist(err) {
		t.Errorf("with GANTRY_SECRET_KEY set the server made a key file: %v", err)
	}
	waitFor(t, 5*time.Second, "no warning of unreadable secrets:\n"+s2.stderr.String(), func() bool {
		return strings.Contains(s2.stderr.String(), "secrets are encrypted under keys this server does not have")
	})
	b2, err := s2.client().Trigger(context.Background(), "acme/web", api.Trigger{})
	if err != nil {
		t.Fatal(err)
	}
	done := s2.waitBuild(b2.ID, 30*time.Second)
	deploy := done.Jobs[0]
	if done.Status != "error" || deploy.Status != "error" ||
		!strings.HasPrefix(deploy.Reason, "secret DEPLOY_TOKEN of acme/web cannot be decrypted: encrypted under a key this server does not have: it was encrypted under key ") {
		t.Errorf("job under another key = %s %q, want error: cannot be decrypted, and why", deploy.Status, deploy.Reason)
	}
	if lines, _ := s2.client().Logs(context.Background(), b2.ID, "deploy"); len(lines) != 0 {
		t.Errorf("the job that could not get its secrets ran: %v", lines)
	}
}

func sameLines(a, b string) bool {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(la) != len(lb) {
		return false
	}
	count := map[string]int{}
	for _, l := range la {
		count[l]++
	}
	for _, l := range lb {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

const hashPipeline = `
jobs:
  show:
    secrets: [A, B]
    steps:
      - run: |
          printf '%s' "$A" | sha256sum | cut -c1-64
          printf '%s' "$B" | sha256sum | cut -c1-64
`

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// keyLines are the keys in a key file.
func keyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// runShow runs a build of hashPipeline and returns its log lines.
func (s *testServer) runShow(t *testing.T) string {
	t.Helper()
	b, err := s.client().Trigger(context.Background(), "acme/web", api.Trigger{})
	if err != nil {
		t.Fatal(err)
	}
	if done := s.waitBuild(b.ID, 30*time.Second); done.Status != "success" {
		t.Fatalf("build = %s: %+v", done.Status, done.Jobs)
	}
	out, _, _ := s.cli("logs", fmt.Sprint(b.ID))
	return out
}

// After a key rotation every value still reaches jobs exactly, and the old
// key is no longer needed: it is not in the key file any more, and a
// server started on that file alone runs them.
func TestServerSecretKeyRotation(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": hashPipeline})
	data := t.TempDir()
	s := startServer(t, data)
	if _, errOut, code := s.cli("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	keyFile := filepath.Join(data, "secret.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file = %v, %v; want one of mode 0600", fi, err)
	}
	oldKeys := keyLines(t, keyFile)
	if len(oldKeys) != 1 {
		t.Fatalf("key file holds %d keys, want 1", len(oldKeys))
	}
	values := map[string]string{"A": "value-of-a-" + strings.Repeat("x", 40), "B": "value of b"}
	for name, v := range values {
		if _, errOut, code := s.cliIn(s.url, v, "secret", "set", "acme/web", name); code != 0 {
			t.Fatal(errOut)
		}
	}
	want := fmt.Sprintf("[show] %s\n[show] %s\n", sha(values["A"]), sha(values["B"]))
	if got := s.runShow(t); got != want {
		t.Fatalf("before rotation the job printed\n%s\nwant\n%s", got, want)
	}

	out, errOut, code := s.cli("secret", "rotate-key")
	if code != 0 || !strings.Contains(out, ": 2 re-encrypted\n") || !strings.Contains(out, "is no longer needed: dropped from "+keyFile) {
		t.Fatalf("secret rotate-key = %d %q %s", code, out, errOut)
	}
	newKeys := keyLines(t, keyFile)
	if len(newKeys) != 1 || newKeys[0] == oldKeys[0] {
		t.Errorf("key file after rotation holds %d keys (the old one: %v), want only a new one", len(newKeys), len(newKeys) > 0 && newKeys[0] == oldKeys[0])
	}
	out, _, _ = s.cli("secret", "list", "acme/web", "--output", "json")
	var listed []api.Secret
	json.Unmarshal([]byte(out), &listed)
	for _, l := range listed {
		if l.KeyID != secret.KeyID(mustDecode(t, newKeys[0])) {
			t.Errorf("after rotation %s is under key %s, want the new key", l.Name, l.KeyID)
		}
	}
	if got := s.runShow(t); got != want {
		t.Errorf("after rotation the job printed\n%s\nwant\n%s", got, want)
	}
	// A restart on the new key file alone.
	s.stop(syscall.SIGTERM)
	s.start()
	if got := s.runShow(t); got != want {
		t.Errorf("after rotation and a restart the job printed\n%s\nwant\n%s", got, want)
	}

	// Only an admin token rotates.
	if out, errOut, code := s.cli("secret", "rotate-key", "--output", "json"); code != 0 || !strings.Contains(out, `"reencrypted": 2`) {
		t.Errorf("secret rotate-key --output json = %d %s %s", code, out, errOut)
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forkPRDelivery is a signed GitHub pull_request event whose head lives
// in another repository, a fork.
func forkPRDelivery(t *testing.T, repo string, number int, sha, id, secret string) delivery {
	t.Helper()
	doc := fixture(t, "github/pull_request_opened.json")
	set(doc, "action", "opened")
	set(doc, "number", float64(number))
	set(doc, "repository.full_name", repo)
	set(doc, "pull_request.number", float64(number))
	set(doc, "pull_request.head.sha", sha)
	set(doc, "pull_request.head.ref", "patch-1")
	set(doc, "pull_request.head.repo.full_name", "stranger/web")
	set(doc, "pull_request.head.repo.id", float64(99999))
	set(doc, "pull_request.base.ref", "main")
	set(doc, "pull_request.base.repo.full_name", repo)
	body, _ := json.Marshal(doc)
	return delivery{forge: "github", body: body, headers: map[string]string{
		"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": id,
		"X-Hub-Signature-256": "sha256=" + hmacHex(secret, body)}}
}

const forkPipeline = `
on: {pull_request: {}}
jobs:
  test:
    secrets: [DEPLOY_TOKEN]
    steps:
      - run: 'echo "token: ${DEPLOY_TOKEN:-absent}"' 
`

// A pull request from a fork, built with --build-forks, gets no secrets
// whatever its pipeline file names; it runs, and its log says which were
// withheld and why. Its retry neither. One from a branch of the repo
// itself gets them.
func TestServerForkPullRequestGetsNoSecrets(t *testing.T) {
	t.Parallel()
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": forkPipeline})
	s := startServer(t, t.TempDir(), "--build-forks")
	if _, errOut, code := s.cli("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := s.cliIn(s.url, secretValue, "secret", "set", "acme/web", "DEPLOY_TOKEN"); code != 0 {
		t.Fatal(errOut)
	}

	a := s.send(forkPRDelivery(t, "acme/web", 7, sha, "fork-1", "k"))
	if a.status != http.StatusCreated || len(a.body.Builds) != 1 || !a.body.Builds[0].FromFork {
		t.Fatalf("fork pull request = %d %+v, want a build from a fork", a.status, a.body)
	}
	fork := s.waitBuild(a.body.Builds[0].ID, 30*time.Second)
	wantLog := "[test] gantry: secret DEPLOY_TOKEN withheld: this build is of a pull request from a fork, whose code must not see acme/web's secrets; the job runs without them\n" +
		"[test] token: absent\n"
	if out, _, _ := s.cli("logs", fmt.Sprint(fork.ID)); fork.Status != "success" || out != wantLog {
		t.Errorf("fork build = %s, log\n%s\nwant success and\n%s", fork.Status, out, wantLog)
	}
	out, _, _ := s.cli("build", fmt.Sprint(fork.ID), "--output", "json")
	var b api.Build
	if err := json.Unmarshal([]byte(out), &b); err != nil || !b.FromFork {
		t.Errorf("gantry build --output json of the fork build: from_fork = %v (%v), want true", b.FromFork, err)
	}

	out, errOut, code := s.cli("retry", fmt.Sprint(fork.ID), "--output", "json")
	var retried api.Build
	if err := json.Unmarshal([]byte(out), &retried); code != 0 || err != nil {
		t.Fatalf("retry = %d %s %s", code, out, errOut)
	}
	if r := s.waitBuild(retried.ID, 30*time.Second); !r.FromFork {
		t.Errorf("the retry of a fork build is not from a fork")
	}
	if out, _, _ := s.cli("logs", fmt.Sprint(retried.ID)); out != wantLog {
		t.Errorf("retried fork build log\n%s\nwant\n%s", out, wantLog)
	}

	own := s.send(prDelivery(t, "acme/web", "opened", 8, "feature", sha, "own-1", "k"))
	if len(own.body.Builds) != 1 || own.body.Builds[0].FromFork {
		t.Fatalf("pull request from a branch = %+v, want a build not from a fork", own.body)
	}
	ob := s.waitBuild(own.body.Builds[0].ID, 30*time.Second)
	if out, _, _ := s.cli("logs", fmt.Sprint(ob.ID)); ob.Status != "success" || out != "[test] token: ***\n" {
		t.Errorf("own pull request build = %s, log %q, want success and the masked secret", ob.Status, out)
	}
}

// A job that names a secret that is not set fails, saying which, rather
// than run without it; the others run.
func TestServerJobFailsWithoutItsSecret(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  deploy:
    secrets: [DEPLOY_TOKEN]
    steps: ["echo deploying"]
  test:
    steps: ["echo testing"]
`})
	s := startServer(t, t.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := s.cliIn(s.url, "only-for-prod", "secret", "set", "acme/web", "DEPLOY_TOKEN", "--environment", "production"); code != 0 {
		t.Fatal(errOut)
	}
	out, _, code := s.cli("trigger", "acme/web", "--follow")
	if code != exitFailed || out != "[test] testing\n" {
		t.Errorf("trigger --follow = %d %q, want 1 and only the test job's output", code, out)
	}
	builds, _ := s.client().Builds(context.Background(), "acme/web", "", "", 0)
	out, _, _ = s.cli("build", fmt.Sprint(builds[0].ID))
	if !strings.Contains(out, "secret DEPLOY_TOKEN is not set for acme/web (DEPLOY_TOKEN is set only for environment production, and a build job receives only unscoped secrets)") {
		t.Errorf("gantry build =\n%s\nwant the deploy job's reason", out)
	}
}

// The server refuses a key file others may read, and a malformed
// GANTRY_SECRET_KEY, with a message that says what to do; it starts
// nothing.
func TestServerRefusesBadSecretKeys(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	keyFile := filepath.Join(data, "secret.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(secret.NewKey())+"\n"), 0o644)
	os.Chmod(keyFile, 0o644)
	for _, c := range []struct {
		env        []string
		code       int
		want, dont string
	}{
		{nil, exitFailed, "gantry server: secret key file " + keyFile + " may be read by other users (mode 0644): anyone who can read it can decrypt every secret; make it readable by this user only: chmod 600 " + keyFile, ""},
		{[]string{"GANTRY_SECRET_KEY=" + base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))}, exitUsage,
			"gantry server: GANTRY_SECRET_KEY: key 1 of 1: decodes to 16 bytes, want 32 (make one with: openssl rand -base64 32)", "c2l4dGVlbi"},
		{[]string{"GANTRY_SECRET_KEY=" + base64.StdEncoding.EncodeToString(secret.NewKey()) + ",not-a-key"}, exitUsage,
			"gantry server: GANTRY_SECRET_KEY: key 2 of 2: not base64", "not-a-key"},
	} {
		cmd := exec.Command("gantry", "server", "--addr", freeAddr(t), "--data", data)
		cmd.Env = append(append(os.Environ(), "GANTRY_ADMIN_TOKEN="+testToken), c.env...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("server with %v did not refuse to start", c.env)
		}
		if got := cmd.ProcessState.ExitCode(); got != c.code || !strings.Contains(errb.String(), c.want) ||
			(c.dont != "" && strings.Contains(errb.String(), c.dont)) {
			t.Errorf("server with %v = exit %d\n%s\nwant %d and %q", c.env, got, errb.String(), c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "gantry.db")); !os.IsNotExist(err) {
		t.Errorf("a refused start made a database: %v", err)
	}
}

// A remote agent gets the job's secrets in its lease over HTTP, and masks
// them like the built-in one.
func TestRemoteAgentGetsSecrets(t *testing.T) {
	t.Parallel()
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": hashPipeline + "      - run: echo \"a is $A\"\n"})
	s := startServer(t, t.TempDir(), "--agents", "0")
	if _, errOut, code := s.cli("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	for name, v := range map[string]string{"A": secretValue, "B": "b-value"} {
		if _, errOut, code := s.cliIn(s.url, v, "secret", "set", "acme/web", name); code != 0 {
			t.Fatal(errOut)
		}
	}
	s.startAgent("remote", s.agentToken("ci"), t.TempDir())
	want := fmt.Sprintf("[show] %s\n[show] %s\n[show] a is ***\n", sha(secretValue), sha("b-value"))
	if got := s.runShow(t); got != want {
		t.Errorf("remote agent's job printed\n%s\nwant\n%s", got, want)
	}
}

// Several servers over one PostgreSQL database share GANTRY_SECRET_KEY;
// rotating it: a new key first in the variable, rotate-key, then the old
// key out.
func TestServerSecretsPostgresEnvKeyRotation(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": hashPipeline})
	oldKey, newKey := base64.StdEncoding.EncodeToString(secret.NewKey()), base64.StdEncoding.EncodeToString(secret.NewKey())
	s := startServerEnv(t, t.TempDir(), []string{"GANTRY_SECRET_KEY=" + oldKey}, "--database", db)
	if _, errOut, code := s.cli("repo", "add", "acme/web", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		t.Fatal(errOut)
	}
	values := map[string]string{"A": "a-value-on-postgres", "B": secretValue}
	for name, v := range values {
		if _, errOut, code := s.cliIn(s.url, v, "secret", "set", "acme/web", name); code != 0 {
			t.Fatal(errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(s.data, "secret.key")); !os.IsNotExist(err) {
		t.Errorf("with GANTRY_SECRET_KEY set the server made a key file: %v", err)
	}
	want := fmt.Sprintf("[show] %s\n[show] %s\n", sha(values["A"]), sha(values["B"]))
	if got := s.runShow(t); got != want {
		t.Fatalf("the job printed\n%s\nwant\n%s", got, want)
	}
	// One key in the variable: the server cannot make a new one itself.
	if _, errOut, code := s.cli("secret", "rotate-key"); code != exitFailed || !strings.Contains(errOut, "GANTRY_SECRET_KEY=NEW,OLD") {
		t.Errorf("rotate-key with one environment key = %d %q, want 1 and what to do", code, errOut)
	}
	s.stop(syscall.SIGTERM)

	// A second server with NEW,OLD moves every secret to NEW.
	s2 := startServerEnv(t, t.TempDir(), []string{"GANTRY_SECRET_KEY=" + newKey + "," + oldKey}, "--database", db)
	out, errOut, code := s2.cli("secret", "rotate-key")
	oldID, newID := secret.KeyID(mustDecode(t, oldKey)), secret.KeyID(mustDecode(t, newKey))
	wantOut := fmt.Sprintf("secrets are encrypted under key %s: 2 re-encrypted\nkey %s is no longer needed: remove it from GANTRY_SECRET_KEY\n", newID, oldID)
	if code != 0 || out != wantOut {
		t.Errorf("rotate-key = %d %q %s, want %q", code, out, errOut, wantOut)
	}
	s2.stop(syscall.SIGTERM)

	// A third with NEW alone runs them.
	s3 := startServerEnv(t, t.TempDir(), []string{"GANTRY_SECRET_KEY=" + newKey}, "--database", db)
	if strings.Contains(s3.stderr.String(), "secrets are encrypted under keys this server does not have") {
		t.Errorf("the server with only the new key warns of unreadable secrets:\n%s", s3.stderr)
	}
	if got := s3.runShow(t); got != want {
		t.Errorf("after rotation the job printed\n%s\nwant\n%s", got, want)
	}
}
