package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/jackc/pgx/v5"
)

// AppendAudit appends e as the newest audit entry. Its transaction first
// locks audit_log in EXCLUSIVE mode, which waits for any other append to
// commit and lets reads go on; the newest row it then reads (READ
// COMMITTED takes a new snapshot per statement) is the newest there is,
// so appends from several servers queue and the chain never forks. The
// primary key on seq would refuse a fork in any case.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	if err := store.CheckAuditEntry(e); err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, err)
	}
	detail, err := auditDetailJSON(e.Detail)
	if err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, err)
	}
	out := *e
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE audit_log IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var seq int64
		var prev []byte
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		out.Seq, out.PrevHash, out.At = seq+1, blob(prev), now()
		out.Hash = store.AuditHash(&out)
		_, err = tx.Exec(ctx, `INSERT INTO audit_log (seq, at, actor, address, action, object, reason, detail, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			out.Seq, out.At, out.Actor, out.Address, out.Action, out.Object, out.Reason, detail, out.PrevHash, out.Hash)
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, translate(err))
	}
	*e = out
	return nil
}

// auditDetailJSON is detail as stored: a JSON object, {} when empty.
func auditDetailJSON(detail map[string]string) (string, error) {
	if len(detail) == 0 {
		return "{}", nil
	}
	data, err := json.Marshal(detail)
	return string(data), err
}

const auditSelect = `SELECT seq, at, actor, address, action, object, reason, detail, prev_hash, hash FROM audit_log`

func scanAudit(sc pgx.Row) (*store.AuditEntry, error) {
	e := &store.AuditEntry{}
	var detail string
	if err := sc.Scan(&e.Seq, ts(&e.At), &e.Actor, &e.Address, &e.Action, &e.Object, &e.Reason, &detail, &e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	if detail != "{}" {
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("audit entry %d: detail: %w", e.Seq, err)
		}
	}
	return e, nil
}

// AuditEntries returns the entries that match f, newest first.
func (s *Store) AuditEntries(ctx context.Context, f store.AuditFilter) ([]*store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	for _, c := range []struct{ col, val string }{{"actor", f.Actor}, {"action", f.Action}, {"object", f.Object}} {
		if c.val != "" {
			add(c.col+" = $%d", c.val)
		}
	}
	if !f.Since.IsZero() {
		add("at >= $%d", f.Since)
	}
	q := auditSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY seq DESC LIMIT $%d", len(args))
	out, err := s.queryAudit(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit entries: %w", err)
	}
	return out, nil
}

// AuditChain returns up to limit entries with Seq > after, oldest first.
func (s *Store) AuditChain(ctx context.Context, after int64, limit int) ([]*store.AuditEntry, error) {
	if limit <= 0 {
		limit = 1000
	}
	out, err := s.queryAudit(ctx, auditSelect+` WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit chain after %d: %w", after, err)
	}
	return out, nil
}

func (s *Store) queryAudit(ctx context.Context, q string, args ...any) ([]*store.AuditEntry, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.AuditEntry
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
