package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// AppendAudit appends e as the newest audit entry. The write transaction
// is BEGIN IMMEDIATE, which holds the file's write lock from its start:
// the newest entry it reads is the newest there is, also when a second
// process writes to the same file, so the chain never forks.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	if err := store.CheckAuditEntry(e); err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, err)
	}
	detail, err := auditDetailJSON(e.Detail)
	if err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, err)
	}
	out := *e
	err = s.write(ctx, func(tx *sql.Tx) error {
		var seq int64
		var prev []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		out.Seq, out.PrevHash = seq+1, blob(prev)
		// Whole microseconds, as store.AuditHash encodes At.
		out.At = now().Truncate(time.Microsecond)
		out.Hash = store.AuditHash(&out)
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_log (seq, at, actor, address, action, object, reason, detail, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			out.Seq, nanos(out.At), out.Actor, out.Address, out.Action, out.Object, out.Reason, detail, out.PrevHash, out.Hash)
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

func scanAudit(sc interface{ Scan(...any) error }) (*store.AuditEntry, error) {
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
	for _, c := range []struct{ col, val string }{{"actor", f.Actor}, {"action", f.Action}, {"object", f.Object}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, f.Since.UnixNano())
	}
	q := auditSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit)
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
	out, err := s.queryAudit(ctx, auditSelect+` WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit chain after %d: %w", after, err)
	}
	return out, nil
}

func (s *Store) queryAudit(ctx context.Context, q string, args ...any) ([]*store.AuditEntry, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
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
