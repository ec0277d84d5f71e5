package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// The outbox on SQLite: every write runs on the single write connection,
// so a claim reads and changes its rows with no other writer in between,
// and no delivery is claimed twice.

// EnqueueDeliveries stores ds in one transaction; see store.Outbox.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []*store.Delivery) error {
	created := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
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

func enqueue(ctx context.Context, tx *sql.Tx, d *store.Delivery, created time.Time) error {
	state, next, finished := d.State, d.NextAttemptAt, time.Time{}
	if state == "" {
		state = store.DeliveryPending
	}
	if next.IsZero() {
		next = created
	}
	if store.DeliveryFinal(state) {
		finished = created
	}
	headers, err := json.Marshal(headerMap(d.Headers))
	if err != nil {
		return err
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO deliveries (kind, repo_id, build_id, hook_id, forge, event, url, host,
			headers, payload, dedupe_key, coalesce_key, state, attempts, next_attempt_at, claimed_by, lease_token, last_status,
			last_error, created_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, '', 0, ?, ?, ?, ?)
		ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`,
		d.Kind, nullID(d.RepoID), d.BuildID, d.HookID, d.Forge, d.Event, d.URL, d.Host, string(headers), blob(d.Payload),
		nullString(d.DedupeKey), nullString(d.CoalesceKey), state, nanos(next), d.LastStatus, d.LastError,
		nanos(created), nanos(finished)).Scan(&id)
	if err == sql.ErrNoRows {
		d.ID = 0 // a duplicate
		return nil
	}
	if err != nil {
		return err
	}
	d.ID, d.CreatedAt, d.State, d.NextAttemptAt, d.FinishedAt = id, created, state, next, finished
	if d.CoalesceKey != "" {
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = 'superseded', finished_at = ?
			WHERE coalesce_key = ? AND id < ? AND state = 'pending'`, nanos(created), d.CoalesceKey, id)
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

func scanDelivery(sc interface{ Scan(...any) error }) (*store.Delivery, error) {
	d := &store.Delivery{}
	var headers string
	if err := sc.Scan(&d.ID, &d.Kind, &d.RepoID, &d.Repo, &d.BuildID, &d.HookID, &d.Forge, &d.Event, &d.URL, &d.Host,
		&headers, &d.Payload, &d.DedupeKey, &d.CoalesceKey, &d.State, &d.Attempts, ts(&d.NextAttemptAt), &d.ClaimedBy, &d.LeaseToken,
		ts(&d.LeaseExpires), &d.LastStatus, &d.LastError, ts(&d.CreatedAt), ts(&d.FinishedAt)); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(headers), &d.Headers); err != nil {
		return nil, fmt.Errorf("delivery %d: headers: %w", d.ID, err)
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = nil
		t := now()
		n := nanos(t)
		// More candidates than asked for: some may be superseded or wait.
		rows, err := tx.QueryContext(ctx, deliverySelect+`
			WHERE ((d.state = 'pending' AND d.next_attempt_at <= ?1) OR (d.state = 'sending' AND d.lease_expires <= ?1))
			AND NOT EXISTS (SELECT 1 FROM delivery_holds AS h WHERE h.host = d.host AND h.until > ?1)
			AND NOT EXISTS (SELECT 1 FROM deliveries AS o WHERE o.host = d.host AND o.state = 'sending' AND o.lease_expires > ?1)
			ORDER BY d.next_attempt_at, d.id LIMIT ?2`, n, limit*4+16)
		if err != nil {
			return err
		}
		var cands []*store.Delivery
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				rows.Close()
				return err
			}
			cands = append(cands, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		hosts := map[string]bool{} // one per host
		for _, d := range cands {
			if len(out) == limit {
				break
			}
			if hosts[d.Host] {
				continue
			}
			if d.CoalesceKey != "" {
				var newer, busy bool
				if err := tx.QueryRowContext(ctx, `SELECT
					EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = ?1 AND id > ?2),
					EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = ?1 AND id < ?2 AND state = 'sending' AND lease_expires > ?3)`,
					d.CoalesceKey, d.ID, n).Scan(&newer, &busy); err != nil {
					return err
				}
				if newer {
					if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = 'superseded', finished_at = ? WHERE id = ?`, n, d.ID); err != nil {
						return err
					}
					continue
				}
				if busy {
					continue
				}
			}
			d.State, d.Attempts, d.ClaimedBy, d.LeaseToken, d.LeaseExpires = store.DeliverySending, d.Attempts+1, claimer, newLeaseToken(), t.Add(ttl)
			if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = 'sending', attempts = ?, claimed_by = ?, lease_token = ?,
				lease_expires = ? WHERE id = ?`, d.Attempts, claimer, d.LeaseToken, nanos(d.LeaseExpires), d.ID); err != nil {
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		t := now()
		var key string
		err := tx.QueryRowContext(ctx, `SELECT coalesce(coalesce_key, '') FROM deliveries
			WHERE id = ? AND state = 'sending' AND lease_token = ?`, d.ID, d.LeaseToken).Scan(&key)
		if err == sql.ErrNoRows {
			return store.ErrStaleLease
		}
		if err != nil {
			return err
		}
		if state == store.DeliveryPending && key != "" {
			var newer bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE coalesce_key = ? AND id > ?)`,
				key, d.ID).Scan(&newer); err != nil {
				return err
			}
			if newer {
				state = store.DeliverySuperseded
			}
		}
		var finished time.Time
		if store.DeliveryFinal(state) {
			finished = t
		}
		next := d.NextAttemptAt
		if next.IsZero() {
			next = t
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_expires = NULL,
			last_status = ?, last_error = ?, finished_at = ? WHERE id = ?`,
			state, nanos(next), d.LastStatus, d.LastError, nanos(finished), d.ID)
		if err == nil {
			d.FinishedAt, d.NextAttemptAt, d.LeaseExpires = finished, next, time.Time{}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("finish delivery %d: %w", d.ID, translate(err))
	}
	d.State = state
	return nil
}

// ReleaseDeliveries makes what claimer is sending pending and due now.
func (s *Store) ReleaseDeliveries(ctx context.Context, claimer string) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = 'pending', next_attempt_at = ?, lease_expires = NULL,
			last_error = 'interrupted: its server stopped' WHERE state = 'sending' AND claimed_by = ?`, nanos(now()), claimer)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release deliveries of %s: %w", claimer, translate(err))
	}
	return int(n), nil
}

// HoldDeliveries keeps deliveries to host from being claimed until until.
func (s *Store) HoldDeliveries(ctx context.Context, host string, until time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO delivery_holds (host, until) VALUES (?, ?)
			ON CONFLICT (host) DO UPDATE SET until = max(until, excluded.until)`, host, nanos(until))
		return err
	})
	if err != nil {
		return fmt.Errorf("hold deliveries to %s: %w", host, translate(err))
	}
	return nil
}

// Deliveries returns the deliveries that match f, newest first.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.Delivery, error) {
	var where []string
	var args []any
	if f.Repo != "" {
		where, args = append(where, "r.name = ?"), append(args, f.Repo)
	}
	if f.State != "" {
		where, args = append(where, "d.state = ?"), append(args, f.State)
	}
	if f.Kind != "" {
		where, args = append(where, "d.kind = ?"), append(args, f.Kind)
	}
	if f.BuildID != 0 {
		where, args = append(where, "d.build_id = ?"), append(args, f.BuildID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q := deliverySelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY d.id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	defer rows.Close()
	var out []*store.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("deliveries: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	return out, nil
}

// PruneDeliveries removes final deliveries that finished before before.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM deliveries WHERE finished_at IS NOT NULL AND finished_at < ?
			AND state IN ('delivered', 'failed', 'superseded', 'skipped')`, nanos(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM delivery_holds WHERE until < ?`, nanos(before))
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		if h.RepoID != 0 {
			if err := tx.QueryRowContext(ctx, `SELECT name FROM repos WHERE id = ?`, h.RepoID).Scan(&repo); err != nil {
				return err
			}
		}
		return tx.QueryRowContext(ctx, `INSERT INTO hooks (url, secret, events, repo_id, branch, format, created_at, environment)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			h.URL, h.Secret, labelsJSON(h.Events), nullID(h.RepoID), h.Branch, h.Format, nanos(created), h.Environment).Scan(&id)
	})
	if err != nil {
		return fmt.Errorf("create hook: %w", translate(err))
	}
	h.ID, h.CreatedAt, h.Repo = id, created, repo
	return nil
}

const hookSelect = `SELECT h.id, h.url, h.secret, h.events, coalesce(h.repo_id, 0), coalesce(r.name, ''), h.branch, h.format,
	h.created_at, h.environment FROM hooks AS h LEFT JOIN repos AS r ON r.id = h.repo_id`

func scanHook(sc interface{ Scan(...any) error }) (*store.Hook, error) {
	h := &store.Hook{}
	var events string
	if err := sc.Scan(&h.ID, &h.URL, &h.Secret, &events, &h.RepoID, &h.Repo, &h.Branch, &h.Format, ts(&h.CreatedAt), &h.Environment); err != nil {
		return nil, err
	}
	var err error
	h.Events, err = parseLabels(events)
	return h, err
}

// Hook returns a hook, or store.ErrNotFound.
func (s *Store) Hook(ctx context.Context, id int64) (*store.Hook, error) {
	h, err := scanHook(s.r.QueryRowContext(ctx, hookSelect+` WHERE h.id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("hook %d: %w", id, translate(err))
	}
	return h, nil
}

// Hooks returns every hook, oldest first.
func (s *Store) Hooks(ctx context.Context) ([]*store.Hook, error) {
	return queryAll(ctx, s.r, "hooks", scanHook, hookSelect+` ORDER BY h.id`)
}

// DeleteHook removes a hook and fails its unsent deliveries.
func (s *Store) DeleteHook(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM hooks WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = 'failed', last_error = 'hook removed', finished_at = ?,
			lease_expires = NULL WHERE kind = 'hook' AND hook_id = ? AND state IN ('pending', 'sending')`, nanos(now()), id)
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
	if len(statuses) == 0 {
		return nil, fmt.Errorf("latest build of %s: %w", repo, store.ErrNotFound)
	}
	q := buildSelect(false) + ` WHERE r.name = ? AND b.branch = ? AND b.status IN (?` + strings.Repeat(", ?", len(statuses)-1) + `)`
	args := []any{repo, branch}
	for _, st := range statuses {
		args = append(args, st)
	}
	if before > 0 {
		q += ` AND b.id < ?`
		args = append(args, before)
	}
	q += ` ORDER BY b.id DESC LIMIT 1`
	b, err := scanBuild(s.r.QueryRowContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("latest build of %s on %s: %w", repo, branch, translate(err))
	}
	return b, nil
}

// SetForgeDeployment records the forge's ID of a deployment, once.
func (s *Store) SetForgeDeployment(ctx context.Context, id, forgeID int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO forge_deployments (deployment_id, forge_id, created_at) VALUES (?, ?, ?)`,
			id, forgeID, nanos(now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("record the forge's deployment of deployment %d: %w", id, translate(err))
	}
	return nil
}

// ForgeDeployment returns the forge's ID of a deployment.
func (s *Store) ForgeDeployment(ctx context.Context, id int64) (int64, error) {
	var forgeID int64
	if err := s.r.QueryRowContext(ctx, `SELECT forge_id FROM forge_deployments WHERE deployment_id = ?`, id).Scan(&forgeID); err != nil {
		return 0, fmt.Errorf("the forge's deployment of deployment %d: %w", id, translate(err))
	}
	return forgeID, nil
}
