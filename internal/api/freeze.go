package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/store"
)

// Freeze is a freeze window an admin set on an environment.
type Freeze struct {
	ID          int64     `json:"id"`
	Repo        string    `json:"repo"`
	Environment string    `json:"environment"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	Reason      string    `json:"reason"`
	SetBy       string    `json:"set_by"`
	CreatedAt   time.Time `json:"created_at"`
}

// FreezeRequest is the body of POST /api/v1/freezes: a window from Since
// (now when absent) until Until.
type FreezeRequest struct {
	Repo        string     `json:"repo"`
	Environment string     `json:"environment"`
	Since       *time.Time `json:"since,omitempty"`
	Until       time.Time  `json:"until"`
	Reason      string     `json:"reason"`
}

// FreezeOf is the API's view of a stored freeze.
func FreezeOf(f *store.Freeze) Freeze {
	return Freeze{ID: f.ID, Repo: f.Repo, Environment: f.Environment, Since: f.Since.UTC(), Until: f.Until.UTC(),
		Reason: f.Reason, SetBy: f.CreatedBy, CreatedAt: f.CreatedAt.UTC()}
}

// registerFreezes mounts the freezes admins set: reading them needs the
// viewer role on the repo, setting or removing one the admin role there.
func (h *Handler) registerFreezes(mux *http.ServeMux, viewer, admin func(scope) rule) {
	h.route(mux, "GET /api/v1/freezes", viewer(repoQuery), h.listFreezes)
	h.route(mux, "POST /api/v1/freezes", admin(repoBody), h.addFreeze)
	h.route(mux, "DELETE /api/v1/freezes/{id}", admin(freezePath), h.deleteFreeze)
}

func (h *Handler) listFreezes(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.queryRepo(r)
	if err != nil {
		return err
	}
	fs, err := h.Delivery.Freezes(r.Context(), repo)
	if err != nil {
		return err
	}
	return writeList(w, fs, FreezeOf)
}

func (h *Handler) addFreeze(w http.ResponseWriter, r *http.Request) error {
	var in FreezeRequest
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if err := validEnv("environment", in.Environment); err != nil {
		return err
	}
	if err := CheckReason(in.Reason); err != nil {
		return badRequestf("reason: %v", err)
	}
	if in.Until.IsZero() {
		return badRequestf("until is required: when the freeze ends")
	}
	req := delivery.FreezeRequest{Repo: in.Repo, Environment: in.Environment, Until: in.Until, Reason: in.Reason,
		By: identityOf(r.Context()).User}
	if in.Since != nil {
		req.Since = *in.Since
	}
	f, err := h.Delivery.Freeze(r.Context(), req)
	if errors.Is(err, delivery.ErrInvalid) {
		return badRequestf("%s", err.Error())
	}
	if err != nil {
		return err
	}
	if err := h.audit(r, "freeze.add", "freeze:"+strconv.FormatInt(f.ID, 10), freezeDetail(f)); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, FreezeOf(f))
}

func (h *Handler) deleteFreeze(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "freeze")
	if err != nil {
		return err
	}
	f, err := h.Delivery.Unfreeze(r.Context(), id)
	if err != nil {
		return err
	}
	if err := h.audit(r, "freeze.remove", "freeze:"+strconv.FormatInt(f.ID, 10), freezeDetail(f)); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, FreezeOf(f))
}

func freezeDetail(f *store.Freeze) map[string]string {
	return map[string]string{"repo": f.Repo, "environment": f.Environment, "since": f.Since.UTC().Format(time.RFC3339),
		"until": f.Until.UTC().Format(time.RFC3339), "reason": f.Reason}
}
