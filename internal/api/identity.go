package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/store"
)

// Identity is who a request of another HTTP face (the web UI) acts for,
// with the very identity and role logic the API's routes use: a page shows
// a button exactly when the API would let the same user make the call.
type Identity struct{ id *identity }

// User is the user's name.
func (i *Identity) User() string { return i.id.User }

// Admin reports whether the user is an admin (every role on every repo).
func (i *Identity) Admin() bool { return i.id.Admin }

// TokenID is the ID of the API token the user signed in with.
func (i *Identity) TokenID() int64 { return i.id.Token.ID }

// Can reports whether the user has at least role on repo.
func (i *Identity) Can(role, repo string) bool { return i.id.can(role, repo) }

// Need returns nil when the user has role on repo, else an error that
// StatusOf maps to 403 with a message that says what was missing.
func (i *Identity) Need(role, repo string) error { return i.id.need(role, repo) }

// NeedOnBuild is Need for the repo of build b, named only by its ID: the
// error does not name a repo the user may not see.
func (i *Identity) NeedOnBuild(role string, b *store.Build) error { return i.id.needOnBuild(role, b) }

// Role names the user's role on repo, or "none".
func (i *Identity) Role(repo string) string { return i.id.role(repo) }

// SignIn checks the secret of a user's API token exactly as the API checks
// a bearer token, behind the same limit on guessing per address, and
// returns who it acts for. A wrong, revoked or expired token, or an agent
// token, gives an error StatusOf maps to 401; too many wrong ones, 429.
func (h *Handler) SignIn(r *http.Request, secret string) (*Identity, error) {
	tok, err := h.authenticateSecret(r, secret, store.TokenAPI)
	if err != nil {
		return nil, err
	}
	return h.Resume(r.Context(), tok)
}

// Resume returns who a stored token acts for, as long as the token is
// still a valid API token (not revoked, not expired): a web session checks
// its token this way on every request, so revoking the token ends the
// session.
func (h *Handler) Resume(ctx context.Context, tok *store.Token) (*Identity, error) {
	if !tokenValid(tok, store.TokenAPI, time.Now()) {
		return nil, errUnauthorized
	}
	id, err := h.identify(ctx, tok)
	if err != nil {
		return nil, err
	}
	return &Identity{id}, nil
}

// Queued returns the jobs that wait in the repos the user may view, oldest
// first, each with why it waits: what GET /api/v1/queue answers.
func (h *Handler) Queued(ctx context.Context, i *Identity) ([]QueuedJob, error) {
	return h.queued(ctx, func(repo string) bool { return i.Can(store.RoleViewer, repo) })
}

// actor names an identity in the audit log, and is the one place that
// does: the user's name, or "token:NAME#ID" for a token of no user.
func actor(id *identity) string {
	switch {
	case id == nil:
		return "anonymous"
	case id.Token.UserID != 0:
		return id.User
	}
	return fmt.Sprintf("token:%s#%d", id.Token.Name, id.Token.ID)
}

// Audit records in the audit log an act that i made through another HTTP
// face (the web UI) with request r, as the API records its own: same
// actor, address, reason header and failure rule (an error means the act
// was done but not recorded).
func (h *Handler) Audit(r *http.Request, i *Identity, action, object string, detail map[string]string) error {
	return h.audit(i.on(r), action, object, detail)
}

// on returns r acting for i, as an API request does once its token is
// checked.
func (i *Identity) on(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, i.id))
}

// Decide approves (store.VerdictApprove) or rejects (VerdictReject)
// deployment id for i, as POST /api/v1/deployments/{id}/approve and
// /reject do: the same role rule, the same checks of package deploy, the
// same audit entry. A rejection needs a comment.
func (h *Handler) Decide(r *http.Request, i *Identity, id int64, verdict, comment string) (*store.Deployment, error) {
	if verdict != store.VerdictApprove && verdict != store.VerdictReject {
		return nil, badRequestf("verdict %q: want %s or %s", verdict, store.VerdictApprove, store.VerdictReject)
	}
	d, err := h.Store.Deployment(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := i.Need(deliveryRole, d.Repo); err != nil {
		return nil, err
	}
	return h.decideOn(i.on(r), id, verdict, comment)
}

// Withdraw ends deployment id, which has not started, for i, as POST
// /api/v1/deployments/{id}/withdraw does: the same role rule, the same
// checks, the same audit entry (reason is its reason).
func (h *Handler) Withdraw(r *http.Request, i *Identity, id int64, reason string) (*store.Deployment, error) {
	d, err := h.Store.Deployment(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := i.Need(deliveryRole, d.Repo); err != nil {
		return nil, err
	}
	if reason != "" {
		r = r.Clone(r.Context())
		r.Header.Set(ReasonHeader, reason) // the audit entry's reason, as the API's header gives it
	}
	return h.withdrawAs(i.on(r), id, reason)
}

// MayWithdraw returns nil when i may withdraw deployment d (if it has not
// started), else the error Withdraw would refuse with; it changes nothing.
func (h *Handler) MayWithdraw(ctx context.Context, i *Identity, d *store.Deployment) error {
	if err := i.Need(deliveryRole, d.Repo); err != nil {
		return err
	}
	return h.Delivery.MayWithdraw(ctx, d, delivery.Actor{Name: i.User(), Admin: i.Admin()})
}

// Promote asks for a promotion for i, as POST /api/v1/promotions does.
func (h *Handler) Promote(r *http.Request, i *Identity, in PromoteRequest) (*store.Deployment, error) {
	if err := i.Need(deliveryRole, in.Repo); err != nil {
		return nil, err
	}
	return h.promoteAs(i.on(r), in)
}

// Rollback asks for a rollback for i, as POST /api/v1/rollbacks does.
func (h *Handler) Rollback(r *http.Request, i *Identity, in RollbackRequest) (*store.Deployment, error) {
	if err := i.Need(deliveryRole, in.Repo); err != nil {
		return nil, err
	}
	return h.rollbackAs(i.on(r), in)
}

// MayDecide returns nil when i may approve or reject deployment d now,
// else the error Decide would refuse with; it changes nothing. A page
// shows its Approve and Reject buttons only on nil.
func (h *Handler) MayDecide(ctx context.Context, i *Identity, d *store.Deployment) error {
	if err := i.Need(deliveryRole, d.Repo); err != nil {
		return err
	}
	return h.Delivery.MayDecide(ctx, d, delivery.Actor{Name: i.User(), Admin: i.Admin()})
}

// MayRequest returns nil when i may ask now for a deployment, a promotion
// or a rollback to environment env of repo, else the error Promote or
// Rollback would refuse with for who i is (role, the environment's
// groups) or when (a freeze window); it changes nothing.
func (h *Handler) MayRequest(ctx context.Context, i *Identity, repo, env string) error {
	if err := i.Need(deliveryRole, repo); err != nil {
		return err
	}
	return h.Delivery.MayRequest(ctx, repo, env, delivery.Actor{Name: i.User(), Admin: i.Admin()})
}
