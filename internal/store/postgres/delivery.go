package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// The outbox on PostgreSQL. ClaimDeliveries picks its rows FOR UPDATE SKIP
// LOCKED: a delivery another server is claiming at that moment is skipped,
// never waited for, and never claimed twice. EnqueueDeliveries supersedes
// older pending deliveries with an UPDATE that waits for a claim of them
// in progress and then sees them sending, so a delivery being sent is
// never marked superseded under its sender.

// hostLockSpace is the first key of the advisory locks ClaimDeliveries
// takes per host (the second is the host's hash), apart from any other
// advisory lock.
const hostLockSpace int32 = 0x6761_6e74 // "gant"

// EnqueueDeliveries stores ds in one transaction; see store.Outbox.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []*store.Delivery) error {
	created := now()
	err := s.tx(ctx, func(tx pgx.Tx) error {
		for _, d := range ds {
			if err := enqueue(ctx, tx, d, created); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, d := range ds {
			d.ID = 0
		}
		return fmt.Errorf("enqueue %d deliveries: %w", len(ds), translate(err))
	}
	return nil
}

func enqueue(ctx context.Context, tx pgx.Tx, d *store.Delivery, created time.Time) error {
	state, next, finished := d.State, d.NextAttemptAt, time.Time{}
	if state == "" {
		state = store.DeliveryPending
	}
	if next.IsZero() {
		next = created
	}
	next = next.Truncate(time.Microsecond)
	if store.DeliveryFinal(state) {
		finished = created
	}
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO deliveries (kind, repo_id, build_id, hook_id, forge, event, url, host,
			headers, payload, dedupe_key, coalesce_key, state, attempts, next_attempt_at, claimed_by, lease_token, last_status,
			last_error, created_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, '', 0, $15, $16, $17, $18)
		ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`,
		d.Kind, nullID(d.RepoID), d.BuildID, d.HookID, d.Forge, d.Event, d.URL, d.Host, headerMap(d.Headers),
		blob(d.Payload), nullString(d.DedupeKey), nullString(d.CoalesceKey), state, next, d.LastStatus, d.LastError,
		created, nullTime(finished)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		d.ID = 0 // a duplicate
		return nil
	}
	if err != nil {
		return err
	}
	d.ID, d.CreatedAt, d.State, d.NextAttemptAt, d.FinishedAt = id, created, state, next, finished
	if d.CoalesceKey != "" {
		_, err = tx.Exec(ctx, `UPDATE deliveries SET state = 'superseded', finished_at = $1
			WHERE coalesce_key = $2 AND id < $3 AND state = 'pending'`, created, d.CoalesceKey, id)
	}
	return err
}

func headerMap(h map[string]string) map[string]string {
	if h == nil {
		return map[string]string{}
	}
	return h
}

// newLeaseToken is a random positive token that names one claim.
func newLeaseToken() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:])>>1) | 1
}

const deliveryColumns = `d.id, d.kind, coalesce(d.repo_id, 0), coalesce(r.name, ''), d.build_id, d.hook_id, d.forge, d.event,
	d.url, d.host, d.headers, d.payload, coalesce(d.dedupe_key, ''), coalesce(d.coalesce_key, ''), d.state, d.attempts,
	d.next_attempt_at, d.claimed_by, d.lease_token, d.lease_expires, d.last_status, d.last_error, d.created_at, d.finished_at`

const deliverySelect = `SELECT ` + deliveryColumns + ` FROM deliveries AS d LEFT JOIN repos AS r ON r.id = d.repo_id`

func scanDelivery(sc pgx.Row) (*store.Delivery, error) {
	d := &store.Delivery{}
	if err := sc.Scan(&d.ID, &d.Kind, &d.RepoID, &d.Repo, &d.BuildID, &d.HookID, &d.Forge, &d.Event, &d.URL, &d.Host,
		&d.Headers, &d.Payload, &d.DedupeKey, &d.CoalesceKey, &d.State, &d.Attempts, ts(&d.NextAttemptAt), &d.ClaimedBy, &d.LeaseToken,
		ts(&d.LeaseExpires), &d.LastStatus, &d.LastError, ts(&d.CreatedAt), ts(&d.FinishedAt)); err != nil {
		return nil, err
	}
	if len(d.Headers) == 0 {
		d.Headers = nil
	}
	return d, nil
}

// ClaimDeliveries claims up to limit due deliveries; see store.Outbox.
func (s *Store) ClaimDeliveries(ctx context.Context, claimer string, limit int, ttl time.Duration) ([]*store.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []*store.Delivery
	err := s.tx(ctx, func(tx pgx.Tx) error {
		out = nil
		t := now()
		// More candidates than asked for: some may be superseded or wait.
		rows, err := tx.Query(ctx, `SELECT `+deliveryColumns+` FROM deliveries AS d LEFT JOIN repos AS r ON r.id = d.repo_id
			WHERE ((d.state = 'pending' AND d.next_attempt_at <= $1) OR (d.state = 'sending' AND d.lease_expires <= $1))
			AND NOT EXISTS (SELECT 1 FROM delivery_holds AS h WHERE h.host = d.host AND h.until > $1)
			AND NOT EXISTS (SELECT 1 FROM deliveries AS o WHERE o.host = d.host AND o.state = 'sending' AND o.lease_expires > $1)
			ORDER BY d.next_attempt_at, d.id LIMIT $2
			FOR UPDATE OF d SKIP LOCKED`, t, limit*4+16)
		if err != nil {
			return err
		}
		cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Delivery, error) { return scanDelivery(r) })
		if err != nil {
			return err
		}
		// One per host. Two servers claiming at once could each pick one
		// for the same host before either commits: a host's advisory lock,
		// held to the end of the claim, lets only one of them.
		hosts := map[string]bool{}
		for _, d := range cands {
			if len(out) == limit {
				break
			}
			if _, seen := hosts[d.Host]; seen {
				continue
			}
			var locked bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext($2))`, hostLockSpace, d.Host).Scan(&locked); err != nil {
				return err
			}
			if !locked {
				hosts[d.Host] = false
				continue
			}
			// The candidates were read before the lock: a claim of this
			// host that committed since (and so released the lock) is
			// seen only by a statement that starts now.
			var busyHost bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries
				WHERE host = $1 AND state = 'sending' AND lease_expires > $2 AND id <> $3)`, d.Host, t, d.ID).Scan(&busyHost); err != nil {
				return err
			}
			if busyHost {
				hosts[d.Host] = false
				continue
			}
			if d.CoalesceKey != "" {
				var newer, busy bool
				if err := tx.QueryRow(ctx, `SELECT
					EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = $1 AND id > $2),
					EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = $1 AND id < $2 AND state = 'sending' AND lease_expires > $3)`,
					d.CoalesceKey, d.ID, t).Scan(&newer, &busy); err != nil {
					return err
				}
				if newer {
					if _, err := tx.Exec(ctx, `UPDATE deliveries SET state = 'superseded', finished_at = $1, lease_expires = NULL
						WHERE id = $2`, t, d.ID); err != nil {
						return err
					}
					continue
				}
				if busy {
					continue
				}
			}
			d.State, d.Attempts, d.ClaimedBy, d.LeaseToken, d.LeaseExpires = store.DeliverySending, d.Attempts+1, claimer, newLeaseToken(), t.Add(ttl)
			if _, err := tx.Exec(ctx, `UPDATE deliveries SET state = 'sending', attempts = $1, claimed_by = $2, lease_token = $3,
				lease_expires = $4 WHERE id = $5`, d.Attempts, claimer, d.LeaseToken, d.LeaseExpires, d.ID); err != nil {
				return err
			}
			hosts[d.Host] = true
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", translate(err))
	}
	return out, nil
}

// FinishDelivery records the outcome of a claimed delivery; see
// store.Outbox.
func (s *Store) FinishDelivery(ctx context.Context, d *store.Delivery) error {
	if d.State != store.DeliveryPending && !store.DeliveryFinal(d.State) {
		return fmt.Errorf("finish delivery %d: state %q is not an outcome", d.ID, d.State)
	}
	state := d.State
	var finished, next time.Time
	err := s.tx(ctx, func(tx pgx.Tx) error {
		state = d.State
		t := now()
		var key string
		err := tx.QueryRow(ctx, `SELECT coalesce(coalesce_key, '') FROM deliveries
			WHERE id = $1 AND state = 'sending' AND lease_token = $2 FOR UPDATE`, d.ID, d.LeaseToken).Scan(&key)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		if state == store.DeliveryPending && key != "" {
			var newer bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = $1 AND id > $2)`,
				key, d.ID).Scan(&newer); err != nil {
				return err
			}
			if newer {
				state = store.DeliverySuperseded
			}
		}
		finished = time.Time{}
		if store.DeliveryFinal(state) {
			finished = t
		}
		next = d.NextAttemptAt.Truncate(time.Microsecond)
		if next.IsZero() {
			next = t
		}
		_, err = tx.Exec(ctx, `UPDATE deliveries SET state = $1, next_attempt_at = $2, lease_expires = NULL,
			last_status = $3, last_error = $4, finished_at = $5 WHERE id = $6`,
			state, next, d.LastStatus, d.LastError, nullTime(finished), d.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish delivery %d: %w", d.ID, translate(err))
	}
	d.State, d.FinishedAt, d.NextAttemptAt, d.LeaseExpires = state, finished, next, time.Time{}
	return nil
}

// ReleaseDeliveries makes what claimer is sending pending and due now.
func (s *Store) ReleaseDeliveries(ctx context.Context, claimer string) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE deliveries SET state = 'pending', next_attempt_at = $1, lease_expires = NULL,
		last_error = 'interrupted: its server stopped' WHERE state = 'sending' AND claimed_by = $2`, now(), claimer)
	if err != nil {
		return 0, fmt.Errorf("release deliveries of %s: %w", claimer, translate(err))
	}
	return int(tag.RowsAffected()), nil
}

// HoldDeliveries keeps deliveries to host from being claimed until until.
func (s *Store) HoldDeliveries(ctx context.Context, host string, until time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO delivery_holds (host, until) VALUES ($1, $2)
		ON CONFLICT (host) DO UPDATE SET until = greatest(delivery_holds.until, excluded.until)`, host, until)
	if err != nil {
		return fmt.Errorf("hold deliveries to %s: %w", host, translate(err))
	}
	return nil
}

// Deliveries returns the deliveries that match f, newest first.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.Delivery, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Repo != "" {
		add("r.name = $%d", f.Repo)
	}
	if f.State != "" {
		add("d.state = $%d", f.State)
	}
	if f.Kind != "" {
		add("d.kind = $%d", f.Kind)
	}
	if f.BuildID != 0 {
		add("d.build_id = $%d", f.BuildID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q := deliverySelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY d.id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	return out, nil
}

// PruneDeliveries removes final deliveries that finished before before.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM deliveries WHERE finished_at < $1
			AND state IN ('delivered', 'failed', 'superseded', 'skipped')`, before)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM delivery_holds WHERE until < $1`, before)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", translate(err))
	}
	return int(n), nil
}

// CreateHook stores h; see store.Outbox.
func (s *Store) CreateHook(ctx context.Context, h *store.Hook) error {
	created := now()
	var id int64
	var repo string
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if h.RepoID != 0 {
			if err := tx.QueryRow(ctx, `SELECT name FROM repos WHERE id = $1`, h.RepoID).Scan(&repo); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO hooks (url, secret, events, repo_id, branch, format, created_at, environment)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			h.URL, h.Secret, labels(h.Events), nullID(h.RepoID), h.Branch, h.Format, created, h.Environment).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("create hook: %w", translate(err))
	}
	h.ID, h.CreatedAt, h.Repo = id, created, repo
	return nil
}

const hookSelect = `SELECT h.id, h.url, h.secret, h.events, coalesce(h.repo_id, 0), coalesce(r.name, ''), h.branch, h.format,
	h.created_at, h.environment FROM hooks AS h LEFT JOIN repos AS r ON r.id = h.repo_id`

func scanHook(sc pgx.Row) (*store.Hook, error) {
	h := &store.Hook{}
	if err := sc.Scan(&h.ID, &h.URL, &h.Secret, &h.Events, &h.RepoID, &h.Repo, &h.Branch, &h.Format, ts(&h.CreatedAt), &h.Environment); err != nil {
		return nil, err
	}
	if len(h.Events) == 0 {
		h.Events = nil
	}
	return h, nil
}

// Hook returns a hook, or store.ErrNotFound.
func (s *Store) Hook(ctx context.Context, id int64) (*store.Hook, error) {
	h, err := scanHook(s.pool.QueryRow(ctx, hookSelect+` WHERE h.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("hook %d: %w", id, translate(err))
	}
	return h, nil
}

// Hooks returns every hook, oldest first.
func (s *Store) Hooks(ctx context.Context) ([]*store.Hook, error) {
	rows, err := s.pool.Query(ctx, hookSelect+` ORDER BY h.id`)
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Hook, error) { return scanHook(r) })
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	return out, nil
}

// DeleteHook removes a hook and fails its unsent deliveries.
func (s *Store) DeleteHook(ctx context.Context, id int64) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM hooks WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, `UPDATE deliveries SET state = 'failed', last_error = 'hook removed', finished_at = $1,
			lease_expires = NULL WHERE kind = 'hook' AND hook_id = $2 AND state IN ('pending', 'sending')`, now(), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete hook %d: %w", id, translate(err))
	}
	return nil
}

// LatestBuild returns the newest build of repo on branch in one of
// statuses, below before.
func (s *Store) LatestBuild(ctx context.Context, repo, branch string, before int64, statuses ...string) (*store.Build, error) {
	q := buildSelect(false) + ` WHERE r.name = $1 AND b.branch = $2 AND b.status = ANY($3)`
	args := []any{repo, branch, labels(statuses)}
	if before > 0 {
		q += ` AND b.id < $4`
		args = append(args, before)
	}
	q += ` ORDER BY b.id DESC LIMIT 1`
	b, err := scanBuild(s.pool.QueryRow(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("latest build of %s on %s: %w", repo, branch, translate(err))
	}
	return b, nil
}

// SetForgeDeployment records the forge's ID of a deployment, once.
func (s *Store) SetForgeDeployment(ctx context.Context, id, forgeID int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO forge_deployments (deployment_id, forge_id, created_at) VALUES ($1, $2, $3)`,
		id, forgeID, now())
	if err != nil {
		return fmt.Errorf("record the forge's deployment of deployment %d: %w", id, translate(err))
	}
	return nil
}

// ForgeDeployment returns the forge's ID of a deployment.
func (s *Store) ForgeDeployment(ctx context.Context, id int64) (int64, error) {
	var forgeID int64
	if err := s.pool.QueryRow(ctx, `SELECT forge_id FROM forge_deployments WHERE deployment_id = $1`, id).Scan(&forgeID); err != nil {
		return 0, fmt.Errorf("the forge's deployment of deployment %d: %w", id, translate(err))
	}
	return forgeID, nil
}
