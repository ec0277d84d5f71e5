package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/audit"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/postgres"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
	"github.com/jackc/pgx/v5/pgxpool"
)

// db is a store on a real database, with a way around it: raw SQL, as
// someone with the database file or the database's owner role could run.
type db struct {
	name string
	// open opens another Store on the same database.
	open func(t *testing.T) store.Store
	// exec runs SQL with ? placeholders directly on the database.
	exec func(t *testing.T, q string, args ...any) error
	// unprotect drops or disables the triggers that refuse changes.
	unprotect string
}

func databases(t *testing.T) []db {
	path := filepath.Join(t.TempDir(), "gantry.db")
	url := pgtest.URL(t)
	return []db{
		{
			name: "sqlite",
			open: func(t *testing.T) store.Store {
				s, err := sqlite.Open(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			},
			exec: func(t *testing.T, q string, args ...any) error {
				c, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_, err = c.Exec(q, args...)
				return err
			},
			unprotect: "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
		},
		{
			name: "postgres",
			open: func(t *testing.T) store.Store {
				s, err := postgres.Open(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			},
			exec: func(t *testing.T, q string, args ...any) error {
				for i := 1; strings.Contains(q, "?"); i++ {
					q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
				}
				// A pool, which understands the URL's pool_max_conns.
				c, err := pgxpool.New(t.Context(), url)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_, err = c.Exec(t.Context(), q, args...)
				return err
			},
			unprotect: "ALTER TABLE audit_log DISABLE TRIGGER USER",
		},
	}
}

// eachDatabase runs fn on SQLite and on PostgreSQL.
func eachDatabase(t *testing.T, fn func(t *testing.T, d db)) {
	t.Parallel()
	for _, d := range databases(t) {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// fill appends n entries and returns them, oldest first.
func fill(t *testing.T, s store.Store, n int) []*store.AuditEntry {
	t.Helper()
	var out []*store.AuditEntry
	for i := range n {
		e := &store.AuditEntry{Actor: "token:admin#1", Address: "127.0.0.1", Action: "lock.add",
			Object: fmt.Sprintf("lock:l%d", i+1), Reason: "test", Detail: map[string]string{"capacity": "1"}}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func verify(t *testing.T, s store.Store, anchor *audit.Anchor) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(t.Context(), s.AuditChain, anchor)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	return rep
}

// wantProblem fails unless rep names entry seq with a message that holds
// want, after checked intact entries.
func wantProblem(t *testing.T, rep *audit.Report, seq, checked int64, want string) {
	t.Helper()
	if rep.Problem == nil {
		t.Fatalf("Verify() found no problem (checked %d), want one at entry %d: %q", rep.Checked, seq, want)
	}
	if rep.Problem.Seq != seq || !strings.Contains(rep.Problem.What, want) || rep.Checked != checked || rep.Head.Seq != checked {
		t.Errorf("Verify() = problem at %d %q after %d checked (head %d), want at %d %q after %d",
			rep.Problem.Seq, rep.Problem.What, rep.Checked, rep.Head.Seq, seq, want, checked)
	}
}

func TestVerifyIntact(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		if rep := verify(t, s, nil); rep.Problem != nil || rep.Checked != 0 || rep.Head.Seq != 0 {
			t.Errorf("Verify(empty log) = %+v, want nothing checked and no problem", rep)
		}
		entries := fill(t, s, 5)
		rep := verify(t, s, nil)
		if rep.Problem != nil || rep.Checked != 5 || rep.Head.Seq != 5 || !bytes.Equal(rep.Head.Hash, entries[4].Hash) {
			t.Errorf("Verify() = %+v, %v; want 5 checked, head entry 5 with hash %x", rep, rep.Problem, entries[4].Hash)
		}
		// The head is an anchor a later run checks against.
		if rep := verify(t, s, &rep.Head); rep.Problem != nil {
			t.Errorf("Verify(anchor = head) = %+v", rep.Problem)
		}
	})
}

// TestVerifyCatchesEditedRow edits an entry directly in the database:
// first the database refuses, then with its triggers out of the way the
// edit is made, and Verify names the entry.
func TestVerifyCatchesEditedRow(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		fill(t, s, 5)
		if err := d.exec(t, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3"); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("UPDATE of an audit entry = %v, want it refused as append-only", err)
		}
		if err := d.exec(t, "DELETE FROM audit_log WHERE seq = 3"); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("DELETE of an audit entry = %v, want it refused as append-only", err)
		}
		if rep := verify(t, s, nil); rep.Problem != nil {
			t.Fatalf("after refused edits Verify() = %+v", rep.Problem)
		}
		if err := d.exec(t, d.unprotect); err != nil {
			t.Fatal(err)
		}
		if err := d.exec(t, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3"); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, verify(t, s, nil), 3, 2, "entry 3 was altered: its fields do not match its hash")
	})
}

func TestVerifyCatchesEditedDetail(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		fill(t, s, 4)
		if err := d.exec(t, d.unprotect); err != nil {
			t.Fatal(err)
		}
		if err := d.exec(t, `UPDATE audit_log SET detail = '{"capacity":"9"}' WHERE seq = 1`); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, verify(t, s, nil), 1, 0, "entry 1 was altered")
	})
}

func TestVerifyCatchesDeletedRow(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		fill(t, s, 5)
		if err := d.exec(t, d.unprotect); err != nil {
			t.Fatal(err)
		}
		if err := d.exec(t, "DELETE FROM audit_log WHERE seq = 3"); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, verify(t, s, nil), 3, 2, "entry 3 was removed: the log goes from entry 2 to entry 4")
	})
}

// TestVerifyCatchesRehashedRow edits an entry and stores the hash of the
// edited fields, as someone who knows the encoding would: the next entry
// still names the old hash.
func TestVerifyCatchesRehashedRow(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		entries := fill(t, s, 5)
		if err := d.exec(t, d.unprotect); err != nil {
			t.Fatal(err)
		}
		e := *entries[2]
		e.Actor = "token:someone-else#9"
		if err := d.exec(t, "UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 3", e.Actor, store.AuditHash(&e)); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, verify(t, s, nil), 3, 2, "entry 3 was altered and its hash recomputed")
	})
}

// TestVerifyAnchor shows what the chain alone cannot see, the removal of
// the newest entries or a rewrite of everything after an edit, and that
// an anchor from an earlier run sees both.
func TestVerifyAnchor(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		s := d.open(t)
		entries := fill(t, s, 6)
		head := verify(t, s, nil).Head
		if err := d.exec(t, d.unprotect); err != nil {
			t.Fatal(err)
		}
		if err := d.exec(t, "DELETE FROM audit_log WHERE seq >= 5"); err != nil {
			t.Fatal(err)
		}
		if rep := verify(t, s, nil); rep.Problem != nil || rep.Checked != 4 {
			t.Errorf("without an anchor, Verify() after removing the newest entries = %+v %v; want 4 intact (the chain cannot tell)", rep, rep.Problem)
		}
		wantProblem(t, verify(t, s, &head), 5, 4, "the log ends at entry 4 but the anchor names entry 6: entries 5 to 6 were removed")

		// Rewrite entries 2 to 4, each rehashed and relinked.
		prev := entries[0].Hash
		for seq := int64(2); seq <= 4; seq++ {
			e := *entries[seq-1]
			e.Reason, e.PrevHash = "rewritten", prev
			e.Hash = store.AuditHash(&e)
			if err := d.exec(t, "UPDATE audit_log SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?", e.Reason, e.PrevHash, e.Hash, seq); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash
		}
		if rep := verify(t, s, nil); rep.Problem != nil {
			t.Errorf("without an anchor, Verify() after a rewrite = %v; want none (the chain cannot tell)", rep.Problem)
		}
		old := audit.Anchor{Seq: 3, Hash: entries[2].Hash}
		wantProblem(t, verify(t, s, &old), 3, 2, "entry 3 does not match the anchor")
	})
}

// TestAppendFromTwoStores appends concurrently through two stores on one
// database, as two servers would: one chain, no gaps, every entry once.
func TestAppendFromTwoStores(t *testing.T) {
	eachDatabase(t, func(t *testing.T, d db) {
		stores := []store.Store{d.open(t), d.open(t)}
		const perStore, writers = 40, 4
		var wg sync.WaitGroup
		errs := make(chan error, len(stores)*perStore)
		for si, s := range stores {
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perStore / writers {
						e := &store.AuditEntry{Actor: fmt.Sprintf("server-%d", si), Action: "lock.add", Object: fmt.Sprintf("lock:%d-%d-%d", si, w, i)}
						if err := s.AppendAudit(context.Background(), e); err != nil {
							errs <- err
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("AppendAudit from two stores = %v", err)
		}
		for i, s := range stores {
			rep := verify(t, s, nil)
			if rep.Problem != nil || rep.Checked != int64(len(stores)*perStore) {
				t.Errorf("store %d: Verify() = %d checked, %v; want %d and no problem", i, rep.Checked, rep.Problem, len(stores)*perStore)
			}
		}
		chain, err := stores[0].AuditChain(t.Context(), 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range chain {
			if seen[e.Object] {
				t.Errorf("%s recorded twice", e.Object)
			}
			seen[e.Object] = true
		}
	})
}

// memChain is a chain in memory, made as a store makes it.
type memChain []*store.AuditEntry

func newMemChain(n int) memChain {
	var c memChain
	var prev []byte
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		e := &store.AuditEntry{Seq: int64(i + 1), At: at.Add(time.Duration(i) * time.Second), Actor: "token:admin#1",
			Action: "lock.add", Object: fmt.Sprintf("lock:%d", i), PrevHash: prev}
		e.Hash = store.AuditHash(e)
		prev = e.Hash
		c = append(c, e)
	}
	return c
}

func (c memChain) read(_ context.Context, after int64, limit int) ([]*store.AuditEntry, error) {
	var out []*store.AuditEntry
	for _, e := range c {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (c memChain) without(seqs ...int64) memChain {
	var out memChain
	for _, e := range c {
		keep := true
		for _, s := range seqs {
			keep = keep && e.Seq != s
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// TestVerifyCases walks chains longer than a page, broken in each way.
func TestVerifyCases(t *testing.T) {
	t.Parallel()
	full := newMemChain(2500)
	firstWithPrev := newMemChain(3)
	firstWithPrev[0] = &store.AuditEntry{Seq: 1, At: firstWithPrev[0].At, Actor: "a", Action: "b", PrevHash: []byte("x")}
	firstWithPrev[0].Hash = store.AuditHash(firstWithPrev[0])
	for _, tt := range []struct {
		name         string
		chain        memChain
		anchor       *audit.Anchor
		seq, checked int64
		want         string
	}{
		{name: "intact over pages", chain: full, checked: 2500},
		{name: "removed after a page", chain: full.without(1500), seq: 1500, checked: 1499, want: "entry 1500 was removed: the log goes from entry 1499 to entry 1501"},
		{name: "removed at a page boundary", chain: full.without(1001), seq: 1001, checked: 1000, want: "entry 1001 was removed"},
		{name: "several removed", chain: full.without(10, 11, 12), seq: 10, checked: 9, want: "entries 10 to 12 were removed: the log goes from entry 9 to entry 13"},
		{name: "first removed", chain: full.without(1), seq: 1, checked: 0, want: "entry 1 was removed: the log starts at entry 2"},
		{name: "first two removed", chain: full.without(1, 2), seq: 1, checked: 0, want: "entries 1 to 2 were removed: the log starts at entry 3"},
		{name: "first names a previous hash", chain: firstWithPrev, seq: 1, checked: 0, want: "entry 1 was altered: the first entry names a previous hash"},
		{name: "anchor on an empty log", chain: nil, anchor: &audit.Anchor{Seq: 1, Hash: full[0].Hash}, seq: 1, checked: 0, want: "the log is empty but the anchor names entry 1: entry 1 was removed"},
		{name: "anchor matches", chain: full, anchor: &audit.Anchor{Seq: 2000, Hash: full[1999].Hash}, checked: 2500},
		{name: "anchor differs", chain: full, anchor: &audit.Anchor{Seq: 2000, Hash: full[0].Hash}, seq: 2000, checked: 1999, want: "entry 2000 does not match the anchor"},
	} {
		rep, err := audit.Verify(t.Context(), tt.chain.read, tt.anchor)
		if err != nil {
			t.Fatalf("%s: Verify() = %v", tt.name, err)
		}
		if tt.want == "" {
			if rep.Problem != nil || rep.Checked != tt.checked {
				t.Errorf("%s: Verify() = %d checked, %v; want %d and no problem", tt.name, rep.Checked, rep.Problem, tt.checked)
			}
			continue
		}
		if rep.Problem == nil || rep.Problem.Seq != tt.seq || !strings.Contains(rep.Problem.What, tt.want) || rep.Checked != tt.checked {
			t.Errorf("%s: Verify() = %d checked, %+v; want %d checked and a problem at %d: %q", tt.name, rep.Checked, rep.Problem, tt.checked, tt.seq, tt.want)
		}
	}
}

func TestParseAnchor(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 32)
	a, err := audit.ParseAnchor("12:" + hash)
	if err != nil || a.Seq != 12 || hex.EncodeToString(a.Hash) != hash || a.String() != "12:"+hash {
		t.Errorf("ParseAnchor(12:%s) = %v, %v", hash, a, err)
	}
	for _, bad := range []string{"", "12", "12:", "0:" + hash, "-1:" + hash, "x:" + hash, "12:" + hash[:62], "12:" + hash + "00", "12:zz" + hash[2:]} {
		if _, err := audit.ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) = nil error, want one", bad)
		}
	}
}
