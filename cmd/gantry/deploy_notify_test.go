package main

// End to end: a deployment through the real binary produces signed
// deployment.* hook events, chat messages for the approval it waits for
// and for its end, and a GitHub deployment with its statuses, against
// receivers faked over real sockets from the documented wire formats.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gantry-ci/gantry/internal/notify"
)

// fakeGitHubDeployments speaks GitHub's REST API for commit statuses and
// deployments (POST /repos/{owner}/{repo}/statuses/{sha},
// /deployments, /deployments/{id}/statuses), refusing (400) any request
// without the documented headers; its first create answers 500.
type fakeGitHubDeployments struct {
	mu       sync.Mutex
	repo     string
	creates  []map[string]any   // accepted, in order
	statuses map[int64][]string // deployment -> states, in order
	problems []string
	nextID   int64
	failed   bool
}

func (f *fakeGitHubDeployments) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(format string, args ...any) {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
		http.Error(w, `{"message":"bad request"}`, 400)
	}
	for k, v := range map[string]string{"Authorization": "Bearer tok", "Accept": "application/vnd.github+json",
		"X-Github-Api-Version": "2022-11-28", "Content-Type": "application/json"} {
		if r.Header.Get(k) != v {
			fail("%s %s: header %s = %q, want %q", r.Method, r.URL.Path, k, r.Header.Get(k), v)
			return
		}
	}
	var m map[string]any
	if r.Method != "POST" || json.Unmarshal(body, &m) != nil {
		fail("%s %s %s", r.Method, r.URL.Path, body)
		return
	}
	base := "/repos/" + f.repo
	var id int64
	fmt.Sscanf(strings.TrimPrefix(r.URL.Path, base+"/deployments/"), "%d", &id)
	switch {
	case strings.HasPrefix(r.URL.Path, base+"/statuses/"):
		w.WriteHeader(201)
		io.WriteString(w, `{"id":1}`)
	case r.URL.Path == base+"/deployments":
		if !f.failed {
			f.failed = true
			http.Error(w, `{"message":"Server Error"}`, 500)
			return
		}
		f.nextID++
		f.creates = append(f.creates, m)
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"id":%d,"sha":%q,"environment":%q}`, 1000+f.nextID, m["ref"], m["environment"])
	case id > 1000 && id <= 1000+f.nextID && r.URL.Path == fmt.Sprintf("%s/deployments/%d/statuses", base, id):
		f.statuses[id] = append(f.statuses[id], fmt.Sprint(m["state"]))
		w.WriteHeader(201)
		io.WriteString(w, `{"id":1,"state":"`+fmt.Sprint(m["state"])+`"}`)
	default:
		fail("POST %s: no such API", r.URL.Path)
	}
}

// chatReceiver records Slack-compatible messages.
type chatReceiver struct {
	mu   sync.Mutex
	text []string
}

func (c *chatReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Text string `json:"text"`
	}
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal(body, &m); err != nil || m.Text == "" {
		http.Error(w, "invalid_payload", 400)
		return
	}
	c.text = append(c.text, m.Text)
	io.WriteString(w, "ok")
}

// deployHookReceiver checks each event's signature with the secret alone
// and records the deployment events.
type deployHookReceiver struct {
	mu       sync.Mutex
	secret   string
	events   []string
	payloads []notify.Payload
	problems []string
}

func (h *deployHookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := notify.Verify(h.secret, body, r.Header.Get("Gantry-Signature")); err != nil {
		h.problems = append(h.problems, err.Error())
		http.Error(w, "bad signature", 401)
		return
	}
	var p notify.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.Deployment == nil || p.Event != r.Header.Get("Gantry-Event") {
		h.problems = append(h.problems, fmt.Sprintf("%v: %s", err, body))
		http.Error(w, "bad payload", 400)
		return
	}
	h.events = append(h.events, p.Event+" "+p.Deployment.Environment+" "+p.Deployment.State)
	h.payloads = append(h.payloads, p)
	w.WriteHeader(204)
}

// stagingProduction is a pipeline that deploys every green build of main
// to staging, and promotes from there to production, whose definition
// gets the line extra.
func stagingProduction(extra string) string {
	return `
jobs:
  build:
    steps: ["echo built"]
environments:
  staging:
    deploy: {branch: main}
    url: https://staging.example.com
    steps: ["echo deployed to staging"]
  production:
    promote-from: staging
    steps: ["echo deployed to production"]
    ` + extra + "\n"
}

func TestServerDeploymentNotifications(t *testing.T) {
	t.Parallel()
	pipeline := stagingProduction("approvals: {required: 1}")
	repoDir, sha := makeRepo(t, map[string]string{".gantry.yml": pipeline})
	gh := &fakeGitHubDeployments{repo: "acme/app", statuses: map[int64][]string{}}
	ghSrv := httptest.NewServer(gh)
	t.Cleanup(ghSrv.Close)
	hooks := &deployHookReceiver{secret: "a-hook-secret-0123456789"}
	hookSrv := httptest.NewServer(hooks)
	t.Cleanup(hookSrv.Close)
	chat := &chatReceiver{}
	chatSrv := httptest.NewServer(chat)
	t.Cleanup(chatSrv.Close)

	s := startServer(t, t.TempDir(), "--public-url", "http://ci.example.com/", "--delivery-backoff", "100ms")
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k", "--forge", "github", "--api-url", ghSrv.URL)
	setForgeToken(t, s, "acme/app")
	if out, errOut, code := s.cliIn(s.url, hooks.secret+"\n", "hook", "add", hookSrv.URL+"/events", "--events", "deployment.*", "--secret-stdin"); code != 0 {
		t.Fatalf("hook add = %d %q %q", code, out, errOut)
	}
	admin("hook", "add", chatSrv.URL+"/services/T0/B0/XXXX", "--format", "slack", "--repo", "acme/app", "--branch", "main",
		"--environment", "prod*", "--events", "deployment.approval_required,deployment.finished")
	if out := admin("hook", "list"); !strings.Contains(out, "ENVIRONMENT") || !strings.Contains(out, "prod*") {
		t.Errorf("gantry hook list does not show the environment filter:\n%s", out)
	}
	bob := tokenIn(t, admin("user", "add", "bob"))
	admin("role", "grant", "acme/app", "developer", "--user", "bob")

	b, v1 := pushLive(t, s, sha, "d1")
	if out, errOut, code := s.cli("promote", "acme/app", "--from", "staging", "--to", "production"); code != 0 || !strings.Contains(out, "waiting for approval") {
		t.Fatalf("promote = %d %q %q", code, out, errOut)
	}
	envsURL := "http://ci.example.com/repos/acme/app/environments"
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nserver log:\n%s", what, s.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the chat message of the approval", func() bool {
		chat.mu.Lock()
		defer chat.mu.Unlock()
		return len(chat.text) > 0 && strings.Contains(chat.text[len(chat.text)-1], "waits for approval")
	})
	ds := cliJSON[[]struct{ ID int64 }](t, s, "deployments", "acme/app", "--env", "production")
	if _, errOut, code := s.cli("approve", fmt.Sprint(ds[0].ID), "--token", bob); code != 0 {
		t.Fatalf("approve as bob = %d %q", code, errOut)
	}
	waitLive(t, s, "acme/app", "production", v1)

	want := []string{
		"deployment.created staging pending", "deployment.started staging running", "deployment.finished staging succeeded",
		"deployment.created production pending", "deployment.approval_required production pending",
		"deployment.started production running", "deployment.finished production succeeded",
	}
	waitFor("every deployment event", func() bool {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		return len(hooks.events) >= len(want)
	})
	waitFor("the chat message of the end", func() bool {
		chat.mu.Lock()
		defer chat.mu.Unlock()
		return len(chat.text) == 2
	})
	waitFor("the GitHub deployment statuses", func() bool {
		gh.mu.Lock()
		defer gh.mu.Unlock()
		return len(gh.statuses[1001]) > 0 && len(gh.statuses[1002]) > 0 &&
			gh.statuses[1001][len(gh.statuses[1001])-1] == "success" && gh.statuses[1002][len(gh.statuses[1002])-1] == "success"
	})

	hooks.mu.Lock()
	if len(hooks.problems) > 0 {
		t.Errorf("the hook receiver refused deliveries: %v", hooks.problems)
	}
	if diff := cmp.Diff(want, hooks.events, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("deployment events (-want +got):\n%s", diff)
	}
	for _, p := range hooks.payloads {
		d := p.Deployment
		if p.Repo.Name != "acme/app" || d.Release.Version != v1 || d.Release.Commit != sha || d.Release.Build.ID != b.ID ||
			d.Release.Build.URL != fmt.Sprintf("http://ci.example.com/builds/%d", b.ID) || d.URL != envsURL {
			t.Errorf("payload of %s: %+v", p.Event, d)
		}
		if p.Event == "deployment.finished" && d.Environment == "production" &&
			(d.RequestedBy != "admin" || d.Kind != "promote" || len(d.Approvals) != 1 || d.Approvals[0].User != "bob" || d.Build == nil) {
			t.Errorf("production's deployment.finished: %+v, want promoted by admin, approved by bob, with its build", d)
		}
	}
	hooks.mu.Unlock()

	chat.mu.Lock()
	// Only production's: the chat hook filters on prod*.
	wantChat := []string{
		":raised_hand: <" + envsURL + "|acme/app " + v1 + "> to `production` waits for approval (0 of 1): <" + envsURL + "|approve or reject it>",
		":white_check_mark: <http://ci.example.com/builds/",
	}
	for i, text := range chat.text {
		if i < len(wantChat) && !strings.HasPrefix(text, wantChat[i]) {
			t.Errorf("chat message %d = %q, want it to start %q", i, text, wantChat[i])
		}
	}
	if len(chat.text) != 2 || !strings.Contains(chat.text[1], "is live in `production`") {
		t.Errorf("chat messages of the ends = %q", chat.text)
	}
	chat.mu.Unlock()

	gh.mu.Lock()
	defer gh.mu.Unlock()
	if len(gh.problems) > 0 {
		t.Errorf("the GitHub fake refused requests: %v", gh.problems)
	}
	if len(gh.creates) != 2 {
		t.Fatalf("GitHub deployments made = %d (%v), want 2: staging, production", len(gh.creates), gh.creates)
	}
	for i, env := range []string{"staging", "production"} {
		c := gh.creates[i]
		if c["ref"] != sha || c["environment"] != env || c["auto_merge"] != false || fmt.Sprint(c["required_contexts"]) != "[]" {
			t.Errorf("GitHub deployment %d = %v, want ref %s to %s, auto_merge false, required_contexts []", i, c, sha, env)
		}
	}
	out := admin("deliveries", "--repo", "acme/app", "--kind", "deployment")
	if !strings.Contains(out, "deployment/production:success") || !strings.Contains(out, "delivered") {
		t.Errorf("gantry deliveries --kind deployment printed:\n%s", out)
	}
}

// TestServerIssueReleases: a release records the issue keys of its
// commits since the previous release of its branch; gantry release lists
// them, and gantry issue says which releases ship a key and which
// environments run it now.
func TestServerIssueReleases(t *testing.T) {
	t.Parallel()
	pipeline := stagingProduction("")
	repoDir, _ := makeRepo(t, map[string]string{".gantry.yml": pipeline})
	say := func(msg string) string {
		gitCmd(t, repoDir, "commit", "-q", "--allow-empty", "-m", msg)
		return gitCmd(t, repoDir, "rev-parse", "HEAD")
	}
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")
	push := func(sha, id string) string {
		t.Helper()
		b := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", sha, id, "k")).body.Builds[0].ID, 60*time.Second)
		if b.Status != "success" {
			t.Fatalf("build = %s, want success", b.Status)
		}
		v := fmt.Sprintf("main-%d", b.Number)
		waitLive(t, s, "acme/app", "staging", v)
		return v
	}
	v1 := push(say("OPS-1: the first feature"), "d1")
	admin("promote", "acme/app", "--from", "staging", "--to", "production", "--wait")
	say("OPS-2: fix the frobnicator\n\nCloses #12.")
	v2 := push(say("Refactor, no issue"), "d2")

	if out := admin("release", "acme/app", v2); !strings.Contains(out, "  issues: #12, OPS-2\n") {
		t.Errorf("gantry release %s does not list its issues:\n%s", v2, out)
	}
	if out := admin("release", "acme/app", v1); !strings.Contains(out, "  issues: OPS-1\n") {
		t.Errorf("gantry release %s does not list its issue:\n%s", v1, out)
	}
	type answer struct {
		Key      string `json:"key"`
		Releases []struct {
			Version string   `json:"version"`
			Issues  []string `json:"issues"`
		} `json:"releases"`
		Running []struct {
			Environment string `json:"environment"`
			Release     string `json:"release"`
		} `json:"running"`
	}
	ask := func(key string) string {
		t.Helper()
		a := cliJSON[answer](t, s, "issue", key)
		var rels, running []string
		for _, r := range a.Releases {
			rels = append(rels, r.Version)
		}
		for _, r := range a.Running {
			running = append(running, r.Environment+"="+r.Release)
		}
		return fmt.Sprintf("releases %v running %v", rels, running)
	}
	// OPS-1 came with v1: production runs v1, staging v2, which carries it.
	if got, want := ask("OPS-1"), fmt.Sprintf("releases [%s] running [staging=%s production=%s]", v1, v2, v1); got != want {
		t.Errorf("gantry issue OPS-1 = %s, want %s", got, want)
	}
	// OPS-2 came with v2: only staging runs it.
	if got, want := ask("OPS-2"), fmt.Sprintf("releases [%s] running [staging=%s]", v2, v2); got != want {
		t.Errorf("gantry issue OPS-2 = %s, want %s", got, want)
	}
	out := admin("issue", "#12")
	if !strings.Contains(out, "REPO      RELEASE") || !strings.Contains(out, v2) || !strings.Contains(out, "ENVIRONMENT") ||
		!strings.Contains(out, "staging") || strings.Contains(out, "production") {
		t.Errorf("gantry issue #12 printed:\n%s", out)
	}
}
