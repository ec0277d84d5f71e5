package delivery_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/store"
)

// TestChecks: Rules reads the pipeline of the newest release; MayDecide,
// MayRequest and RollbackTo answer what Decide and Deploy
// would, and change nothing.
func TestChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	if err := e.svc.MayRequest(e.ctx, "acme/app", "staging", delivery.Actor{Name: "bob"}); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("MayRequest(no release yet) = %v, want ErrRefused", err)
	}
	if p, err := e.svc.Rules(e.ctx, "acme/app"); p != nil || err != nil {
		t.Errorf("Rules(no release yet) = %v, %v; want nil, nil", p, err)
	}
	sha := e.commit("Ann <ann@example.com>", pipeline)
	e.push("guarded", sha)
	e.runJobs(engine.Success)
	d := e.envs()["guarded"].Waiting[0]
	if p, err := e.svc.Rules(e.ctx, "acme/app"); err != nil || len(p.Environments) != 4 {
		t.Errorf("Rules = %+v, %v; want the pipeline's 4 environments", p, err)
	}
	if err := e.svc.MayDecide(e.ctx, d, delivery.Actor{Name: "ann"}); !errors.Is(err, deploy.ErrForbidden) ||
		!strings.Contains(err.Error(), "ann authored a commit of release") {
		t.Errorf("MayDecide(the author) = %v, want ErrForbidden saying she authored it", err)
	}
	if err := e.svc.MayDecide(e.ctx, d, delivery.Actor{Name: "bob"}); err != nil {
		t.Errorf("MayDecide(bob) = %v, want nil", err)
	}
	if g := e.envs()["guarded"]; len(g.Waiting) != 1 || len(e.started) != 0 {
		t.Errorf("after the checks guarded = %+v, %d started; want it still waiting", g, len(e.started))
	}
	if rel, err := e.svc.RollbackTo(e.ctx, "acme/app", "guarded"); rel != nil || err != nil {
		t.Errorf("RollbackTo(nothing deployed yet) = %+v, %v; want nil, nil", rel, err)
	}
	if err := e.svc.MayRequest(e.ctx, "acme/app", "staging", delivery.Actor{Name: "bob"}); err != nil {
		t.Errorf("MayRequest(staging) = %v, want nil", err)
	}
	if err := e.svc.MayRequest(e.ctx, "acme/app", "frozen", delivery.Actor{Name: "bob"}); !errors.Is(err, deploy.ErrRefused) ||
		!strings.Contains(err.Error(), "frozen is frozen until") {
		t.Errorf("MayRequest(frozen) = %v, want ErrRefused saying it is frozen", err)
	}
	if err := e.svc.MayRequest(e.ctx, "acme/app", "frozen", delivery.Actor{Name: "root", Admin: true, OverrideFreeze: "hotfix"}); err != nil {
		t.Errorf("MayRequest(frozen, an admin overrides) = %v, want nil", err)
	}
	if _, err := e.svc.Decide(e.ctx, d.ID, delivery.Actor{Name: "bob"}, store.VerdictApprove, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.MayDecide(e.ctx, d, delivery.Actor{Name: "bob"}); !errors.Is(err, deploy.ErrRefused) {
		t.Errorf("MayDecide(bob again) = %v, want ErrRefused: he decided already", err)
	}
}
