package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Scheduled starts the builds whose `on: schedule` crons fire in the
// window (from, to]. A repo's schedules are those of the pipeline of the
// newest build of its default branch; a scheduled build runs the head of
// that branch. Each firing is one build even if several servers, or a
// restarted one, look at the same window: its delivery ID names the cron
// and the minute.
func (s *Service) Scheduled(ctx context.Context, from, to time.Time) error {
	repos, err := s.store.Repos(ctx)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	var errs []error
	for _, repo := range repos {
		if err := s.scheduleRepo(ctx, repo, from, to); err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", repo.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) scheduleRepo(ctx context.Context, repo *store.Repo, from, to time.Time) error {
	latest, err := s.store.Builds(ctx, store.BuildFilter{Repo: repo.Name, Branch: repo.DefaultBranch, Limit: 20})
	if err != nil {
		return err
	}
	var pipeline []byte
	for _, b := range latest {
		if b.Tag != "" || b.Event == plan.EventPullRequest {
			continue
		}
		full, err := s.store.Build(ctx, b.ID)
		if err == nil && len(full.Pipeline) > 0 {
			pipeline = full.Pipeline
			break
		}
	}
	if pipeline == nil {
		return nil
	}
	p, err := spec.Parse(PipelineFile, pipeline)
	if err != nil {
		return nil // that build already says why
	}
	for _, sc := range p.On.Schedule {
		sched, err := cron.ParseStandard(sc.Cron)
		if err != nil {
			continue
		}
		for at := sched.Next(from); !at.After(to) && !at.IsZero(); at = sched.Next(at) {
			if err := s.fire(ctx, repo, sc.Cron, at); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) fire(ctx context.Context, repo *store.Repo, expr string, at time.Time) error {
	commit, err := s.mirrors.Get(repo.Name, repo.CloneURL).Resolve(ctx, "refs/heads/"+repo.DefaultBranch)
	if err != nil {
		return err
	}
	b, created, err := s.Create(ctx, repo, Trigger{
		Trigger:    plan.Trigger{Event: plan.EventSchedule, Branch: repo.DefaultBranch, Commit: commit, Repo: repo.Name},
		DeliveryID: fmt.Sprintf("schedule %q %s", expr, at.UTC().Format(time.RFC3339)),
		Author:     "schedule",
		Message:    fmt.Sprintf("scheduled by %q at %s", expr, at.UTC().Format(time.RFC3339)),
	})
	if err != nil {
		return err
	}
	if created {
		s.log.LogAttrs(ctx, slog.LevelInfo, "scheduled build", slog.String("repo", repo.Name), slog.Int64("build", b.ID), slog.String("cron", expr))
	}
	return nil
}
