package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditEntry is one act in the audit log: who did what to which object,
// when, from where and why. Entries are chained: each carries the hash of
// the one before, and its own hash covers every field (AuditHash), so an
// entry edited or removed in the database breaks the chain at that point.
type AuditEntry struct {
	// Seq numbers the entries from 1 without gaps; the store assigns it.
	Seq int64
	// At is when the entry was appended, to the microsecond; the store
	// sets it.
	At time.Time
	// Actor is who acted: a user's name, "forge:NAME" for a webhook, or
	// "token:NAME#ID" for an API token of no user.
	Actor string
	// Address is the host the request came from.
	Address string
	// Action is a dotted name: repo.add, build.cancel, token.revoke.
	Action string
	// Object is what was acted on, typed: repo:acme/web, build:42.
	Object string
	// Reason is what the actor said the act was for; may be empty.
	Reason string
	// Detail holds further facts about the act (never a secret).
	Detail map[string]string
	// PrevHash is the Hash of entry Seq-1, empty for entry 1; the store
	// sets it.
	PrevHash []byte
	// Hash is AuditHash of the entry; the store sets it.
	Hash []byte
}

// AuditFilter selects audit entries; empty fields select everything.
type AuditFilter struct {
	Actor  string // exact
	Action string // exact
	Object string // exact
	// Since selects entries appended at or after it.
	Since time.Time
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// AuditLog is the append-only, hash-chained record of acts. It has no
// method to change or remove an entry.
type AuditLog interface {
	// AppendAudit appends e as the newest entry: inside one transaction it
	// sets e.Seq to one more than the newest entry's (1 for the first),
	// e.PrevHash to that entry's Hash, e.At to now, and e.Hash to
	// AuditHash(e). Appends from any number of servers on one database
	// are serialized, so the chain never forks and Seq has no gaps.
	// CheckAuditEntry's error, and nothing stored, for an entry that would
	// not read back exactly.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// AuditEntries returns the entries that match f, newest first.
	AuditEntries(ctx context.Context, f AuditFilter) ([]*AuditEntry, error)
	// AuditChain returns up to limit entries with Seq > after, oldest
	// first: the chain as stored, for checking it. A limit of 0 or less
	// means 1000.
	AuditChain(ctx context.Context, after int64, limit int) ([]*AuditEntry, error)
}

// auditDomain starts every hashed encoding: it names the format, so that
// a later format cannot produce the same bytes for another entry.
const auditDomain = "gantry-audit-v1\n"

// AuditHash is the SHA-256 of the canonical encoding of every field of e
// but Hash. The encoding, in this order:
//
//	"gantry-audit-v1\n"
//	Seq                  8 bytes, big-endian
//	At                   8 bytes, big-endian: microseconds since 1970 UTC
//	Actor, Address, Action, Object, Reason: each a string
//	len(Detail)          8 bytes, big-endian
//	each key and its value, keys in byte order: strings
//	PrevHash             a string of its bytes
//
// where a string is its length in bytes (8 bytes, big-endian) followed by
// its bytes. Lengths make the encoding unambiguous: two entries that
// differ in any field encode differently. It is computed in Go, not SQL,
// so both stores chain alike and a verifier needs no database.
func AuditHash(e *AuditEntry) []byte {
	h := sha256.New()
	writeAudit(h, e)
	return h.Sum(nil)
}

// writeAudit writes the canonical encoding of e to w.
func writeAudit(w io.Writer, e *AuditEntry) {
	var n [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		w.Write(n[:])
	}
	str := func(s string) {
		num(uint64(len(s)))
		w.Write([]byte(s))
	}
	w.Write([]byte(auditDomain))
	num(uint64(e.Seq))
	num(uint64(e.At.UnixMicro()))
	str(e.Actor)
	str(e.Address)
	str(e.Action)
	str(e.Object)
	str(e.Reason)
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	num(uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Detail[k])
	}
	str(string(e.PrevHash))
}

// ErrBadAuditEntry is CheckAuditEntry's error.
var ErrBadAuditEntry = errors.New("bad audit entry")

// CheckAuditEntry returns an error wrapping ErrBadAuditEntry when a text
// field of e (Detail's keys and values included) is not valid UTF-8 or
// holds a NUL byte, which a store could not keep exactly (so the hash
// would not match what is read back), or when Actor or Action is empty.
func CheckAuditEntry(e *AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("%w: actor and action are required", ErrBadAuditEntry)
	}
	check := func(field, s string) error {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return fmt.Errorf("%w: %s %q is not text without NUL bytes", ErrBadAuditEntry, field, s)
		}
		return nil
	}
	for _, f := range [][2]string{{"actor", e.Actor}, {"address", e.Address}, {"action", e.Action}, {"object", e.Object}, {"reason", e.Reason}} {
		if err := check(f[0], f[1]); err != nil {
			return err
		}
	}
	for k, v := range e.Detail {
		if err := check("detail key", k); err != nil {
			return err
		}
		if err := check("detail "+k, v); err != nil {
			return err
		}
	}
	return nil
}

// Sanitize makes e's text recordable: invalid UTF-8 and NUL bytes, which
// CheckAuditEntry refuses, become U+FFFD. Callers that record text a
// stranger chose (a branch name from a webhook) call it before
// AppendAudit. Detail is replaced by a sanitized copy.
func (e *AuditEntry) Sanitize() {
	clean := func(s string) string {
		return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	for _, p := range []*string{&e.Actor, &e.Address, &e.Action, &e.Object, &e.Reason} {
		*p = clean(*p)
	}
	if e.Detail != nil {
		d := make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			d[clean(k)] = clean(v)
		}
		e.Detail = d
	}
}
