package delivery

import (
	"context"
	"slices"

	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/store"
)

// Environment is an environment as gantry envs shows it.
type Environment struct {
	Name string
	// Current is the newest deployment that succeeded: what runs there,
	// since when, and who asked for it. Nil before the first.
	Current *store.Deployment
	// Active is the deployment running now, if any.
	Active *store.Deployment
	// Waiting are the pending deployments in the order they will start,
	// and Why says for each what it waits for ("" for the one about to
	// start).
	Waiting []*store.Deployment
	Why     map[int64]string
	// Last is the newest deployment that ended, when it ended after
	// Current: one that failed or was cancelled since.
	Last *store.Deployment
	// Tally says, for each waiting deployment, where it stands with its
	// approvals.
	Tally map[int64]deploy.Tally
	// Freeze is the freeze window open now, of those the newest
	// release's pipeline defines and those admins set; nil when none is.
	Freeze *deploy.Freeze
}

// Environments returns a repo's environments as they are now, in the order
// they were first seen.
func (s *Service) Environments(ctx context.Context, repo string) ([]*Environment, error) {
	names, err := s.store.Environments(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := []*Environment{}
	for _, name := range names {
		e, err := s.environment(ctx, repo, name)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Service) environment(ctx context.Context, repo, name string) (*Environment, error) {
	e := &Environment{Name: name, Tally: map[int64]deploy.Tally{}, Freeze: s.freeze(ctx, repo, name)}
	var err error
	if e.Current, err = s.live(ctx, repo, name); err != nil {
		return nil, err
	}
	open, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: repo, Environment: name,
		States: []string{store.DeployPending, store.DeployRunning}, Limit: 1000})
	if err != nil {
		return nil, err
	}
	_, e.Why = deploy.Next(open, s.ready(ctx))
	for _, d := range open {
		if d.State == store.DeployRunning {
			e.Active = d
		} else {
			e.Waiting = append(e.Waiting, d)
			e.Tally[d.ID] = s.Tally(ctx, d)
		}
	}
	slices.SortFunc(e.Waiting, deploy.InLine)
	ended, err := s.store.Deployments(ctx, store.DeploymentFilter{Repo: repo, Environment: name,
		States: []string{store.DeploySucceeded, store.DeployFailed, store.DeployCancelled}, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(ended) > 0 && (e.Current == nil || ended[0].ID != e.Current.ID) {
		e.Last = ended[0]
	}
	return e, nil
}
