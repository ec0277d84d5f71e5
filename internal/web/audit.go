package web

import (
	"net/http"

	"github.com/gantry-ci/gantry/internal/store"
)

// auditPageSize is how many entries the audit page shows at most.
const auditPageSize = 200

type auditData struct {
	base
	Actor, Action, Object string
	Entries               []*store.AuditEntry
	// More says there may be older entries than those shown.
	More bool
}

// audit shows the audit log, newest first, filtered by actor, action and
// object: to admins, as GET /api/v1/audit.
func (h *Handler) audit(w http.ResponseWriter, r *http.Request, s *session) error {
	if !s.id.Admin() {
		return errForbidden(s.id.User() + " may not see the audit log: it needs an admin")
	}
	q := r.URL.Query()
	d := auditData{base: baseOf(s, "Audit log", "/audit"), Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object")}
	entries, err := h.Store.AuditEntries(r.Context(), store.AuditFilter{Actor: d.Actor, Action: d.Action, Object: d.Object,
		Limit: auditPageSize + 1})
	if err != nil {
		return err
	}
	if len(entries) > auditPageSize {
		entries, d.More = entries[:auditPageSize], true
	}
	d.Entries = entries
	return h.render(w, http.StatusOK, "audit", "layout", d)
}
