package store

import (
	"context"
	"time"
)

// Verdicts of a Decision on a deployment.
const (
	// VerdictApprove: the user approves the deployment's release going
	// to its environment.
	VerdictApprove = "approve"
	// VerdictReject: the user rejects it; the deployment ends.
	VerdictReject = "reject"
	// VerdictOverrideFreeze: an admin lets the deployment through a
	// freeze window; Comment is the reason.
	VerdictOverrideFreeze = "override-freeze"
)

// Decision is one person's say on one deployment: an approval, a
// rejection, or an admin's override of a freeze window. It belongs to the
// deployment, hence to its release: it never carries over to another
// release, nor to another deployment of the same release.
type Decision struct {
	ID           int64
	DeploymentID int64
	User         string
	Verdict      string
	Comment      string
	CreatedAt    time.Time
}

// Decisions is the part of the Store that holds what people decided about
// deployments. Every method is safe for concurrent use.
type Decisions interface {
	// AddDecision stores d and sets d.ID and d.CreatedAt. ErrNotFound when
	// the deployment does not exist; ErrConflict, and nothing is stored,
	// when d.User gave that verdict on that deployment already.
	AddDecision(ctx context.Context, d *Decision) error
	// DecisionsOf returns the decisions on a deployment, oldest first.
	DecisionsOf(ctx context.Context, deploymentID int64) ([]*Decision, error)
}
