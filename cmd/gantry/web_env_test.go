package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gantry-ci/gantry/internal/api"
)

// envPipeline: staging by itself from main; production promoted from
// staging after one releaser approved, its deployment waiting for a gate
// file so that the test sees it run, then succeed; frozen is in a freeze
// window that is always open.
func envPipeline(gate string) string {
	return fmt.Sprintf(`
jobs:
  build:
    steps: ["echo built"]
environments:
  staging:
    deploy: {branch: main}
    steps: ["echo deployed to staging"]
  production:
    promote-from: staging
    approvals: {required: 1, groups: [releasers]}
    steps:
      - run: echo deploying to production; while [ ! -e %q ]; do sleep 0.05; done; echo production done
  frozen:
    freeze:
      - {cron: "* * * * *", duration: 2m, reason: the big migration}
    steps: ["echo deployed to frozen"]
`, gate)
}

// postForm submits a form the test builds in the page, with the session's
// own form token (taken from the sign-out form) unless csrf is false, and
// waits for the answer to load: what a person who crafted the request in
// their own signed-in browser would get.
func (p *page) postForm(action string, fields map[string]string) {
	p.t.Helper()
	var b strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&b, "add(%q, %q);", k, v)
	}
	evalJS[bool](p, fmt.Sprintf(`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = %q;
		const add = (k, v) => { const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); };
		add("csrf", document.querySelector(".signout input[name=csrf]").value);
		%s
		document.body.appendChild(f);
		window.beforeClick = true;
		f.submit();
		return true;
	})()`, action, b.String()))
	p.waitFor("the answer to POST "+action, `window.beforeClick === undefined && document.readyState === "complete"`, 30*time.Second)
}

// TestWebEnvironments: the environments page in a real browser against the
// real binary. A push deploys to staging by itself; a developer promotes
// to production through the page's confirmation; it waits for a releaser;
// a viewer sees no button, the commit's author is refused and told why, a
// rejection without a comment is refused, a forged POST is refused; a
// releaser approves by clicking and watches it run and succeed without a
// reload.
func TestWebEnvironments(t *testing.T) {
	t.Parallel()
	gate := filepath.Join(t.TempDir(), "gate")
	repoDir, first := makeRepo(t, map[string]string{".gantry.yml": envPipeline(gate)})
	s := startServer(t, t.TempDir())
	admin := func(args ...string) string { t.Helper(); return mustCLI(t, s, args...) }
	admin("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k")
	tok := map[string]string{}
	// test is the author of the commit (makeRepo's "Test <test@example.com>"); dora asks for the promotion: neither may approve it.
	for u, role := range map[string]string{"dora": "developer", "bob": "developer", "test": "developer", "vic": "viewer"} {
		tok[u] = tokenIn(t, admin("user", "add", u))
		admin("role", "grant", "acme/app", role, "--user", u)
	}
	admin("group", "add", "releasers", "bob", "test", "dora")

	_, v1 := pushLive(t, s, first, "d1")

	p := &page{t: t, ctx: newBrowser(t, 1280, 900), url: s.url}
	envs := "/environments/acme/app"

	// dora, a developer, promotes through the confirmation step; it waits
	// for a releaser, and she, who asked, may not approve it.
	p.open(envs)
	p.signIn(tok["dora"])
	p.waitFor("staging runs "+v1, fmt.Sprintf(`document.querySelector("#staging .current").textContent.includes(%q)`, v1), 10*time.Second)
	if got := p.text(`nav a[aria-current]`); got != "Environments" {
		t.Errorf("the navigation marks %q as current, want Environments", got)
	}
	// The freeze is shown to all, and why nothing can be asked of frozen
	// to those who could otherwise.
	if got := p.text(`#frozen .frozen`); !strings.Contains(got, "Frozen until") || !strings.Contains(got, "the big migration") {
		t.Errorf("frozen's panel says %q, want frozen until …: the big migration", got)
	}
	if got := p.text(`#frozen .no-request`); !strings.Contains(got, "frozen is frozen until") {
		t.Errorf("dora is told of frozen %q, want why she may not deploy there", got)
	}
	p.clickAndLoad(`#production a.promote`)
	if got := p.text(`#confirm-h`); got != "Promote "+v1+" from staging to production?" {
		t.Errorf("the confirmation asks %q", got)
	}
	if ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production"); len(ds) != 0 {
		t.Fatalf("deployments to production before confirming = %+v, want none", ds)
	}
	p.clickAndLoad(`#confirm button[type=submit]`)
	ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")
	if len(ds) != 1 || ds[0].State != "waiting for approval" || ds[0].RequestedBy != "dora" || ds[0].Kind != "promote" {
		t.Fatalf("deployments to production after confirming = %+v, want one promotion by dora waiting for approval", ds)
	}
	id := ds[0].ID
	li := fmt.Sprintf("#deployment-%d", id)
	if got := p.text(li + " .why"); !strings.Contains(got, "waiting for approval: 0 of 1 from releasers") || !strings.Contains(got, "approvals 0/1") {
		t.Errorf("the waiting deployment says %q, want waiting for approval, 0/1", got)
	}
	if n := p.count(li + " form.decide"); n != 0 {
		t.Errorf("dora, who asked for it, sees %d approval forms, want none", n)
	}
	if n := p.count(`#production a.promote`); n != 0 {
		t.Errorf("dora is offered to promote %s again while it waits", v1)
	}
	if got := p.text(`table.matrix tbody tr td:nth-child(3) .chip`); got != "waiting for approval" {
		t.Errorf("the matrix shows %s in production as %q, want waiting for approval", v1, got)
	}
	if got := p.text(li + " .no-decide"); !strings.Contains(got, fmt.Sprintf("dora requested deployment %d", id)) {
		t.Errorf("dora is told %q, want why she may not approve", got)
	}
	p.signOut()

	// A viewer sees what waits, and no button at all.
	p.open(envs)
	p.signIn(tok["vic"])
	p.waitFor("the waiting deployment", fmt.Sprintf(`document.querySelector(%q) !== null`, li), 10*time.Second)
	if n := p.count(`form.decide, button.approve, a.promote, a.rollback, #main form`); n != 0 {
		t.Errorf("a viewer sees %d buttons or forms on the environments page, want none", n)
	}
	if n := p.count(`.no-decide, .no-request`); n != 0 {
		t.Errorf("a viewer is told %d times why not, of buttons it was never offered", n)
	}
	if got := p.text(`#frozen .frozen`); !strings.Contains(got, "the big migration") {
		t.Errorf("a viewer is shown of frozen %q, want the freeze", got)
	}
	// Posting the promotion's form anyway, with its own form token, is
	// refused with the role it lacks, on the page.
	p.postForm("/promote", map[string]string{"repo": "acme/app", "from": "staging", "to": "production", "release": v1})
	if got := p.text(`#refusal`); got != "vic may not do this: it needs role developer on acme/app, and vic has viewer" {
		t.Errorf("a viewer's promotion is refused with %q", got)
	}
	// The index of environments: the repo, and what runs where.
	p.open("/environments")
	if got := p.text(`table.list tbody tr`); !strings.Contains(got, "acme/app") || !strings.Contains(got, "staging: "+v1) ||
		!strings.Contains(got, "production: nothing · 1 waiting") {
		t.Errorf("the environments index says %q, want acme/app with staging on %s and production waiting", got, v1)
	}
	p.signOut()

	// The commit's author is a releaser, but may not approve: no button,
	// and trying anyway (a form crafted in the page, with the right form
	// token) is refused with the reason shown on the page.
	p.open(envs)
	p.signIn(tok["test"])
	if n := p.count(li + " form.decide"); n != 0 {
		t.Errorf("the author sees %d approval forms, want none", n)
	}
	authored := "test authored a commit of release " + v1 + " (Test <test@example.com>), and production does not let its authors approve it"
	p.postForm(fmt.Sprintf("/deployments/%d/approve", id), map[string]string{"comment": "lgtm"})
	if got := p.text(`#refusal`); !strings.Contains(got, authored) {
		t.Errorf("the author trying to approve is shown %q, want %q", got, authored)
	}
	if got := p.text(`h1`); got != "Environments of acme/app" {
		t.Errorf("the refusal is shown on a page titled %q, want the environments page", got)
	}
	// A forged POST, without the form token or with a wrong one.
	for _, body := range []string{"comment=x", "csrf=forged"} {
		status := evalJS[int](p, fmt.Sprintf(`fetch("/deployments/%d/approve", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q}).then(r => r.status)`, id, body))
		if status != 403 {
			t.Errorf("POST /deployments/%d/approve with body %q = %d, want 403", id, body, status)
		}
	}
	if ds := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production"); ds[0].State != "waiting for approval" || len(ds[0].Approvals.ApprovedBy) != 0 {
		t.Fatalf("deployment after refused approvals = %+v, want still waiting, approved by nobody", ds[0])
	}
	p.signOut()

	// bob, a releaser: a rejection without a comment is refused and says
	// why; then he approves by clicking, and the page follows the
	// deployment to its end without reloading.
	p.open(envs)
	p.signIn(tok["bob"])
	p.clickAndLoad(li + " button.reject")
	if got := p.text(`#refusal`); !strings.Contains(got, "a rejection needs a comment") {
		t.Errorf("a rejection without a comment shows %q, want it refused saying a comment is needed", got)
	}
	p.open(envs)
	p.screenshot("environments-waiting.png")
	p.do("type a comment", chromedp.SendKeys(chromedp.ID(fmt.Sprintf("comment-%d", id)), "checked the changelog"))
	p.clickAndLoad(li + " button.approve")
	if loc := p.location(); !strings.HasSuffix(loc, envs+"#production") {
		t.Errorf("after approving the browser is at %s, want back on the environments page", loc)
	}
	evalJS[bool](p, `window.notReloaded = true`)
	p.waitFor("production deploying", fmt.Sprintf(`(document.querySelector("#production .active") || {textContent: ""}).textContent.includes(%q)`, v1), 30*time.Second)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitFor("production running "+v1, fmt.Sprintf(`document.querySelector("#production .current").textContent.includes(%q) && !document.querySelector("#production .active")`, v1), 60*time.Second)
	if !evalJS[bool](p, `window.notReloaded === true`) {
		t.Error("the page reloaded to show the deployment's end; want it changed in place")
	}
	if got := p.text(fmt.Sprintf("#history-%d", id)); !strings.Contains(got, "succeeded") || !strings.Contains(got, "1/1 bob") || !strings.Contains(got, "by dora") {
		t.Errorf("the history row of the deployment says %q, want succeeded, approved 1/1 by bob, asked by dora", got)
	}
	if got := p.text(`table.matrix tbody tr td.live`); !strings.Contains(got, "live") || !strings.Contains(got, "succeeded") {
		t.Errorf("the matrix marks %q live, want %s live and succeeded", got, v1)
	}
	if got := evalJS[int](p, `document.querySelectorAll("table.matrix tbody tr td.live").length`); got != 2 {
		t.Errorf("the matrix has %d live cells, want 2: %s in staging and in production", got, v1)
	}
	if n := p.count(`#production a.promote`); n != 0 {
		t.Errorf("bob is offered to promote %s to production, where it runs already", v1)
	}
	// The deployment's build log is a click away.
	href := evalJS[string](p, `document.querySelector("#production .current a").getAttribute("href")`)
	if d := cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")[0]; href != fmt.Sprintf("/builds/%d", d.BuildID) || d.State != "succeeded" {
		t.Errorf("production's log link is %q for %+v, want its build's page", href, d)
	}
	p.screenshot("environments.png")

	// Every act is in the audit log as the API records it; the refused
	// ones are not.
	acts := map[string]string{}
	for _, e := range cliJSON[[]api.AuditEntry](t, s, "audit", "--limit", "1000") {
		if strings.HasPrefix(e.Action, "deployment.") && e.Object == fmt.Sprintf("deployment:%d", id) {
			acts[e.Action] = e.Actor + " " + e.Detail["comment"]
		}
	}
	if acts["deployment.promote"] != "dora " || acts["deployment.approve"] != "bob checked the changelog" || acts["deployment.reject"] != "" {
		t.Errorf("the audit log of deployment %d has %q, want dora's promotion and bob's approval with his comment, and no rejection", id, acts)
	}

	// A second release goes to staging by itself; bob rolls staging back
	// to the first through the confirmation step.
	second := commit(t, repoDir, map[string]string{"NEWS": "second\n"})
	b2 := s.waitBuild(s.send(pushDelivery(t, "github", "acme/app", "main", second, "d2", "k")).body.Builds[0].ID, 60*time.Second)
	v2 := fmt.Sprintf("main-%d", b2.Number)
	waitLive(t, s, "acme/app", "staging", v2)
	p.open(envs)
	p.clickAndLoad(`#staging a.rollback`)
	if got := p.text(`#confirm-h`); got != "Roll staging back to "+v1+"?" {
		t.Errorf("the rollback's confirmation asks %q", got)
	}
	// From the keyboard: the confirmation's button has the focus, and
	// keeps it as the page follows the deployments live.
	p.waitFor("the focus on the confirmation's button", `document.activeElement && document.activeElement.id === "confirm-go"`, 10*time.Second)
	evalJS[bool](p, `window.beforeClick = true`)
	p.do("press Enter", chromedp.KeyEvent("\r"))
	p.waitFor("the page after pressing Enter", `window.beforeClick === undefined && document.readyState === "complete"`, 30*time.Second)
	if st := waitLive(t, s, "acme/app", "staging", v1); st.Current.Kind != "rollback" || st.Current.RequestedBy != "bob" {
		t.Errorf("staging after the rollback = %+v, want %s by bob's rollback", st.Current, v1)
	}
	p.waitFor("staging back on "+v1, fmt.Sprintf(`document.querySelector("#staging .current").textContent.includes(%q)`, v1), 30*time.Second)

	// dora asks for the second release in production; bob withdraws it
	// from the page, saying why.
	out, errOut, code := s.cli("promote", "acme/app", "--from", "staging", "--to", "production", "--release", v2, "--token", tok["dora"], "--output", "json")
	var wd api.Deployment
	if err := json.Unmarshal([]byte(out), &wd); code != 0 || err != nil {
		t.Fatalf("promote %s as dora = %d %q %q", v2, code, out, errOut)
	}
	// A click that lands as the live page swaps its content in is lost
	// (the page reads itself again when a build changes): try again then,
	// but a refusal fails at once.
	for attempt := 1; ; attempt++ {
		p.open(envs)
		p.do("type a reason", chromedp.SendKeys(chromedp.ID(fmt.Sprintf("withdraw-reason-%d", wd.ID)), "not this week"))
		p.clickAndLoad(fmt.Sprintf("#withdraw-%d", wd.ID))
		if p.count("#refusal") != 0 {
			t.Fatalf("withdrawing deployment %d was refused: %q", wd.ID, p.text("#refusal"))
		}
		ds = cliJSON[[]api.Deployment](t, s, "deployments", "acme/app", "--env", "production")
		if ds[0].ID != wd.ID || ds[0].State != "waiting for approval" || attempt == 3 {
			break
		}
		t.Logf("attempt %d: deployment %d still waits after the click; the page is at %s", attempt, wd.ID, p.location())
	}
	if ds[0].ID != wd.ID || ds[0].State != "cancelled" || ds[0].Reason != "withdrawn by bob: not this week" {
		t.Errorf("production's newest deployment after the withdrawal = %+v, want %d cancelled, withdrawn by bob; the page says %q at %s",
			ds[0], wd.ID, p.text("main"), p.location())
	}
	if n := p.count(fmt.Sprintf("#deployment-%d", wd.ID)); n != 0 {
		t.Errorf("the withdrawn deployment is still shown waiting")
	}

	// On a phone-sized screen nothing is wider than the screen.
	p.do("phone", chromedp.EmulateViewport(390, 844))
	p.open(envs)
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the environments page is %dpx wide on a 390px screen", w)
	}
	p.screenshot("environments-phone.png")
}
