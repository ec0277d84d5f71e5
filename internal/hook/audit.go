package hook

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// audit records a build a webhook created as an act of the forge: actor
// forge:NAME, from the request's remote host. A redelivery that finds the
// build made creates nothing and is not recorded.
func (h *Handler) audit(r *http.Request, forgeName string, b *store.Build) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	detail := map[string]string{"repo": b.Repo, "number": strconv.FormatInt(b.Number, 10), "event": b.Event, "commit": b.Commit}
	for k, v := range map[string]string{"branch": b.Branch, "tag": b.Tag, "delivery": b.DeliveryID, "author": b.Author} {
		if v != "" {
			detail[k] = v
		}
	}
	if b.PullRequest != 0 {
		detail["pull_request"] = strconv.Itoa(b.PullRequest)
	}
	e := &store.AuditEntry{Actor: "forge:" + forgeName, Address: host, Action: "build.trigger",
		Object: fmt.Sprintf("build:%d", b.ID), Detail: detail}
	e.Sanitize() // the forge's words: a branch or author may be anything
	// The build is made: record it even when the forge has hung up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if err := h.Store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("build %d of %s was created but not recorded: %w", b.ID, b.Repo, err)
	}
	return nil
}
