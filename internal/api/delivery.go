package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Release is a release as the API shows it.
type Release struct {
	Repo        string   `json:"repo"`
	Version     string   `json:"version"`
	BuildID     int64    `json:"build_id"`
	BuildNumber int64    `json:"build_number"`
	Commit      string   `json:"commit"`
	Branch      string   `json:"branch"`
	Tag         string   `json:"tag,omitempty"`
	Authors     []string `json:"authors"`
	// Issues are the issue keys its commits name (ABC-123, #123).
	Issues    []string   `json:"issues"`
	CreatedAt time.Time  `json:"created_at"`
	Artifacts []Artifact `json:"artifacts"`
	// Deployments, on GET of one release: where it went, newest first.
	Deployments []Deployment `json:"deployments,omitempty"`
}

// Deployment is a deployment as the API shows it.
type Deployment struct {
	ID          int64  `json:"id"`
	Repo        string `json:"repo"`
	Environment string `json:"environment"`
	Release     string `json:"release"`
	// Kind is auto, deploy, promote, rollback or auto-rollback (Gantry's
	// own, after a failed health check).
	Kind string `json:"kind"`
	// RequestedBy is who asked; empty for an automatic deployment.
	RequestedBy string `json:"requested_by"`
	// State is pending, waiting for approval (pending, and lacking
	// approvals), running, succeeded, failed or cancelled.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Waiting, on a pending deployment, says what it waits for.
	Waiting string `json:"waiting,omitempty"`
	// Approvals, where its environment asks for them: how many, from
	// whom, and who approved (or rejected) so far.
	Approvals *Approvals `json:"approvals,omitempty"`
	// BuildID is the build that runs it, once it started.
	BuildID    int64      `json:"build_id,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// Environment is an environment as gantry envs shows it.
type Environment struct {
	Name string `json:"name"`
	// Current is what runs there: the newest deployment that succeeded.
	Current *Deployment `json:"current"`
	// Active is the deployment running now.
	Active *Deployment `json:"active"`
	// Waiting are the pending deployments, in the order they will start.
	Waiting []Deployment `json:"waiting"`
	// Last is the newest deployment that ended, when that was after
	// Current: one that failed or was cancelled since.
	Last *Deployment `json:"last"`
	// Frozen is the freeze window open now, if any.
	Frozen *Frozen `json:"frozen,omitempty"`
}

// DeployRequest is the body of POST /api/v1/deployments.
type DeployRequest struct {
	Repo        string `json:"repo"`
	Environment string `json:"environment"`
	Release     string `json:"release"`
	// OverrideFreeze, from an admin, deploys through an open freeze
	// window; the request's reason (Gantry-Reason) is required and is
	// recorded.
	OverrideFreeze bool `json:"override_freeze,omitempty"`
}

// PromoteRequest is the body of POST /api/v1/promotions; without Release,
// the release live in From is promoted.
type PromoteRequest struct {
	Repo    string `json:"repo"`
	From    string `json:"from"`
	To      string `json:"to"`
	Release string `json:"release,omitempty"`
	// OverrideFreeze: as in DeployRequest.
	OverrideFreeze bool `json:"override_freeze,omitempty"`
}

// RollbackRequest is the body of POST /api/v1/rollbacks.
type RollbackRequest struct {
	Repo        string `json:"repo"`
	Environment string `json:"environment"`
	// OverrideFreeze: as in DeployRequest.
	OverrideFreeze bool `json:"override_freeze,omitempty"`
}

// DeploymentOf converts a stored deployment; waiting says why a pending
// one waits.
func DeploymentOf(d *store.Deployment, waiting string) Deployment {
	return Deployment{ID: d.ID, Repo: d.Repo, Environment: d.Environment, Release: d.Version, Kind: d.Kind,
		RequestedBy: d.RequestedBy, State: d.State, Reason: d.Reason, Waiting: waiting, BuildID: d.BuildID,
		CreatedAt: d.CreatedAt.UTC(), StartedAt: timePtr(d.StartedAt), FinishedAt: timePtr(d.FinishedAt)}
}

func deploymentPtr(d *store.Deployment) *Deployment {
	if d == nil {
		return nil
	}
	out := DeploymentOf(d, "")
	return &out
}

// ReleaseOf converts a stored release.
func ReleaseOf(r *store.Release) Release {
	out := Release{Repo: r.Repo, Version: r.Version, BuildID: r.BuildID, BuildNumber: r.BuildNumber, Commit: r.Commit,
		Branch: r.Branch, Tag: r.Tag, Authors: r.Authors, Issues: r.Issues, CreatedAt: r.CreatedAt.UTC(), Artifacts: []Artifact{}}
	if out.Issues == nil {
		out.Issues = []string{}
	}
	if out.Authors == nil {
		out.Authors = []string{}
	}
	for _, a := range r.Artifacts {
		out.Artifacts = append(out.Artifacts, ArtifactOf(a))
	}
	return out
}

// deliveryRole is the least role on a repo that lets a request ask for a
// deployment, a promotion or a rollback there, or approve or reject one;
// an environment's groups and approvals narrow it further (package deploy
// decides; a refusal is 403 with what was missing). The web UI's forms
// are held to the same role through Handler.Decide, Promote and Rollback.
const deliveryRole = store.RoleDeveloper

// registerDelivery mounts releases, environments and deployments. Reading
// them needs the viewer role on the repo; changing them, deliveryRole.
func (h *Handler) registerDelivery(mux *http.ServeMux, viewer func(scope) rule) {
	developer := func(s scope) rule { return rule{deliveryRole, s} }
	h.route(mux, "GET /api/v1/releases", viewer(repoQuery), h.listReleases)
	h.route(mux, "GET /api/v1/releases/{version...}", viewer(repoQuery), h.getRelease)
	h.route(mux, "GET /api/v1/environments", viewer(repoQuery), h.listEnvironments)
	h.route(mux, "GET /api/v1/deployments", viewer(repoQuery), h.listDeployments)
	h.route(mux, "POST /api/v1/deployments", developer(repoBody), h.deploy)
	h.route(mux, "POST /api/v1/promotions", developer(repoBody), asking(h, h.promoteAs))
	h.route(mux, "POST /api/v1/rollbacks", developer(repoBody), asking(h, h.rollbackAs))
	h.registerApprovals(mux)
}

// queryRepo is the ?repo= of a delivery listing, which must name a repo
// that exists: the role rule has checked the caller may see it.
func (h *Handler) queryRepo(r *http.Request) (string, error) {
	repo := r.URL.Query().Get("repo")
	if repo == "" {
		return "", badRequestf("repo is required: ?repo=OWNER/NAME")
	}
	if _, err := h.Store.Repo(r.Context(), repo); err != nil {
		return "", err
	}
	return repo, nil
}

func queryLimit(r *http.Request) (int, error) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > 1000 {
		return 0, badRequestf("limit %q: want 1 to 1000", l)
	}
	return n, nil
}

func (h *Handler) listReleases(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.queryRepo(r)
	if err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	rels, err := h.Store.ListReleases(r.Context(), store.ReleaseFilter{Repo: repo, Branch: r.URL.Query().Get("branch"), Limit: limit})
	if err != nil {
		return err
	}
	return writeList(w, rels, ReleaseOf)
}

func (h *Handler) getRelease(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.queryRepo(r)
	if err != nil {
		return err
	}
	version := r.PathValue("version")
	if version == "" {
		return badRequestf("release version is required: /api/v1/releases/VERSION?repo=OWNER/NAME")
	}
	rel, err := h.Store.Release(r.Context(), repo, version)
	if err != nil {
		return err
	}
	ds, err := h.Store.Deployments(r.Context(), store.DeploymentFilter{Repo: repo, ReleaseID: rel.ID, Limit: 1000})
	if err != nil {
		return err
	}
	out := ReleaseOf(rel)
	for _, d := range ds {
		out.Deployments = append(out.Deployments, DeploymentOf(d, ""))
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.queryRepo(r)
	if err != nil {
		return err
	}
	envs, err := h.Delivery.Environments(r.Context(), repo)
	if err != nil {
		return err
	}
	return writeList(w, envs, func(e *delivery.Environment) Environment {
		v := Environment{Name: e.Name, Current: deploymentPtr(e.Current), Active: deploymentPtr(e.Active),
			Last: deploymentPtr(e.Last), Waiting: []Deployment{}, Frozen: frozenOf(e.Freeze)}
		for _, d := range e.Waiting {
			v.Waiting = append(v.Waiting, withTally(DeploymentOf(d, e.Why[d.ID]), e.Tally[d.ID]))
		}
		return v
	})
}

func (h *Handler) listDeployments(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.queryRepo(r)
	if err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	ds, err := h.Store.Deployments(r.Context(), store.DeploymentFilter{Repo: repo, Environment: r.URL.Query().Get("environment"), Limit: limit})
	if err != nil {
		return err
	}
	tallies := h.Delivery.Tallies(r.Context(), ds)
	return writeList(w, ds, func(d *store.Deployment) Deployment { return withTally(DeploymentOf(d, ""), tallies[d.ID]) })
}

// validEnv checks an environment's name where a request gives one.
func validEnv(what, name string) error {
	if name == "" {
		return badRequestf("%s is required", what)
	}
	if !spec.NamePattern.MatchString(name) {
		return badRequestf("%s %q: not an environment name (letters, digits, '.', '-', '_')", what, name)
	}
	return nil
}

func validVersion(v string, required bool) error {
	switch {
	case v == "" && required:
		return badRequestf("release is required: the version of a release (gantry releases OWNER/NAME lists them)")
	case len(v) > 256:
		return badRequestf("release %q: longer than 256 bytes", v[:32]+"…")
	}
	return nil
}

// recordDeployment records the request for a deployment in the audit log
// (deployment.deploy, .promote or .rollback, and .override-freeze when it
// overrode a freeze window).
func (h *Handler) recordDeployment(r *http.Request, d *store.Deployment, overrode bool) error {
	detail := map[string]string{"repo": d.Repo, "environment": d.Environment, "release": d.Version, "state": d.State}
	if d.BuildID != 0 {
		detail["build"] = strconv.FormatInt(d.BuildID, 10)
	}
	if err := h.audit(r, "deployment."+d.Kind, "deployment:"+strconv.FormatInt(d.ID, 10), detail); err != nil {
		return err
	}
	if overrode {
		// The reason is the request's, which the audit entry carries.
		if err := h.audit(r, "deployment.override-freeze", "deployment:"+strconv.FormatInt(d.ID, 10), detail); err != nil {
			return err
		}
	}
	return nil
}

// answerDeployment answers with a requested deployment as it is now, and
// why it waits if it does.
func (h *Handler) answerDeployment(ctx context.Context, w http.ResponseWriter, d *store.Deployment) error {
	waiting := ""
	if d.State == store.DeployPending {
		if envs, err := h.Delivery.Environments(ctx, d.Repo); err == nil {
			for _, e := range envs {
				if e.Name == d.Environment {
					waiting = e.Why[d.ID]
				}
			}
		}
	}
	return WriteJSON(w, http.StatusCreated, withTally(DeploymentOf(d, waiting), h.Delivery.Tally(ctx, d)))
}

func (h *Handler) deploy(w http.ResponseWriter, r *http.Request) error {
	var in DeployRequest
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if err := validEnv("environment", in.Environment); err != nil {
		return err
	}
	if err := validVersion(in.Release, true); err != nil {
		return err
	}
	by, err := deliveryActor(r, in.OverrideFreeze)
	if err != nil {
		return err
	}
	d, err := h.Delivery.Deploy(r.Context(), delivery.Request{Repo: in.Repo, Environment: in.Environment, Version: in.Release,
		Kind: deploy.KindDeploy, By: by.Name, Admin: by.Admin, OverrideFreeze: by.OverrideFreeze})
	if err != nil {
		return err
	}
	if err := h.recordDeployment(r, d, in.OverrideFreeze); err != nil {
		return err
	}
	return h.answerDeployment(r.Context(), w, d)
}

// asking is a route that asks for a deployment with a JSON body of type
// T, through as (promoteAs, rollbackAs), and answers with it.
func asking[T any](h *Handler, as func(*http.Request, T) (*store.Deployment, error)) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in T
		if err := readJSON(r, &in); err != nil {
			return err
		}
		d, err := as(r, in)
		if err != nil {
			return err
		}
		return h.answerDeployment(r.Context(), w, d)
	}
}

// promoteAs asks for a promotion for the request's identity, whose role on
// the repo has been checked, and records it.
func (h *Handler) promoteAs(r *http.Request, in PromoteRequest) (*store.Deployment, error) {
	if err := validEnv("from", in.From); err != nil {
		return nil, err
	}
	if err := validEnv("to", in.To); err != nil {
		return nil, err
	}
	if err := validVersion(in.Release, false); err != nil {
		return nil, err
	}
	by, err := deliveryActor(r, in.OverrideFreeze)
	if err != nil {
		return nil, err
	}
	d, err := h.Delivery.Promote(r.Context(), in.Repo, in.From, in.To, in.Release, by)
	if err != nil {
		return nil, err
	}
	return d, h.recordDeployment(r, d, in.OverrideFreeze)
}

// rollbackAs asks for a rollback for the request's identity, whose role on
// the repo has been checked, and records it.
func (h *Handler) rollbackAs(r *http.Request, in RollbackRequest) (*store.Deployment, error) {
	if err := validEnv("environment", in.Environment); err != nil {
		return nil, err
	}
	by, err := deliveryActor(r, in.OverrideFreeze)
	if err != nil {
		return nil, err
	}
	d, err := h.Delivery.Rollback(r.Context(), in.Repo, in.Environment, by)
	if err != nil {
		return nil, err
	}
	return d, h.recordDeployment(r, d, in.OverrideFreeze)
}
