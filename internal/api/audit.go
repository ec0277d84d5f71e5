package api

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gantry-ci/gantry/internal/audit"
	"github.com/gantry-ci/gantry/internal/store"
)

// ReasonHeader is the request header that says why a request is made;
// the audit log records it with the act. Any request may carry it (`gantry
// --reason`); on a request that changes nothing it is checked and ignored.
const ReasonHeader = "Gantry-Reason"

// MaxReason is the longest reason accepted, in characters.
const MaxReason = 500

// CheckReason returns why reason cannot be recorded, or nil: it must be
// UTF-8 text of at most MaxReason characters without control characters
// (so also without line breaks).
func CheckReason(reason string) error {
	switch {
	case !utf8.ValidString(reason):
		return fmt.Errorf("reason is not UTF-8 text")
	case utf8.RuneCountInString(reason) > MaxReason:
		return fmt.Errorf("reason is %d characters long: at most %d", utf8.RuneCountInString(reason), MaxReason)
	}
	for i, r := range reason {
		if unicode.IsControl(r) {
			return fmt.Errorf("reason has a control character (%U) at byte %d: want one line of text", r, i)
		}
	}
	return nil
}

// checkReasonHeader refuses a request whose reason cannot be recorded,
// before it changes anything.
func checkReasonHeader(r *http.Request) error {
	if err := CheckReason(r.Header.Get(ReasonHeader)); err != nil {
		return badRequestf("%s header: %v", ReasonHeader, err)
	}
	return nil
}

// audit records in the audit log an act the request made, once it is
// done: the request's identity as the actor, its remote host, and its
// reason (the Gantry-Reason header), with action (a dotted name such as
// repo.add), object (typed: repo:OWNER/NAME, build:ID, lock:NAME,
// token:ID) and detail (further facts, never a secret). Every handler
// that changes something calls it before it answers.
//
// An error means the act was done but not recorded: the handler returns
// it, so the client gets a 500 rather than a success the log does not
// show, and the server's log names the act.
func (h *Handler) audit(r *http.Request, action, object string, detail map[string]string) error {
	e := &store.AuditEntry{Actor: actor(identityOf(r.Context())), Address: remoteHost(r), Action: action,
		Object: object, Reason: r.Header.Get(ReasonHeader), Detail: detail}
	e.Sanitize() // names from a path or a body may hold any byte
	// The act is done: record it even when the client has gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if err := h.Store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("%s %s by %s was done but not recorded: %w", action, object, e.Actor, err)
	}
	return nil
}

// AuditEntry is an audit log entry as the API shows it; the hashes are
// hex.
type AuditEntry struct {
	Seq      int64             `json:"seq"`
	At       time.Time         `json:"at"`
	Actor    string            `json:"actor"`
	Address  string            `json:"address"`
	Action   string            `json:"action"`
	Object   string            `json:"object"`
	Reason   string            `json:"reason"`
	Detail   map[string]string `json:"detail"`
	PrevHash string            `json:"prev_hash"`
	Hash     string            `json:"hash"`
}

// AuditVerification is the answer of GET /api/v1/audit/verify.
type AuditVerification struct {
	// OK is true when every entry is intact (and the anchor, if given,
	// matches).
	OK bool `json:"ok"`
	// Checked counts the intact entries up to the first problem.
	Checked int64 `json:"checked"`
	// HeadSeq and HeadHash name the newest intact entry; together, as
	// SEQ:HASH, they are an anchor for a later check.
	HeadSeq  int64         `json:"head_seq"`
	HeadHash string        `json:"head_hash"`
	Problem  *AuditProblem `json:"problem,omitempty"`
}

// AuditProblem is the first entry that was altered or removed.
type AuditProblem struct {
	Seq     int64  `json:"seq"`
	Message string `json:"message"`
}

// AuditQuery selects audit entries; empty fields select everything.
type AuditQuery struct {
	Actor, Action, Object string
	Since                 time.Time
	Limit                 int
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object"), Limit: 50}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return badRequestf("since %q: want an RFC 3339 time such as 2025-01-02T15:04:05Z", s)
		}
		f.Since = t
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequestf("limit %q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	entries, err := h.Store.AuditEntries(r.Context(), f)
	if err != nil {
		return err
	}
	out := []AuditEntry{}
	for _, e := range entries {
		d := e.Detail
		if d == nil {
			d = map[string]string{}
		}
		out = append(out, AuditEntry{Seq: e.Seq, At: e.At.UTC(), Actor: e.Actor, Address: e.Address, Action: e.Action,
			Object: e.Object, Reason: e.Reason, Detail: d, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)})
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	var anchor *audit.Anchor
	if s := r.URL.Query().Get("anchor"); s != "" {
		a, err := audit.ParseAnchor(s)
		if err != nil {
			return badRequestf("%v", err)
		}
		anchor = &a
	}
	rep, err := audit.Verify(r.Context(), h.Store.AuditChain, anchor)
	if err != nil {
		return err
	}
	out := AuditVerification{OK: rep.Problem == nil, Checked: rep.Checked, HeadSeq: rep.Head.Seq, HeadHash: hex.EncodeToString(rep.Head.Hash)}
	if p := rep.Problem; p != nil {
		out.Problem = &AuditProblem{Seq: p.Seq, Message: p.What}
	}
	return WriteJSON(w, http.StatusOK, out)
}

// Audit lists audit log entries, newest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	v := url.Values{}
	for k, s := range map[string]string{"actor": q.Actor, "action": q.Action, "object": q.Object} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []AuditEntry
	return out, c.do(ctx, "GET", "/api/v1/audit?"+v.Encode(), nil, &out)
}

// VerifyAudit has the server check the audit log's chain; anchor, SEQ:HASH
// from an earlier check, may be empty.
func (c *Client) VerifyAudit(ctx context.Context, anchor string) (*AuditVerification, error) {
	path := "/api/v1/audit/verify"
	if anchor != "" {
		path += "?anchor=" + url.QueryEscape(anchor)
	}
	var out AuditVerification
	return &out, c.do(ctx, "GET", path, nil, &out)
}
