package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gantry-ci/gantry/internal/store"
)

// AddDecision stores a decision on a deployment.
func (s *Store) AddDecision(ctx context.Context, d *store.Decision) error {
	created := now()
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO decisions (deployment_id, user_name, verdict, comment, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, d.DeploymentID, d.User, d.Verdict, d.Comment, created).Scan(&id)
	if err != nil {
		return fmt.Errorf("%s deployment %d by %s: %w", d.Verdict, d.DeploymentID, d.User, translate(err))
	}
	d.ID, d.CreatedAt = id, created
	return nil
}

// DecisionsOf returns the decisions on a deployment, oldest first.
func (s *Store) DecisionsOf(ctx context.Context, deploymentID int64) ([]*store.Decision, error) {
	return queryAll(ctx, s.pool, "decisions", func(sc pgx.Row) (*store.Decision, error) {
		d := &store.Decision{}
		return d, sc.Scan(&d.ID, &d.DeploymentID, &d.User, &d.Verdict, &d.Comment, ts(&d.CreatedAt))
	}, `SELECT id, deployment_id, user_name, verdict, comment, created_at FROM decisions
		WHERE deployment_id = $1 ORDER BY id`, deploymentID)
}
