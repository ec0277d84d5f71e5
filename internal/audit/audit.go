// Package audit checks the audit log: it walks the hash chain the store
// keeps (store.AuditLog, store.AuditHash) and names the first entry that
// was altered or removed. It does not record acts (the HTTP faces do,
// through the store) and it needs no secret: anyone who can read the log
// can check it.
//
// What the chain alone cannot show is the removal of the newest entries:
// what is left is a valid, shorter chain. An Anchor, the newest entry's
// sequence number and hash as an earlier Verify reported them, closes that
// gap: a later Verify given it checks that the entry is still there with
// the same hash.
package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/gantry-ci/gantry/internal/store"
)

// Chain reads the audit log oldest first: up to limit entries with Seq >
// after. store.AuditLog's AuditChain method is one.
type Chain func(ctx context.Context, after int64, limit int) ([]*store.AuditEntry, error)

// Anchor is an entry's sequence number and hash, written SEQ:HEX.
type Anchor struct {
	Seq  int64
	Hash []byte
}

func (a Anchor) String() string { return fmt.Sprintf("%d:%x", a.Seq, a.Hash) }

// ParseAnchor reads an Anchor as String writes it.
func ParseAnchor(s string) (Anchor, error) {
	seqText, hashText, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 {
		return Anchor{}, fmt.Errorf("anchor %q: want SEQ:HASH, SEQ a positive number", s)
	}
	hash, err := hex.DecodeString(hashText)
	if err != nil || len(hash) != 32 {
		return Anchor{}, fmt.Errorf("anchor %q: the hash must be 64 hex digits", s)
	}
	return Anchor{Seq: seq, Hash: hash}, nil
}

// Problem is the first break Verify found.
type Problem struct {
	// Seq is the first entry that was altered or removed.
	Seq int64
	// What says what is wrong, naming the entries.
	What string
}

// Report is what Verify found.
type Report struct {
	// Checked counts the entries found intact, from the first on, up to
	// the first problem.
	Checked int64
	// Head is the newest intact entry: an Anchor for a later Verify. Its
	// Seq is 0 when there is none.
	Head Anchor
	// Problem is nil when the whole chain is intact.
	Problem *Problem
}

// pageSize is how many entries Verify reads at a time.
const pageSize = 1000

// Verify walks the chain from entry 1 and stops at the first entry that
// was altered (its fields do not match its hash, or it was rehashed and
// the next entry names another hash as its predecessor) or removed (a gap
// in the sequence numbers). With anchor, it also checks that the entry it
// names is there with its hash. An error means the chain could not be
// read; a broken chain is a Report with a Problem.
func Verify(ctx context.Context, chain Chain, anchor *Anchor) (*Report, error) {
	rep := &Report{}
	var before Anchor // the entry before rep.Head
	for {
		page, err := chain(ctx, rep.Head.Seq, pageSize)
		if err != nil {
			return nil, fmt.Errorf("verify audit log: %w", err)
		}
		for _, e := range page {
			if p := check(e, rep.Head.Seq, rep.Head.Hash, anchor); p != nil {
				if p.Seq == rep.Head.Seq {
					// The head itself was altered after all.
					rep.Checked--
					rep.Head = before
				}
				rep.Problem = p
				return rep, nil
			}
			rep.Checked++
			before, rep.Head = rep.Head, Anchor{Seq: e.Seq, Hash: e.Hash}
		}
		if len(page) < pageSize {
			break
		}
	}
	if anchor != nil && anchor.Seq > rep.Head.Seq {
		end := fmt.Sprintf("the log ends at entry %d", rep.Head.Seq)
		if rep.Head.Seq == 0 {
			end = "the log is empty"
		}
		removed := fmt.Sprintf("entries %d to %d were removed", rep.Head.Seq+1, anchor.Seq)
		if anchor.Seq == rep.Head.Seq+1 {
			removed = fmt.Sprintf("entry %d was removed", anchor.Seq)
		}
		rep.Problem = &Problem{Seq: rep.Head.Seq + 1, What: fmt.Sprintf("%s but the anchor names entry %d: %s", end, anchor.Seq, removed)}
	}
	return rep, nil
}

// check returns what is wrong with e, which follows the intact entry
// prevSeq of hash prevHash (0 and nil before the first).
func check(e *store.AuditEntry, prevSeq int64, prevHash []byte, anchor *Anchor) *Problem {
	switch {
	case e.Seq > prevSeq+1:
		what := fmt.Sprintf("entry %d was removed", prevSeq+1)
		if e.Seq > prevSeq+2 {
			what = fmt.Sprintf("entries %d to %d were removed", prevSeq+1, e.Seq-1)
		}
		if prevSeq == 0 {
			what += fmt.Sprintf(": the log starts at entry %d", e.Seq)
		} else {
			what += fmt.Sprintf(": the log goes from entry %d to entry %d", prevSeq, e.Seq)
		}
		return &Problem{Seq: prevSeq + 1, What: what}
	case e.Seq != prevSeq+1:
		// Not from a store that keeps seq unique and ordered.
		return &Problem{Seq: e.Seq, What: fmt.Sprintf("entry %d comes after entry %d", e.Seq, prevSeq)}
	}
	if !bytes.Equal(store.AuditHash(e), e.Hash) {
		return &Problem{Seq: e.Seq, What: fmt.Sprintf("entry %d was altered: its fields do not match its hash", e.Seq)}
	}
	if !bytes.Equal(e.PrevHash, prevHash) {
		if prevSeq == 0 {
			return &Problem{Seq: e.Seq, What: fmt.Sprintf("entry %d was altered: the first entry names a previous hash", e.Seq)}
		}
		return &Problem{Seq: prevSeq, What: fmt.Sprintf(
			"entry %d was altered and its hash recomputed: entry %d names %x as the hash of entry %d, which is now %x",
			prevSeq, e.Seq, e.PrevHash, prevSeq, prevHash)}
	}
	if anchor != nil && anchor.Seq == e.Seq && !bytes.Equal(anchor.Hash, e.Hash) {
		return &Problem{Seq: e.Seq, What: fmt.Sprintf(
			"entry %d does not match the anchor: its hash is %x, the anchor's %x: the log was rewritten up to entry %d",
			e.Seq, e.Hash, anchor.Hash, e.Seq)}
	}
	return nil
}
