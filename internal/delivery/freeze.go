package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// ErrInvalid: a request that makes no sense as asked (a freeze that ends
// before it starts, say). Its message says what.
var ErrInvalid = errors.New("invalid")

// invalid is an error wrapping ErrInvalid with the reason alone as its
// message.
type invalid struct{ msg string }

func (e *invalid) Error() string { return e.msg }
func (e *invalid) Unwrap() error { return ErrInvalid }

func invalidf(format string, args ...any) error { return &invalid{fmt.Sprintf(format, args...)} }

// MaxFreeze is the longest freeze an admin may set: longer, and it is a
// way of turning an environment off, which removing it from the pipeline
// file says better.
const MaxFreeze = 90 * 24 * time.Hour

// FreezeRequest is an admin's freeze of an environment.
type FreezeRequest struct {
	Repo        string
	Environment string
	// Since is when it starts (now when zero), Until when it ends.
	Since, Until time.Time
	Reason       string
	By           string
}

// Freeze stores an admin's freeze window of an environment: from Since
// (now if zero) until Until, nothing is deployed there, automatically or
// asked for, unless an admin overrides it. It is refused (ErrInvalid)
// without a reason, when it ends before it starts or is over already, when
// it is longer than MaxFreeze, and when the environment is none the repo
// has (the environments of its newest release's pipeline, or deployed to
// before), so that a typo freezes nothing in silence.
func (s *Service) Freeze(ctx context.Context, req FreezeRequest) (*store.Freeze, error) {
	repo, err := s.store.Repo(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if req.Since.IsZero() {
		req.Since = now
	}
	switch {
	case strings.TrimSpace(req.Reason) == "":
		return nil, invalidf("a freeze needs a reason: whoever is held back by it reads it")
	case !spec.NamePattern.MatchString(req.Environment):
		return nil, invalidf("%q is not an environment name", req.Environment)
	case !req.Until.After(now):
		return nil, invalidf("the freeze ends (%s) in the past", stamp(req.Until))
	case !req.Until.After(req.Since):
		return nil, invalidf("the freeze ends (%s) before it starts (%s)", stamp(req.Until), stamp(req.Since))
	case req.Until.Sub(req.Since) > MaxFreeze:
		return nil, invalidf("the freeze lasts %s, more than the %d days a freeze may",
			req.Until.Sub(req.Since).Round(time.Minute), MaxFreeze/(24*time.Hour))
	}
	known, err := s.environmentNames(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	if len(known) > 0 && !slices.Contains(known, req.Environment) {
		return nil, invalidf("%s has no environment %s (it has %s)", req.Repo, req.Environment, strings.Join(known, ", "))
	}
	f := &store.Freeze{RepoID: repo.ID, Environment: req.Environment, Since: req.Since.UTC(), Until: req.Until.UTC(),
		Reason: req.Reason, CreatedBy: req.By}
	if err := s.store.CreateFreeze(ctx, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Unfreeze removes an admin's freeze window; what it held starts if its
// turn has come.
func (s *Service) Unfreeze(ctx context.Context, id int64) (*store.Freeze, error) {
	f, err := s.store.DeleteFreeze(ctx, id)
	if err != nil {
		return nil, err
	}
	s.advance(ctx, f.Repo, f.Environment)
	return f, nil
}

// Freezes returns the freezes admins set on repo that have not ended, in
// the order they start.
func (s *Service) Freezes(ctx context.Context, repo string) ([]*store.Freeze, error) {
	if _, err := s.store.Repo(ctx, repo); err != nil {
		return nil, err
	}
	return s.store.ListFreezes(ctx, store.FreezeFilter{Repo: repo, EndsAfter: time.Now()})
}

// environmentNames lists the environments a repo has: those of its newest
// release's pipeline and those deployed to before.
func (s *Service) environmentNames(ctx context.Context, repo string) ([]string, error) {
	names, err := s.store.Environments(ctx, repo)
	if err != nil {
		return nil, err
	}
	if p, err := s.Rules(ctx, repo); err == nil && p != nil {
		for _, e := range p.Environments {
			if !slices.Contains(names, e.Name) {
				names = append(names, e.Name)
			}
		}
	}
	return names, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
