package delivery

// Telling an observer of every change of a deployment.

import (
	"context"
	"log/slog"

	"github.com/gantry-ci/gantry/internal/store"
)

// What a Change is: the steps of a deployment's life an observer hears of.
//
//	requested ──► approval_required ──► approved ──┐
//	    │                   │                       ▼
//	    │                   └─► rejected ─► failed  started ─► succeeded
//	    └──────────────────────────────────────────►  │    ─► failed
//	                                                   └───► cancelled
//
// Every deployment is requested once and ends once (succeeded, failed or
// cancelled: withdrawn too, then By is who withdrew it); one refused
// outright (an automatic deployment its environment does not admit) is
// requested and failed at once. An automatic rollback after a failed
// health check is requested like any other, of kind auto-rollback.
const (
	ChangeRequested        = "requested"
	ChangeApprovalRequired = "approval_required"
	ChangeApproved         = "approved"
	ChangeRejected         = "rejected"
	ChangeStarted          = "started"
	ChangeSucceeded        = store.DeploySucceeded
	ChangeFailed           = store.DeployFailed
	ChangeCancelled        = store.DeployCancelled
)

// Change is one change of a deployment, told to the observer.
type Change struct {
	// What happened: one of the Change constants.
	What string
	// Deployment is a copy of the deployment as it is after the change.
	// Repo and Version may be empty where the service did not read them
	// (an automatic deployment as its release is registered).
	Deployment store.Deployment
	// By is who approved, rejected or asked for it; empty for Gantry.
	By string
	// Detail: for approval_required, what it waits for; for approved and
	// rejected, the person's comment.
	Detail string
}

// Observe sets the function told of every change of every deployment
// this service makes, after the change is stored and outside any
// transaction. It is called on the deployment's path: it must return at
// once (queue what it is told) and cannot fail the deployment. Set it
// before the service is used; nil tells no one.
func (s *Service) Observe(fn func(Change)) { s.observer = fn }

// tell tells the observer of a change of d.
func (s *Service) tell(ctx context.Context, what string, d *store.Deployment, by, detail string) {
	if s.observer == nil || d == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "deployment observer panicked", slog.Int64("deployment", d.ID), slog.Any("panic", r))
		}
	}()
	s.observer(Change{What: what, Deployment: *d, By: by, Detail: detail})
}

// tellWaiting tells that pending deployment id waits for approvals, when
// its environment asks for some it lacks.
func (s *Service) tellWaiting(ctx context.Context, id int64) {
	if s.observer == nil {
		return
	}
	d, err := s.store.Deployment(ctx, id)
	if err != nil || d.State != store.DeployPending {
		return
	}
	if t := s.Tally(ctx, d); t.Required > 0 && !t.Approved() && t.Rejected == nil {
		s.tell(ctx, ChangeApprovalRequired, d, "", t.Waiting())
	}
}
