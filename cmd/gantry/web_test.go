package main

// Tests of the web UI in a real browser: Debian's chromium, headless,
// driven over the DevTools protocol by chromedp, against the real `gantry
// server` binary. .ci/run installs chromium; GANTRY_CHROMIUM names another
// binary. Screenshots go to $GANTRY_TEST_ARTIFACTS, or else to
// $TMPDIR/gantry-test-artifacts; the test logs where.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gantry-ci/gantry/internal/api"
)

// chromiumPath finds the browser: GANTRY_CHROMIUM, else Debian's chromium
// on PATH. There is no skipping: a machine without it fails the test.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GANTRY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: install Debian's chromium (apt-get install chromium; .ci/run does) or set GANTRY_CHROMIUM")
	return ""
}

// newBrowser starts a headless Chromium of its own for the test and
// returns the context of its first tab. It runs without the sandbox only
// as root, where Chromium refuses to start with it.
func newBrowser(t testing.TB, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first run starts the browser; it must have no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifacts is where the test leaves its screenshots.
func artifacts(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("GANTRY_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gantry-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// page drives one browser tab, every action bounded in time.
type page struct {
	t   testing.TB
	ctx context.Context
	url string
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v (page at %s)", what, err, p.location())
	}
}

func (p *page) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

// eval evaluates a JavaScript expression; a promise is awaited.
func evalJS[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v (page at %s)", expr, err, p.location())
	}
	return v
}

// waitFor waits until a JavaScript expression is true on the page,
// looking every 20ms; a look cut short by the page navigating away is
// made again on the new page.
func (p *page) waitFor(what, expr string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	body, _ := chromedp.Run(context.WithoutCancel(p.ctx), chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`))
	p.t.Fatalf("%s: not so within %v (last error: %v); page at %s shows:\n%s", what, within, last, p.location(), body)
}

func (p *page) open(path string) { p.t.Helper(); p.do("open "+path, chromedp.Navigate(p.url+path)) }

func (p *page) count(selector string) int {
	p.t.Helper()
	return evalJS[int](p, fmt.Sprintf(`document.querySelectorAll(%q).length`, selector))
}

func (p *page) text(selector string) string {
	p.t.Helper()
	return evalJS[string](p, fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, selector))
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifacts(p.t), name)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// signIn signs in through the form with an API token; the browser is on
// the sign-in page, or is sent there.
func (p *page) signIn(token string) {
	p.t.Helper()
	p.waitFor("the sign-in page", `location.pathname === "/signin" && document.querySelector("#token") !== null`, 10*time.Second)
	p.do("type the token", chromedp.SendKeys(chromedp.ID("token"), token))
	p.clickAndLoad(`.signin button[type=submit]`)
	if loc := p.location(); strings.Contains(loc, "/signin") {
		p.t.Fatalf("still at %s after signing in", loc)
	}
}

func (p *page) signOut() {
	p.t.Helper()
	p.clickAndLoad(`.signout button`)
	p.waitFor("signed out", `location.pathname === "/signin"`, 10*time.Second)
}

// clickAndLoad clicks an element (a link or a form's button) and waits
// until the page it leads to has loaded.
func (p *page) clickAndLoad(selector string) {
	p.t.Helper()
	evalJS[bool](p, fmt.Sprintf(`(() => {
		window.beforeClick = true;
		document.querySelector(%q).click();
		return true;
	})()`, selector))
	p.waitFor("the page after clicking "+selector, `window.beforeClick === undefined && document.readyState === "complete"`, 30*time.Second)
}

// webRepo makes a repository whose main branch waits for a gate file in
// its test job, and whose branch broken fails a step in red and prints a
// long log in another job.
func webRepo(t *testing.T, gate string) string {
	t.Helper()
	dir, _ := makeRepo(t, map[string]string{".gantry.yml": `
jobs:
  lint:
    steps:
      - run: printf '\033[1;32mlint clean\033[0m\n'
  test:
    needs: [lint]
    steps:
      - name: wait for the gate
        run: echo waiting for the gate; while [ ! -e ` + gate + ` ]; do sleep 0.05; done; echo gate opened
  package:
    needs: [test]
    steps:
      - run: echo packaged
`})
	gitCmd(t, dir, "checkout", "-q", "-b", "broken")
	commit(t, dir, map[string]string{".gantry.yml": `
jobs:
  test:
    steps:
      - name: compile
        run: echo compiling
      - name: unit tests
        run: printf 'running\n\033[31mboom, 2 tests failed\033[0m\n'; exit 2
  long:
    steps:
      - run: seq 1 2500
`})
	gitCmd(t, dir, "checkout", "-q", "main")
	return dir
}

func TestWebUI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	ctx := context.Background()
	c := srv.client()
	gate := filepath.Join(t.TempDir(), "gate")
	dir := webRepo(t, gate)
	if _, err := c.AddRepo(ctx, api.NewRepo{Name: "acme/web", CloneURL: dir, WebhookSecret: "s"}); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for name, role := range map[string]string{"dev": "developer", "viewer": "viewer"} {
		u, err := c.AddUser(ctx, api.NewUser{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = u.Token.Token
		if _, err := c.Grant(ctx, api.Grant{Repo: "acme/web", User: name, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	broken, err := c.Trigger(ctx, "acme/web", api.Trigger{Branch: "broken"})
	if err != nil {
		t.Fatal(err)
	}
	if b := srv.waitBuild(broken.ID, 60*time.Second); b.Status != "failure" {
		t.Fatalf("build of broken = %s, want failure", b.Status)
	}
	running, err := c.Trigger(ctx, "acme/web", api.Trigger{Branch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, srv, running.ID, "test", "running")
	buildA := fmt.Sprintf("/builds/%d", running.ID)
	buildB := fmt.Sprintf("/builds/%d", broken.ID)

	p := &page{t: t, ctx: newBrowser(t, 1280, 900), url: srv.url}

	// A viewer: sent to sign in, then back to the page asked for. No
	// button it may not press, on a running build, a failed one and the
	// repo.
	p.open(buildA)
	p.signIn(tokens["viewer"])
	if loc := p.location(); !strings.HasSuffix(loc, buildA) {
		t.Errorf("after signing in, the viewer is at %s, want back at %s", loc, buildA)
	}
	p.waitFor("the running build", `document.querySelector("#build-status").textContent.includes("running")`, 10*time.Second)
	if n := p.count(`form[action$="/cancel"], form[action$="/retry"]`); n != 0 {
		t.Errorf("a viewer sees %d cancel or retry buttons on a running build, want none", n)
	}
	p.open(buildB)
	if n := p.count(`form[action$="/retry"]`); n != 0 {
		t.Errorf("a viewer sees %d retry buttons on a failed build, want none", n)
	}
	p.open("/repos/acme/web")
	if n := p.count(`form[action="/trigger"]`); n != 0 {
		t.Errorf("a viewer sees %d trigger forms on the repo page, want none", n)
	}
	if n := p.count(`table.builds tbody tr`); n != 2 {
		t.Errorf("the viewer's repo page lists %d builds, want 2", n)
	}
	p.signOut()

	// A developer: the dashboard shows the repo, the queue and the agents.
	p.open("/")
	p.signIn(tokens["dev"])
	p.waitFor("the dashboard", `document.querySelector("h1").textContent === "Dashboard"`, 10*time.Second)
	if got := p.text(`table.list a[href="/repos/acme/web"]`); got != "acme/web" {
		t.Errorf("the dashboard lists repo %q, want acme/web", got)
	}
	if got := p.text("#agents-h + p"); !strings.Contains(got, "1 agent") {
		t.Errorf("the dashboard says of agents %q, want 1 agent", got)
	}
	p.screenshot("dashboard.png")

	// A forged POST, without the form's token or with a wrong one, is
	// refused even from a signed-in developer's own browser, and changes
	// nothing.
	p.open(buildA)
	if n := p.count(`form[action$="/cancel"]`); n != 1 {
		t.Errorf("a developer sees %d cancel buttons on a running build, want 1", n)
	}
	for _, body := range []string{"", "csrf=forged"} {
		status := evalJS[int](p, fmt.Sprintf(`fetch(%q, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q}).then(r => r.status)`, buildA+"/cancel", body))
		if status != 403 {
			t.Errorf("POST %s/cancel with body %q = %d, want 403", buildA, body, status)
		}
	}
	if b, err := c.Build(ctx, running.ID); err != nil || b.Status != "running" {
		t.Fatalf("build after forged cancels = %+v, %v; want still running", b, err)
	}

	// The running build turns to success on the page, without a reload,
	// and its log follows.
	p.waitFor("the gate line", `document.querySelector("#log-lines").textContent.includes("waiting for the gate")`, 10*time.Second)
	evalJS[bool](p, `window.notReloaded = true`)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the build shown as success", `document.querySelector("#build-status").textContent.includes("success")`, 30*time.Second)
	if !evalJS[bool](p, `window.notReloaded === true`) {
		t.Error("the page reloaded to show the build's end; want it changed in place")
	}
	p.waitFor("the line printed after the gate", `document.querySelector("#log-lines").textContent.includes("gate opened")`, 5*time.Second)
	if got := evalJS[string](p, `[...document.querySelectorAll("svg.graph a.n")].map(n => n.dataset.job + ":" + n.dataset.status).join(" ")`); got != "lint:success test:success package:success" {
		t.Errorf("the graph shows %q, want every job success", got)
	}
	p.screenshot("build.png")

	// The failed build: its failed step, with its exit code and its red
	// output.
	p.open(buildB)
	if got := p.text(`tr.s-failure td.exit`); got != "2" {
		t.Errorf("the failed step's exit code shows %q, want 2", got)
	}
	p.clickAndLoad(`tr.s-failure td a`)
	p.waitFor("the failed step's log", `document.querySelector("#log-h").textContent.includes("unit tests")`, 10*time.Second)
	if got := p.text(`#log-lines .l .fg1`); got != "boom, 2 tests failed" {
		t.Errorf("the failed step's log shows in red %q, want the failure", got)
	}
	if got := p.text(`#log-lines`); strings.Contains(got, "compiling") {
		t.Errorf("the failed step's log shows %q, which holds the other step's output", got)
	}
	raw := evalJS[string](p, fmt.Sprintf(`fetch(%q).then(r => r.headers.get("Content-Type") + "|" + r.status).then(s => s)`, buildB+"/raw?job=test"))
	if raw != "text/plain; charset=utf-8|200" {
		t.Errorf("the raw log answers %q, want text/plain 200", raw)
	}

	// A long log opens at its end and loads earlier lines on demand.
	p.open(buildB + "?job=long")
	first := func() string { return p.text(`#log-lines .l`) }
	last := func() string {
		return evalJS[string](p, `[...document.querySelectorAll("#log-lines .l")].pop().textContent`)
	}
	if f, l := first(), last(); f != "1501" || l != "2500" {
		t.Errorf("a log of 2500 lines opens on lines %s to %s, want 1501 to 2500", f, l)
	}
	p.do("earlier lines", chromedp.Click(chromedp.CSS(`a.earlier`)))
	p.waitFor("earlier lines", `document.querySelector("#log-lines .l").textContent === "501"`, 10*time.Second)
	p.do("earlier lines", chromedp.Click(chromedp.CSS(`a.earlier`)))
	p.waitFor("the first lines", `document.querySelector("#log-lines .l").textContent === "1"`, 10*time.Second)
	if n, e := p.count(`#log-lines .l`), p.count(`a.earlier`); n != 2500 || e != 0 {
		t.Errorf("after loading every page the log shows %d lines and %d earlier links, want 2500 and none", n, e)
	}

	// Retry the failed jobs with the button: a new build.
	p.open(buildB)
	p.clickAndLoad(`form[action$="/retry"] input[name=failed] ~ button`)
	if loc := p.location(); strings.HasSuffix(loc, buildB) || !strings.Contains(loc, "/builds/") {
		t.Errorf("after Retry failed jobs the page is %s, want a new build's", loc)
	}

	// On a phone-sized screen nothing is wider than the screen.
	p.do("phone", chromedp.EmulateViewport(390, 844))
	p.open(buildA)
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the build page is %dpx wide on a 390px screen", w)
	}
	p.screenshot("build-phone.png")
}

// waitJob waits until a build's job has a status.
func waitJob(t testing.TB, srv *testServer, buildID int64, job, status string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := srv.client().Build(context.Background(), buildID)
		if err == nil {
			for _, j := range b.Jobs {
				if j.Name == job && j.Status == status {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s of build %d not %s after 60s: %+v, %v", job, buildID, status, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
