package delivery

// Read-only checks for the faces that show buttons: whether a person may
// do something is answered by the very code that refuses them when they
// try, without doing it.

import (
	"context"
	"fmt"

	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// MayDecide returns nil when by may approve or reject deployment d now,
// else the error Decide would refuse them with (deploy.MayDecide's). It
// changes nothing.
func (s *Service) MayDecide(ctx context.Context, d *store.Deployment, by Actor) error {
	e, rel, decs, err := s.gate(ctx, d)
	if err != nil {
		return err
	}
	who, err := s.person(ctx, by.Name, by.Admin)
	if err != nil {
		return err
	}
	return deploy.MayDecide(deploy.Ballot{Environment: e, Deployment: d, Authors: rel.Authors, Decisions: decs}, who)
}

// MayRequest returns nil when by may ask now for a deployment, a
// promotion or a rollback to environment env of repo, as the pipeline of
// the repo's newest release defines it: the person's part of what
// Deploy, Promote and Rollback check (the environment's groups, an open
// freeze window), with the error they would refuse with. It says nothing
// of a particular release (deploy.Admit's part) and changes nothing. A
// repo without a release gives an error wrapping deploy.ErrRefused.
func (s *Service) MayRequest(ctx context.Context, repo, env string, by Actor) error {
	p, err := s.Rules(ctx, repo)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("%w: %s has no release yet", deploy.ErrRefused, repo)
	}
	return s.mayRequest(ctx, Request{Repo: repo, Environment: env, Kind: deploy.KindDeploy, By: by.Name, Admin: by.Admin,
		OverrideFreeze: by.OverrideFreeze}, p)
}

// Rules returns the pipeline whose environments govern repo's releases
// now (where each takes releases from, its groups, approvals and freeze
// windows): that of the repo's newest release, read as Deploy, Promote
// and Rollback read it. Nil, and no error, before the first release.
func (s *Service) Rules(ctx context.Context, repo string) (*spec.Pipeline, error) {
	rels, err := s.store.ListReleases(ctx, store.ReleaseFilter{Repo: repo, Limit: 1})
	if err != nil || len(rels) == 0 {
		return nil, err
	}
	return s.pipeline(ctx, rels[0])
}

// RollbackTo returns the release a rollback of environment env of repo
// would go back to now, as Rollback picks it; nil when there is none.
func (s *Service) RollbackTo(ctx context.Context, repo, env string) (*store.Release, error) {
	_, _, target, ok, err := s.rollbackTarget(ctx, repo, env)
	if err != nil || !ok {
		return nil, err
	}
	return s.store.ReleaseByID(ctx, target)
}

// rollbackTarget reads env's succeeded deployments, newest first, and
// picks from them with deploy.RollbackTarget.
func (s *Service) rollbackTarget(ctx context.Context, repo, env string) (succeeded []*store.Deployment, current, target int64, ok bool, err error) {
	succeeded, err = s.store.Deployments(ctx, store.DeploymentFilter{Repo: repo, Environment: env,
		States: []string{store.DeploySucceeded}, Limit: 1000})
	if err != nil {
		return nil, 0, 0, false, err
	}
	current, target, ok = deploy.RollbackTarget(succeeded)
	return succeeded, current, target, ok, nil
}
