package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
)

// TestDeploymentStatus: a deployment reports under a context of its own,
// gantry/deploy/ENV, never under the build's: a failed deployment does not
// turn the commit's build red.
func TestDeploymentStatus(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(int, *request) (int, http.Header, string) {
		return 201, http.Header{"Content-Type": {"application/json"}}, `{"id":1}`
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	n := start(t, st, notify.Options{})
	b := &store.Build{RepoID: r.ID, Repo: r.Name, Status: store.StatusQueued, Event: "deploy", Branch: "main", Commit: sha,
		Environment: "staging", Release: "main-7", Pipeline: []byte("jobs: {}"),
		Jobs: []*store.Job{{Name: "deploy:staging", Status: store.StatusQueued, ExitCode: -1}}}
	if err := st.CreateBuild(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	n.Changed(b)
	n.Changed(set(b, store.StatusFailure, store.StatusFailure))
	// The queued status may be superseded by the final one before it is sent.
	waitFor(t, 30*time.Second, "the statuses", func() bool {
		return allFinal(t, st)() && len(deliveries(t, st, store.DeliveryFilter{})) == 2
	})
	got := lastByContext(t, f.requests(), "context")
	if len(got) != 1 || got["gantry/deploy/staging"]["state"] != "failure" ||
		got["gantry/deploy/staging"]["description"] != "Deployment of main-7 to staging failed" {
		t.Errorf("statuses by context = %v, want only gantry/deploy/staging, failed", got)
	}
}

// deployment stores a release of a green build of r on branch, with one
// pending deployment of it to env, as the delivery service would.
func newDeployment(t *testing.T, st store.Store, r *store.Repo, branch, env, by string) (*store.Release, *store.Deployment) {
	t.Helper()
	b := newBuild(t, st, r, branch)
	b.Pipeline = []byte("jobs: {t: {steps: [x]}}\nenvironments:\n  " + env + ":\n    url: https://" + env + ".example.com\n    steps: [./deploy]\n")
	if err := st.Update(t.Context(), b.ID, func(sb *store.Build) error {
		sb.Pipeline, sb.Status = b.Pipeline, store.StatusSuccess
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := &store.Deployment{Environment: env, Kind: "deploy", RequestedBy: by, State: store.DeployPending}
	rel := &store.Release{RepoID: r.ID, Version: fmt.Sprintf("%s-%d", branch, b.Number), BuildID: b.ID, Commit: sha, Branch: branch,
		Authors: []string{"Ann <ann@example.com>"}, Issues: []string{"OPS-7"}}
	if err := st.CreateRelease(t.Context(), rel, []string{env}, []*store.Deployment{d}); err != nil {
		t.Fatal(err)
	}
	d.RequestedBy = by
	return rel, d
}

// moved returns a copy of d as it is after a change, told as what.
func moved(d *store.Deployment, what, state string, buildID int64, reason string) delivery.Change {
	c := *d
	c.State, c.Reason = state, reason
	if buildID != 0 {
		c.BuildID, c.StartedAt = buildID, time.Now()
	}
	if store.DeployFinished(state) {
		c.FinishedAt = time.Now()
	}
	return delivery.Change{What: what, Deployment: c}
}

// TestGitHubDeployment: a deployment of a GitHub repo makes one GitHub
// deployment of the release's commit and posts its statuses as it moves,
// at the documented paths with the documented headers; the create is
// retried on a 5xx and survives a restart of the server, a status waits
// out a rate limit, and every status names the deployment made first.
func TestGitHubDeployment(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	down := true     // the create answers 502 until the "restart"
	limited := false // the first in_progress status met the rate limit
	f := newFake(t, func(n int, r *request) (int, http.Header, string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Path == "/repos/acme/app/deployments" && down:
			return 502, nil, "bad gateway"
		case r.Path == "/repos/acme/app/deployments":
			return 201, http.Header{"Content-Type": {"application/json"}}, `{"id":4242,"sha":"` + sha + `","ref":"` + sha + `","task":"deploy","environment":"production"}`
		case r.Path == "/repos/acme/app/deployments/4242/statuses" && strings.Contains(string(r.Body), `"in_progress"`) && !limited:
			// GitHub's secondary rate limit, as documented: 403 with
			// retry-after.
			limited = true
			return 403, http.Header{"Retry-After": {"1"}}, `{"message":"You have exceeded a secondary rate limit."}`
		}
		return 201, http.Header{"Content-Type": {"application/json"}}, `{"id":1,"state":"queued"}`
	})
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "github", f.URL)
	rel, d := newDeployment(t, st, r, "main", "production", "ann")
	n1 := start(t, st, notify.Options{Name: "one"})
	n1.DeploymentChanged(moved(d, delivery.ChangeRequested, store.DeployPending, 0, ""))
	waitFor(t, 30*time.Second, "a failed attempt to create the deployment", func() bool {
		ds := deliveries(t, st, store.DeliveryFilter{Kind: store.DeliveryDeployment})
		return len(ds) == 1 && ds[0].Attempts >= 1 && ds[0].State == store.DeliveryPending
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	n1.Stop(ctx)
	cancel()
	if ds := deliveries(t, st, store.DeliveryFilter{Kind: store.DeliveryDeployment}); ds[0].LastStatus != 502 ||
		!strings.Contains(ds[0].LastError, "create the GitHub deployment: 502") {
		t.Errorf("delivery after a 502 = status %d, %q; want 502, saying the create failed", ds[0].LastStatus, ds[0].LastError)
	}

	mu.Lock()
	down = false
	mu.Unlock()
	n2 := start(t, st, notify.Options{Name: "two"})
	waitFor(t, 30*time.Second, "the queued status, after the restart", func() bool { return allFinal(t, st)() })
	n2.DeploymentChanged(moved(d, delivery.ChangeStarted, store.DeployRunning, 77, ""))
	waitFor(t, 30*time.Second, "the in_progress status, past the rate limit", func() bool {
		return finalN(t, st, store.DeliveryDeployment, 2)
	})

	n2.DeploymentChanged(moved(d, delivery.ChangeSucceeded, store.DeploySucceeded, 77, ""))
	waitFor(t, 30*time.Second, "the success status", func() bool {
		return finalN(t, st, store.DeliveryDeployment, 3)
	})

	var creates, states []string
	for _, q := range f.requests() {
		for k, v := range map[string]string{"Authorization": "Bearer tok", "Accept": "application/vnd.github+json",
			"X-Github-Api-Version": "2022-11-28", "Content-Type": "application/json"} {
			if q.Header.Get(k) != v {
				t.Errorf("%s %s: %s = %q, want %q", q.Method, q.Path, k, q.Header.Get(k), v)
			}
		}
		var body map[string]any
		if err := json.Unmarshal(q.Body, &body); err != nil {
			t.Fatalf("body %s: %v", q.Body, err)
		}
		switch q.Path {
		case "/repos/acme/app/deployments":
			creates = append(creates, string(q.Body))
			want := map[string]any{"ref": sha, "task": "deploy", "auto_merge": false, "required_contexts": []any{},
				"environment": "production", "description": rel.Version + " to production by Gantry"}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("create body (-want +got):\n%s", diff)
			}
		case "/repos/acme/app/deployments/4242/statuses":
			states = append(states, fmt.Sprintf("%s %s %s %s", body["state"], body["log_url"], body["environment_url"], body["description"]))
		default:
			t.Errorf("request to %s", q.Path)
		}
	}
	if len(creates) < 2 {
		t.Errorf("creates = %d, want at least 2: refused with 502 before the restart, made after", len(creates))
	}

	envs := "http://ci.example.com/repos/acme/app/environments"
	want := []string{
		"queued " + envs + " https://production.example.com " + rel.Version + " to production, requested by ann",
		"in_progress http://ci.example.com/builds/77 https://production.example.com " + rel.Version + " to production is deploying",
		"in_progress http://ci.example.com/builds/77 https://production.example.com " + rel.Version + " to production is deploying",
		"success http://ci.example.com/builds/77 https://production.example.com " + rel.Version + " to production succeeded",
	}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("statuses posted (-want +got):\n%s", diff)
	}
	if id, err := st.ForgeDeployment(t.Context(), d.ID); err != nil || id != 4242 {
		t.Errorf("ForgeDeployment() = %d, %v; want 4242 remembered", id, err)
	}
}

// finalN reports whether there are n deliveries of kind, all final, read
// at once.
func finalN(t *testing.T, st store.Store, kind string, n int) bool {
	ds := deliveries(t, st, store.DeliveryFilter{Kind: kind})
	for _, d := range ds {
		if !store.DeliveryFinal(d.State) {
			return false
		}
	}
	return len(ds) == n
}

// TestDeploymentHooks: a hook subscribed to deployment.* gets each
// deployment event once, signed, with the documented payload; a chat hook
// gets a message for the approval it waits for, linking to the
// environments page, and for its end, with the reason it failed; a hook
// of another branch gets nothing.
func TestDeploymentHooks(t *testing.T) {
	t.Parallel()
	const secret = "the-hook-secret"
	f := newFake(t, func(int, *request) (int, http.Header, string) { return 204, nil, "" })
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "gitea", f.URL) // no deployments API: hooks only
	all := &store.Hook{URL: f.URL + "/all", Secret: secret, Events: []string{"deployment.*"}, Format: store.HookJSON}
	chat := &store.Hook{URL: f.URL + "/services/T0/B0/X", Secret: secret, Events: []string{"deployment.approval_required", "deployment.finished"},
		RepoID: r.ID, Branch: "main", Format: store.HookSlack}
	other := &store.Hook{URL: f.URL + "/other", Secret: secret, Events: []string{"*"}, Branch: "release/*", Format: store.HookJSON}
	prod := &store.Hook{URL: f.URL + "/prod", Secret: secret, Events: []string{"deployment.finished"}, Environment: "prod*", Format: store.HookJSON}
	staging := &store.Hook{URL: f.URL + "/staging", Secret: secret, Events: []string{"*"}, Environment: "staging", Format: store.HookJSON}
	for _, h := range []*store.Hook{all, chat, other, prod, staging} {
		if err := st.CreateHook(t.Context(), h); err != nil {
			t.Fatal(err)
		}
	}
	rel, d := newDeployment(t, st, r, "main", "production", "ann")
	if err := st.AddDecision(t.Context(), &store.Decision{DeploymentID: d.ID, User: "bob", Verdict: store.VerdictApprove, Comment: "ok"}); err != nil {
		t.Fatal(err)
	}
	n := start(t, st, notify.Options{})
	waiting := moved(d, delivery.ChangeApprovalRequired, store.DeployPending, 0, "")
	waiting.Detail = "waiting for approval: 0 of 1 from releasers"
	for _, c := range []delivery.Change{
		moved(d, delivery.ChangeRequested, store.DeployPending, 0, ""),
		waiting,
		moved(d, delivery.ChangeApproved, store.DeployPending, 0, ""),
		moved(d, delivery.ChangeStarted, store.DeployRunning, 77, ""),
		moved(d, delivery.ChangeFailed, store.DeployFailed, 77, "deploy:production: exit code 1"),
	} {
		n.DeploymentChanged(c)
	}
	n.DeploymentChanged(moved(d, delivery.ChangeFailed, store.DeployFailed, 77, "told twice")) // sent once
	// A build that deploys nothing: no hook with an environment gets it.
	n.Changed(set(newBuild(t, st, r, "main"), store.StatusSuccess, store.StatusSuccess, store.StatusSuccess))
	waitFor(t, 30*time.Second, "the events", func() bool { return finalN(t, st, store.DeliveryHook, 7) })

	var events []string
	var chats []string
	prodEvents := 0
	for _, q := range f.requests() {
		switch q.Path {
		case "/prod":
			prodEvents++
		case "/repos/acme/app/statuses/" + sha: // the build's commit status
		case "/services/T0/B0/X":
			var msg map[string]string
			if err := json.Unmarshal(q.Body, &msg); err != nil {
				t.Fatal(err)
			}
			chats = append(chats, msg["text"])
		case "/all":
			if err := notify.Verify(secret, q.Body, q.Header.Get("Gantry-Signature")); err != nil {
				t.Errorf("%s: %v", q.Header.Get("Gantry-Event"), err)
			}
			var p notify.Payload
			if err := json.Unmarshal(q.Body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Event != q.Header.Get("Gantry-Event") || p.Build != nil || p.Deployment == nil {
				t.Fatalf("payload %s", q.Body)
			}
			dp := p.Deployment
			if dp.ID != d.ID || dp.Environment != "production" || dp.RequestedBy != "ann" || dp.Kind != "deploy" ||
				dp.URL != "http://ci.example.com/repos/acme/app/environments" || dp.Release.Version != rel.Version ||
				dp.Release.Commit != sha || dp.Release.Build.ID != rel.BuildID || !cmp.Equal(dp.Release.Issues, []string{"OPS-7"}) ||
				len(dp.Approvals) != 1 || dp.Approvals[0].User != "bob" || p.Repo.Name != "acme/app" {
				t.Errorf("payload of %s = %s", p.Event, q.Body)
			}
			line := fmt.Sprintf("%s %s", p.Event, dp.State)
			if dp.Build != nil {
				line += fmt.Sprintf(" build %d %s", dp.Build.ID, dp.Build.URL)
			}
			if dp.Waiting != "" || dp.Reason != "" {
				line += ": " + dp.Waiting + dp.Reason
			}
			events = append(events, line)
		default:
			t.Errorf("request to %s", q.Path)
		}
	}
	want := []string{
		"deployment.created pending",
		"deployment.approval_required pending: waiting for approval: 0 of 1 from releasers",
		"deployment.started running build 77 http://ci.example.com/builds/77",
		"deployment.finished failed build 77 http://ci.example.com/builds/77: deploy:production: exit code 1",
	}
	if diff := cmp.Diff(want, events, sortStrings); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if prodEvents != 1 {
		t.Errorf("the prod* hook got %d events, want deployment.finished alone (the staging hook: none)", prodEvents)
	}
	envs := "http://ci.example.com/repos/acme/app/environments"
	wantChats := []string{
		":raised_hand: <" + envs + "|acme/app " + rel.Version + "> to `production` waits for approval (0 of 1 from releasers): <" + envs + "|approve or reject it>",
		":x: deployment of <http://ci.example.com/builds/77|acme/app " + rel.Version + "> to `production` failed\n> deploy:production: exit code 1",
	}
	if diff := cmp.Diff(wantChats, chats, sortStrings); diff != "" {
		t.Errorf("chat messages (-want +got):\n%s", diff)
	}
}

// TestDeploymentChat: the message of each way a deployment ends.
func TestDeploymentChat(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(int, *request) (int, http.Header, string) { return 200, nil, "ok" })
	st := openStore(t)
	r := newRepo(t, st, "acme/app", "gitea", f.URL)
	if err := st.CreateHook(t.Context(), &store.Hook{URL: f.URL + "/chat", Secret: "s", Events: []string{"deployment.finished"}, Format: store.HookSlack}); err != nil {
		t.Fatal(err)
	}
	old, _ := newDeployment(t, st, r, "main", "staging", "")
	rel, ok := newDeployment(t, st, r, "main", "staging", "")
	_, back := newDeployment(t, st, r, "main", "staging", "cy")
	back.Kind, back.RollbackOf = "rollback", rel.ID
	back.ReleaseID, back.Version = old.ID, old.Version
	_, cancelled := newDeployment(t, st, r, "main", "staging", "cy")
	n := start(t, st, notify.Options{})
	n.DeploymentChanged(moved(ok, delivery.ChangeSucceeded, store.DeploySucceeded, 5, ""))
	n.DeploymentChanged(moved(back, delivery.ChangeSucceeded, store.DeploySucceeded, 6, ""))
	n.DeploymentChanged(moved(cancelled, delivery.ChangeCancelled, store.DeployCancelled, 0, "cancelled by cy"))
	waitFor(t, 30*time.Second, "the messages", func() bool { return finalN(t, st, store.DeliveryHook, 3) })
	var got []string
	for _, q := range f.requests() {
		var msg map[string]string
		if err := json.Unmarshal(q.Body, &msg); err != nil {
			t.Fatal(err)
		}
		got = append(got, msg["text"])
	}
	envs := "http://ci.example.com/repos/acme/app/environments"
	want := []string{
		":white_check_mark: <http://ci.example.com/builds/5|acme/app " + rel.Version + "> is live in `staging` (<https://staging.example.com|open>)",
		":rewind: `staging` rolled back to <http://ci.example.com/builds/6|acme/app " + old.Version + "> (from " + rel.Version + ") (<https://staging.example.com|open>)",
		":no_entry_sign: deployment of <" + envs + "|acme/app " + cancelled.Version + "> to `staging` was cancelled\n> cancelled by cy",
	}
	if diff := cmp.Diff(want, got, sortStrings); diff != "" {
		t.Errorf("chat messages (-want +got):\n%s", diff)
	}
}
