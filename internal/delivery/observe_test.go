package delivery_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/store"
)

// observed records what an observer is told, one line per change.
type observed struct {
	mu    sync.Mutex
	lines []string
}

func (o *observed) tell(c delivery.Change) {
	d := c.Deployment
	line := fmt.Sprintf("%s %s %s %s", c.What, d.Environment, d.Version, d.State)
	if c.By != "" {
		line += " by " + c.By
	}
	if c.Detail != "" {
		line += ": " + c.Detail
	}
	if d.Reason != "" {
		line += " (" + d.Reason + ")"
	}
	o.mu.Lock()
	o.lines = append(o.lines, line)
	o.mu.Unlock()
}

func (o *observed) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.lines
	o.lines = nil
	return out
}

// TestObserver: the observer hears every change of a deployment, in
// order: an automatic one requested, started and succeeded; one that
// waits for an approval, approved, started and failed; one rejected; a
// person's promotion; and a cancelled one.
func TestObserver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	var o observed
	e.svc.Observe(o.tell)

	sha := e.commit("Ann <ann@example.com>", pipeline)
	e.push("main", sha)
	e.runJobs(engine.Success)
	e.runJobs(engine.Success)
	want := []string{"requested staging main-1 pending", "started staging main-1 running", "succeeded staging main-1 succeeded"}
	if diff := cmp.Diff(want, o.take()); diff != "" {
		t.Errorf("told of an automatic deployment (-want +got):\n%s", diff)
	}

	e.push("guarded", sha)
	e.runJobs(engine.Success)
	g := e.envs()["guarded"]
	if len(g.Waiting) != 1 {
		t.Fatalf("guarded = %+v, want one waiting", g)
	}
	if _, err := e.svc.Decide(e.ctx, g.Waiting[0].ID, delivery.Actor{Name: "bob"}, store.VerdictApprove, "ship it"); err != nil {
		t.Fatal(err)
	}
	e.runJobs(engine.Failure)
	got := o.take()
	want = []string{"requested guarded guarded-3 pending", "approval_required guarded guarded-3 pending: waiting for approval: 0 of 1",
		"approved guarded guarded-3 pending by bob: ship it", "started guarded guarded-3 running"}
	if len(got) != 5 || !cmp.Equal(got[:4], want) || !strings.HasPrefix(got[4], "failed guarded guarded-3 failed (") {
		t.Errorf("told of an approved deployment that failed = %q, want %q then failed with a reason", got, want)
	}

	e.push("guarded", e.commit("Ann <ann@example.com>", pipeline+"\n"))
	e.runJobs(engine.Success)
	g = e.envs()["guarded"]
	if _, err := e.svc.Decide(e.ctx, g.Waiting[0].ID, delivery.Actor{Name: "bob"}, store.VerdictReject, "not today"); err != nil {
		t.Fatal(err)
	}
	want = []string{"requested guarded guarded-5 pending", "approval_required guarded guarded-5 pending: waiting for approval: 0 of 1",
		"rejected guarded guarded-5 pending by bob: not today", "failed guarded guarded-5 failed (rejected by bob: not today)"}
	if diff := cmp.Diff(want, o.take()); diff != "" {
		t.Errorf("told of a rejected deployment (-want +got):\n%s", diff)
	}

	if _, err := e.svc.Promote(e.ctx, "acme/app", "staging", "production", "", delivery.Actor{Name: "cat"}); err != nil {
		t.Fatal(err)
	}
	st := e.envs()["production"]
	if _, err := e.builds.Cancel(e.ctx, st.Active.BuildID, "cancelled by cat"); err != nil {
		t.Fatal(err)
	}
	want = []string{"requested production main-1 pending by cat", "started production main-1 running",
		"cancelled production main-1 cancelled (deploy:production: cancelled by cat)"}
	if diff := cmp.Diff(want, o.take()); diff != "" {
		t.Errorf("told of a promotion cancelled (-want +got):\n%s", diff)
	}

	// A waiting deployment withdrawn: cancelled, by whoever withdrew it.
	e.push("guarded", e.commit("Ann <ann@example.com>", pipeline+"\n\n"))
	e.runJobs(engine.Success)
	g = e.envs()["guarded"]
	o.take()
	if _, err := e.svc.Withdraw(e.ctx, g.Waiting[0].ID, delivery.Actor{Name: "cat", Admin: true}, "wrong one"); err != nil {
		t.Fatal(err)
	}
	if got := o.take(); len(got) != 1 || !strings.HasPrefix(got[0], "cancelled guarded ") || !strings.HasSuffix(got[0], " by cat: wrong one (withdrawn by cat: wrong one)") {
		t.Errorf("told of a withdrawal = %q, want it cancelled by cat", got)
	}
}
