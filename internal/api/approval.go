package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/store"
)

// StateWaitingForApproval is the state the API shows for a pending
// deployment that lacks approvals.
const StateWaitingForApproval = "waiting for approval"

// Approvals is where a deployment stands with its approvals.
type Approvals struct {
	Required   int      `json:"required"`
	Groups     []string `json:"groups"`
	ApprovedBy []string `json:"approved_by"`
	// RejectedBy and Comment say who rejected it, and why.
	RejectedBy string `json:"rejected_by,omitempty"`
	Comment    string `json:"comment,omitempty"`
}

// Frozen is a freeze window open now.
type Frozen struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	// SetBy and ID, for a freeze an admin set (gantry freeze add), say
	// who and which; empty for a window of the pipeline file.
	SetBy string `json:"set_by,omitempty"`
	ID    int64  `json:"id,omitempty"`
}

// Decision is the body of POST /api/v1/deployments/{id}/approve and
// /reject. A rejection needs a comment.
type Decision struct {
	Comment string `json:"comment,omitempty"`
}

func frozenOf(f *deploy.Freeze) *Frozen {
	if f == nil {
		return nil
	}
	return &Frozen{Since: f.Since.UTC(), Until: f.Until.UTC(), Reason: f.Reason, SetBy: f.SetBy, ID: f.ID}
}

// withTally adds a deployment's approvals to its view, and shows a
// pending one that lacks them as waiting for approval.
func withTally(v Deployment, t deploy.Tally) Deployment {
	if t.Required == 0 {
		return v
	}
	a := &Approvals{Required: t.Required, Groups: t.Groups, ApprovedBy: t.ApprovedBy}
	if a.Groups == nil {
		a.Groups = []string{}
	}
	if a.ApprovedBy == nil {
		a.ApprovedBy = []string{}
	}
	if t.Rejected != nil {
		a.RejectedBy, a.Comment = t.Rejected.User, t.Rejected.Comment
	}
	v.Approvals = a
	if v.State == store.DeployPending && !t.Approved() {
		v.State = StateWaitingForApproval
	}
	return v
}

// deliveryActor is who a delivery request acts for. An override of freeze
// windows needs a reason (the Gantry-Reason header, gantry --reason);
// whether the caller may override is package delivery's to say.
func deliveryActor(r *http.Request, overrideFreeze bool) (delivery.Actor, error) {
	id := identityOf(r.Context())
	a := delivery.Actor{Name: id.User, Admin: id.Admin}
	if overrideFreeze {
		a.OverrideFreeze = r.Header.Get(ReasonHeader)
		if a.OverrideFreeze == "" {
			return a, badRequestf("override_freeze needs a reason: the %s header (gantry --reason R)", ReasonHeader)
		}
	}
	return a, nil
}

// registerApprovals mounts approving, rejecting and withdrawing a
// deployment: the deliveryRole on its repo lets a request in; package
// deploy then says whether this person may decide on it (or, to withdraw
// it, deploy there).
func (h *Handler) registerApprovals(mux *http.ServeMux) {
	h.route(mux, "POST /api/v1/deployments/{id}/approve", rule{deliveryRole, deploymentPath}, h.decide(store.VerdictApprove))
	h.route(mux, "POST /api/v1/deployments/{id}/reject", rule{deliveryRole, deploymentPath}, h.decide(store.VerdictReject))
	h.route(mux, "POST /api/v1/deployments/{id}/withdraw", rule{deliveryRole, deploymentPath}, h.withdraw)
}

// withdraw ends a deployment that has not started; the reason is the
// request's (Gantry-Reason), which the audit entry carries too.
func (h *Handler) withdraw(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "deployment")
	if err != nil {
		return err
	}
	d, err := h.withdrawAs(r, id, r.Header.Get(ReasonHeader))
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, DeploymentOf(d, ""))
}

// withdrawAs withdraws deployment id for the request's identity, whose
// role on the repo has been checked, and records it in the audit log.
func (h *Handler) withdrawAs(r *http.Request, id int64, reason string) (*store.Deployment, error) {
	if err := CheckReason(reason); err != nil {
		return nil, badRequestf("%v", err)
	}
	who := identityOf(r.Context())
	d, err := h.Delivery.Withdraw(r.Context(), id, delivery.Actor{Name: who.User, Admin: who.Admin}, reason)
	if err != nil {
		return nil, err
	}
	detail := map[string]string{"repo": d.Repo, "environment": d.Environment, "release": d.Version, "state": d.State}
	if err := h.audit(r, "deployment.withdraw", "deployment:"+strconv.FormatInt(d.ID, 10), detail); err != nil {
		return nil, err
	}
	return d, nil
}

func (h *Handler) decide(verdict string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "deployment")
		if err != nil {
			return err
		}
		var in Decision
		if err := readJSON(r, &in); err != nil {
			return err
		}
		d, err := h.decideOn(r, id, verdict, in.Comment)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, withTally(DeploymentOf(d, ""), h.Delivery.Tally(r.Context(), d)))
	}
}

// decideOn approves or rejects deployment id for the request's identity,
// whose role on the repo has been checked, and records it in the audit
// log.
func (h *Handler) decideOn(r *http.Request, id int64, verdict, comment string) (*store.Deployment, error) {
	if err := CheckReason(comment); err != nil {
		return nil, badRequestf("comment: %v", err)
	}
	if verdict == store.VerdictReject && comment == "" {
		return nil, badRequestf("a rejection needs a comment that says why (--comment C)")
	}
	who := identityOf(r.Context())
	d, err := h.Delivery.Decide(r.Context(), id, delivery.Actor{Name: who.User, Admin: who.Admin}, verdict, comment)
	if err != nil {
		return nil, err
	}
	detail := map[string]string{"repo": d.Repo, "environment": d.Environment, "release": d.Version, "state": d.State}
	if comment != "" {
		detail["comment"] = comment
	}
	if err := h.audit(r, "deployment."+verdict, "deployment:"+strconv.FormatInt(d.ID, 10), detail); err != nil {
		return nil, err
	}
	return d, nil
}
