package delivery

// Who may ask for a deployment, approvals and rejections, and freeze
// windows, carried out: package deploy decides, this reads and records.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Actor is the person behind a request.
type Actor struct {
	Name  string
	Admin bool
	// OverrideFreeze, from an admin, is the reason to deploy through an
	// open freeze window.
	OverrideFreeze string
}

// person is who name is, with the groups they are in.
func (s *Service) person(ctx context.Context, name string, admin bool) (deploy.Person, error) {
	p := deploy.Person{Name: name, Admin: admin}
	groups, err := s.store.Groups(ctx)
	if err != nil {
		return p, err
	}
	for _, g := range groups {
		if slices.Contains(g.Members, name) {
			p.Groups = append(p.Groups, g.Name)
		}
	}
	return p, nil
}

// mayRequest checks a person's request against the environment's groups
// and freeze windows. Automatic deployments are not a person's: a freeze
// window holds them (ready) instead.
func (s *Service) mayRequest(ctx context.Context, req Request, p *spec.Pipeline) error {
	if req.Kind == deploy.KindAuto || req.Kind == deploy.KindAutoRollback {
		return nil
	}
	e := plan.Environment(p, req.Environment)
	who, err := s.person(ctx, req.By, req.Admin)
	if err != nil {
		return err
	}
	if err := deploy.MayDeploy(e, who); err != nil {
		return err
	}
	if req.OverrideFreeze != "" && !req.Admin {
		return fmt.Errorf("%w: %s may not override a freeze window: only an admin may", deploy.ErrForbidden, req.By)
	}
	set, err := s.freezes(ctx, req.Repo, req.Environment)
	if err != nil {
		return err
	}
	if f := deploy.Frozen(e, set, time.Now()); f != nil && req.OverrideFreeze == "" {
		return fmt.Errorf("%w: %s: nothing is deployed there until then (an admin may with --override-freeze --reason R)",
			deploy.ErrRefused, f.Why(req.Environment))
	}
	return nil
}

// gate reads what decides whether a deployment may start: its
// environment as its release's pipeline defines it, its release, and the
// decisions on it.
func (s *Service) gate(ctx context.Context, d *store.Deployment) (*spec.Environment, *store.Release, []*store.Decision, error) {
	rel, err := s.store.ReleaseByID(ctx, d.ReleaseID)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := s.pipeline(ctx, rel)
	if err != nil {
		return nil, nil, nil, err
	}
	decs, err := s.store.DecisionsOf(ctx, d.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	return plan.Environment(p, d.Environment), rel, decs, nil
}

// ready is the deploy.Ready of advance: a deployment first in line waits
// while a freeze window is open (unless an admin overrode it) and while
// it lacks approvals; an automatic rollback never waits (see
// deploy.KindAutoRollback). One whose pipeline cannot be read is let through:
// start then fails it with the reason.
func (s *Service) ready(ctx context.Context) deploy.Ready {
	return func(d *store.Deployment) (bool, string) {
		if d.Kind == deploy.KindAutoRollback {
			return true, ""
		}
		e, _, decs, err := s.gate(ctx, d)
		if err != nil || e == nil {
			return true, ""
		}
		set, err := s.freezes(ctx, d.Repo, d.Environment)
		if err != nil {
			return false, err.Error() // held until the freezes can be read
		}
		if f := deploy.Frozen(e, set, time.Now()); f != nil && !deploy.Overridden(decs) {
			return false, f.Why(e.Name)
		}
		if t := deploy.Count(e, decs); !t.Approved() {
			return false, t.Waiting()
		}
		return true, ""
	}
}

// Tally returns where a deployment stands with its approvals; a zero
// Tally when its environment asks for none or its pipeline cannot be
// read.
func (s *Service) Tally(ctx context.Context, d *store.Deployment) deploy.Tally {
	e, _, decs, err := s.gate(ctx, d)
	if err != nil {
		return deploy.Tally{}
	}
	return deploy.Count(e, decs)
}

// Tallies returns Tally for each of ds, by ID, reading each release's
// pipeline once.
func (s *Service) Tallies(ctx context.Context, ds []*store.Deployment) map[int64]deploy.Tally {
	out := map[int64]deploy.Tally{}
	pipelines := map[int64]*spec.Pipeline{}
	for _, d := range ds {
		p, ok := pipelines[d.ReleaseID]
		if !ok {
			if rel, err := s.store.ReleaseByID(ctx, d.ReleaseID); err == nil {
				p, _ = s.pipeline(ctx, rel)
			}
			pipelines[d.ReleaseID] = p
		}
		if p == nil {
			continue
		}
		e := plan.Environment(p, d.Environment)
		if e == nil || e.Approvals == nil {
			continue
		}
		decs, err := s.store.DecisionsOf(ctx, d.ID)
		if err != nil {
			continue
		}
		out[d.ID] = deploy.Count(e, decs)
	}
	return out
}

// Decide records an approval or a rejection (store.VerdictApprove or
// VerdictReject) of pending deployment id by a person: refused or
// forbidden as deploy.MayDecide says. A rejection ends the deployment,
// failed with the rejecter's comment; an approval that completes the
// count lets it start when its turn comes. It returns the deployment as
// it is then.
func (s *Service) Decide(ctx context.Context, id int64, by Actor, verdict, comment string) (*store.Deployment, error) {
	d, err := s.store.Deployment(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.MayDecide(ctx, d, by); err != nil {
		return nil, err
	}
	if err := s.store.AddDecision(ctx, &store.Decision{DeploymentID: id, User: by.Name, Verdict: verdict, Comment: comment}); err != nil {
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "deployment "+verdict, slog.String("repo", d.Repo), slog.String("environment", d.Environment),
		slog.Int64("deployment", d.ID), slog.String("by", by.Name))
	if told := map[string]string{store.VerdictApprove: ChangeApproved, store.VerdictReject: ChangeRejected}[verdict]; told != "" {
		s.tell(ctx, told, d, by.Name, comment)
	}
	if verdict == store.VerdictReject {
		reason := "rejected by " + by.Name
		if comment != "" {
			reason += ": " + comment
		}
		s.end(ctx, d, deploy.Reject, reason)
	}
	s.advance(ctx, d.Repo, d.Environment)
	return s.store.Deployment(ctx, id)
}

// freeze returns the freeze window open now in environment env of repo,
// of those the pipeline of the repo's newest release defines and those
// admins set; nil when none is open.
func (s *Service) freeze(ctx context.Context, repo, env string) *deploy.Freeze {
	var e *spec.Environment
	if p, err := s.Rules(ctx, repo); err == nil && p != nil {
		e = plan.Environment(p, env)
	}
	set, _ := s.freezes(ctx, repo, env)
	return deploy.Frozen(e, set, time.Now())
}

// freezes returns the freezes admins set on env of repo that have not
// ended.
func (s *Service) freezes(ctx context.Context, repo, env string) ([]*store.Freeze, error) {
	set, err := s.store.ListFreezes(ctx, store.FreezeFilter{Repo: repo, Environment: env, EndsAfter: time.Now()})
	if err != nil {
		return nil, fmt.Errorf("the freezes of %s of %s cannot be read: %w", env, repo, err)
	}
	return set, nil
}

// Withdraw ends a deployment that has not started, cancelled, with "withdrawn
// by NAME: reason": whoever may deploy to its environment may withdraw it
// (deploy.MayDeploy), automatic ones included. One that runs is refused
// (deploy.ErrRefused) with how to cancel its build instead; one that has
// ended, too. The next in line starts if its turn has come.
func (s *Service) Withdraw(ctx context.Context, id int64, by Actor, reason string) (*store.Deployment, error) {
	d, err := s.store.Deployment(ctx, id)
	if err != nil {
		return nil, err
	}
	switch d.State {
	case store.DeployPending:
	case store.DeployRunning:
		return nil, fmt.Errorf("%w: deployment %d runs already, as build %d: cancel that (gantry cancel %d)", deploy.ErrRefused, d.ID, d.BuildID, d.BuildID)
	default:
		return nil, fmt.Errorf("%w: deployment %d has ended (%s): there is nothing to withdraw", deploy.ErrRefused, d.ID, d.State)
	}
	if err := s.MayWithdraw(ctx, d, by); err != nil {
		return nil, err
	}
	why := "withdrawn by " + by.Name
	if reason != "" {
		why += ": " + reason
	}
	to, err := deploy.Transition(d.State, deploy.Cancel)
	if err != nil {
		return nil, err
	}
	withdrawn, err := s.store.EndDeployment(ctx, d.ID, d.State, to, why)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("%w: deployment %d started or ended meanwhile", deploy.ErrRefused, d.ID)
		}
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "deployment withdrawn", slog.String("repo", d.Repo), slog.String("environment", d.Environment),
		slog.Int64("deployment", d.ID), slog.String("by", by.Name))
	s.tell(ctx, ChangeCancelled, withdrawn, by.Name, reason)
	s.advance(ctx, d.Repo, d.Environment)
	return s.store.Deployment(ctx, id)
}

// MayWithdraw returns nil when by may withdraw deployment d (whoever may
// deploy to its environment may), else the error Withdraw refuses with;
// it changes nothing and says nothing of d's state.
func (s *Service) MayWithdraw(ctx context.Context, d *store.Deployment, by Actor) error {
	e, _, _, err := s.gate(ctx, d)
	if err != nil {
		return err
	}
	who, err := s.person(ctx, by.Name, by.Admin)
	if err != nil {
		return err
	}
	return deploy.MayDeploy(e, who)
}
