package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// The environments page of a repo: what runs where, what waits and why,
// and the buttons to approve, reject, withdraw, promote and roll back,
// each shown only when the API's own checks (api.Handler.MayDecide,
// MayWithdraw, MayRequest) say the user may press it, and each carried out
// by the same code the API runs (api.Handler.Decide, Withdraw, Promote,
// Rollback).

const (
	// matrixReleases is how many of the newest releases the matrix shows;
	// older ones still live somewhere are shown too.
	matrixReleases = 20
	// historySize is how many deployments the history lists.
	historySize = 30
	// deploymentsRead bounds the deployments read for the matrix.
	deploymentsRead = 1000
)

// deployRow is a deployment as the page shows it.
type deployRow struct {
	D *store.Deployment
	// State is the API's: "waiting for approval" for a pending one that
	// lacks approvals.
	State string
	// Approvals is "1/2 bob" where approvals are asked for, else "".
	Approvals string
}

// waitRow is a deployment that waits, with what for, and whether the user
// may decide on it.
type waitRow struct {
	deployRow
	Why string
	// CanDecide: the user may approve or reject it now.
	CanDecide bool
	// NoDecide says why a developer may not decide on it, when approvals
	// are asked for ("" for a viewer: no button, and no explanation owed).
	NoDecide string
	// CanWithdraw: the user may withdraw it (api.Handler.MayWithdraw).
	CanWithdraw bool
}

// envView is one environment's column and panel.
type envView struct {
	Name        string
	PromoteFrom string
	// Branch is the branch that deploys here by itself.
	Branch   string
	Approval string // "1 from releasers", where approvals are asked for
	Groups   []string
	Current  *deployRow
	Active   *deployRow
	Last     *deployRow
	Waiting  []waitRow
	Freeze   *deploy.Freeze
	// Promote is the release live in PromoteFrom that the user may promote
	// here; RollbackTo the release a rollback returns to, when the user may
	// ask for one.
	Promote    string
	RollbackTo string
	// NoRequest says why a developer may not promote or roll back here.
	NoRequest string
}

// cell is where a release stands in an environment: its newest deployment
// there.
type cell struct {
	D    *store.Deployment
	Live bool
	// State is the deployment's as the API shows it.
	State string
}

type releaseRow struct {
	R     *store.Release
	Cells []cell
}

type confirmView struct {
	Action string // promote or rollback
	Env    *envView
}

type envsData struct {
	base
	Repo *store.Repo
	// Message is a refusal to show, from the last form posted.
	Message  string
	Envs     []*envView
	Releases []releaseRow
	History  []deployRow
	Confirm  *confirmView
	// More says there are older releases than the matrix shows.
	More bool
	// CanAct: the user has the role that changes deliveries at all.
	CanAct bool
}

func envsPath(repo string) string { return "/environments/" + repo }

// approvalsText is a tally as a short text: "1/2 bob".
func approvalsText(t deploy.Tally) string {
	if t.Required == 0 {
		return ""
	}
	s := fmt.Sprintf("%d/%d", len(t.ApprovedBy), t.Required)
	if len(t.ApprovedBy) > 0 {
		s += " " + strings.Join(t.ApprovedBy, ", ")
	}
	if t.Rejected != nil {
		s += ", rejected by " + t.Rejected.User
	}
	return s
}

// requestedBy says who asked for a deployment: a person, or Gantry itself
// for an automatic one.
func requestedBy(d *store.Deployment) string {
	if d.RequestedBy == "" {
		return "by gantry (" + d.Kind + ")"
	}
	return "by " + d.RequestedBy
}

func rowOf(d *store.Deployment, t deploy.Tally) *deployRow {
	if d == nil {
		return nil
	}
	v := api.DeploymentOf(d, "")
	if t.Required > 0 && d.State == store.DeployPending && !t.Approved() {
		v.State = api.StateWaitingForApproval
	}
	return &deployRow{D: d, State: v.State, Approvals: approvalsText(t)}
}

// explain is the text of a refusal shown beside a missing button: to a
// user who has the role, why not; to one who has not, nothing.
func explain(s *session, repo string, err error) string {
	if err == nil || !s.id.Can(store.RoleDeveloper, repo) {
		return ""
	}
	_, msg := statusOf(err)
	return msg
}

// envsView reads everything the environments page of rp shows to s.
func (h *Handler) envsView(ctx context.Context, s *session, rp *store.Repo) (*envsData, error) {
	d := &envsData{base: baseOf(s, "Environments · "+rp.Name, "/environments"), Repo: rp,
		CanAct: s.id.Can(store.RoleDeveloper, rp.Name)}
	d.Live = "/events?repo=" + url.QueryEscape(rp.Name)
	svc := h.API.Delivery
	envs, err := svc.Environments(ctx, rp.Name)
	if err != nil {
		return nil, err
	}
	rules, err := svc.Rules(ctx, rp.Name)
	if err != nil {
		// The page still shows what is where; the buttons wait for a
		// pipeline that reads.
		h.Log.WarnContext(ctx, "environments page: the pipeline that governs them", "repo", rp.Name, "err", err)
		rules = nil
	}
	live := map[string]*store.Deployment{}
	for _, e := range envs {
		live[e.Name] = e.Current
	}
	for _, e := range envs {
		v := &envView{Name: e.Name, Freeze: e.Freeze, Last: rowOf(e.Last, deploy.Tally{})}
		if e.Current != nil {
			v.Current = rowOf(e.Current, svc.Tally(ctx, e.Current))
		}
		if e.Active != nil {
			v.Active = rowOf(e.Active, svc.Tally(ctx, e.Active))
		}
		if rules != nil {
			if spec := plan.Environment(rules, e.Name); spec != nil {
				v.PromoteFrom, v.Branch, v.Groups = spec.PromoteFrom, spec.DeployBranch, spec.Groups
				if a := spec.Approvals; a != nil && a.Required > 0 {
					v.Approval = strconv.Itoa(a.Required)
					if len(a.Groups) > 0 {
						v.Approval += " from " + strings.Join(a.Groups, ", ")
					}
				}
			}
		}
		for _, w := range e.Waiting {
			row := waitRow{deployRow: *rowOf(w, e.Tally[w.ID]), Why: e.Why[w.ID]}
			if e.Tally[w.ID].Required > 0 {
				err := h.API.MayDecide(ctx, s.id, w)
				row.CanDecide, row.NoDecide = err == nil, explain(s, rp.Name, err)
			}
			row.CanWithdraw = d.CanAct && h.API.MayWithdraw(ctx, s.id, w) == nil
			v.Waiting = append(v.Waiting, row)
		}
		if d.CanAct && rules != nil {
			if err := h.API.MayRequest(ctx, s.id, rp.Name, e.Name); err != nil {
				v.NoRequest = explain(s, rp.Name, err)
			} else {
				// What runs in promote-from, unless it runs here already or
				// is on its way.
				if from := live[v.PromoteFrom]; v.PromoteFrom != "" && from != nil && !headed(e, from.ReleaseID) {
					v.Promote = from.Version
				}
				rel, err := svc.RollbackTo(ctx, rp.Name, e.Name)
				if err != nil {
					return nil, err
				}
				if rel != nil {
					v.RollbackTo = rel.Version
				}
			}
		}
		d.Envs = append(d.Envs, v)
	}
	if err := h.matrix(ctx, d, envs); err != nil {
		return nil, err
	}
	recent, err := h.Store.Deployments(ctx, store.DeploymentFilter{Repo: rp.Name, Limit: historySize})
	if err != nil {
		return nil, err
	}
	tallies := svc.Tallies(ctx, recent)
	for _, x := range recent {
		d.History = append(d.History, *rowOf(x, tallies[x.ID]))
	}
	return d, nil
}

// headed reports whether release runs in e, or is waiting or deploying
// there.
func headed(e *delivery.Environment, release int64) bool {
	if e.Current != nil && e.Current.ReleaseID == release || e.Active != nil && e.Active.ReleaseID == release {
		return true
	}
	for _, w := range e.Waiting {
		if w.ReleaseID == release {
			return true
		}
	}
	return false
}

// matrix fills in the releases x environments table: the newest releases,
// and any older one still live somewhere.
func (h *Handler) matrix(ctx context.Context, d *envsData, envs []*delivery.Environment) error {
	rels, err := h.Store.ListReleases(ctx, store.ReleaseFilter{Repo: d.Repo.Name, Limit: matrixReleases + 1})
	if err != nil {
		return err
	}
	if len(rels) > matrixReleases {
		rels, d.More = rels[:matrixReleases], true
	}
	shown := map[int64]bool{}
	for _, r := range rels {
		shown[r.ID] = true
	}
	for _, e := range envs {
		if e.Current != nil && !shown[e.Current.ReleaseID] {
			r, err := h.Store.ReleaseByID(ctx, e.Current.ReleaseID)
			if err != nil {
				return err
			}
			shown[r.ID] = true
			rels = append(rels, r)
		}
	}
	ds, err := h.Store.Deployments(ctx, store.DeploymentFilter{Repo: d.Repo.Name, Limit: deploymentsRead})
	if err != nil {
		return err
	}
	type key struct {
		release int64
		env     string
	}
	newest := map[key]*store.Deployment{}
	for _, x := range ds { // newest first
		k := key{x.ReleaseID, x.Environment}
		if newest[k] == nil {
			newest[k] = x
		}
	}
	for _, r := range rels {
		row := releaseRow{R: r}
		for _, e := range envs {
			c := cell{D: newest[key{r.ID, e.Name}], Live: e.Current != nil && e.Current.ReleaseID == r.ID}
			if c.D != nil {
				c.State = rowOf(c.D, e.Tally[c.D.ID]).State
			}
			row.Cells = append(row.Cells, c)
		}
		d.Releases = append(d.Releases, row)
	}
	return nil
}

// repoOf reads the repo the {repo...} path value names, which the user
// must be able to see.
func (h *Handler) repoOf(r *http.Request, s *session, name string) (*store.Repo, error) {
	rp, err := h.Store.Repo(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if err := s.id.Need(store.RoleViewer, rp.Name); err != nil {
		return nil, err
	}
	return rp, nil
}

func (h *Handler) environments(w http.ResponseWriter, r *http.Request, s *session) error {
	rp, err := h.repoOf(r, s, r.PathValue("repo"))
	if err != nil {
		return err
	}
	return h.showEnvs(w, r, s, rp, http.StatusOK, "")
}

// showEnvs renders the environments page, with a refusal's message and
// status when a form was refused, and the confirmation of a promotion or
// a rollback that ?confirm= asks for.
func (h *Handler) showEnvs(w http.ResponseWriter, r *http.Request, s *session, rp *store.Repo, status int, msg string) error {
	d, err := h.envsView(r.Context(), s, rp)
	if err != nil {
		return err
	}
	d.Message = msg
	if r.Method != http.MethodGet {
		d.Self = envsPath(rp.Name)
	}
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		if action := q.Get("confirm"); action != "" {
			if err := s.id.Need(store.RoleDeveloper, rp.Name); err != nil {
				return err
			}
			if d.Confirm, err = confirmOf(d, action, q.Get("env")); err != nil {
				return err
			}
		}
	}
	return h.render(w, status, "environments", "layout", d)
}

// confirmOf is the confirmation step of a promotion or a rollback, which
// the user must be shown the button of.
func confirmOf(d *envsData, action, env string) (*confirmView, error) {
	for _, e := range d.Envs {
		if e.Name != env {
			continue
		}
		switch {
		case action == "promote" && e.Promote != "", action == "rollback" && e.RollbackTo != "":
			return &confirmView{Action: action, Env: e}, nil
		case e.NoRequest != "":
			return nil, errForbidden(e.NoRequest)
		}
		return nil, badf("nothing to %s in %s of %s now", action, env, d.Repo.Name)
	}
	if action != "promote" && action != "rollback" {
		return nil, badf("confirm %q: want promote or rollback", action)
	}
	return nil, badf("%s has no environment %q", d.Repo.Name, env)
}

// refused shows a refusal of a delivery form on the environments page:
// what the API would answer with 4xx, the user reads there, next to what
// they tried. Anything else is an error page.
func (h *Handler) refused(w http.ResponseWriter, r *http.Request, s *session, repo string, err error) error {
	status, msg := statusOf(err)
	if status >= 500 || status == http.StatusNotFound {
		return err
	}
	rp, rerr := h.repoOf(r, s, repo)
	if rerr != nil {
		return err
	}
	h.Log.InfoContext(r.Context(), "web delivery form refused", "user", s.id.User(), "repo", repo, "status", status, "err", err)
	return h.showEnvs(w, r, s, rp, status, msg)
}

func (h *Handler) decide(verdict string) func(w http.ResponseWriter, r *http.Request, s *session) error {
	return func(w http.ResponseWriter, r *http.Request, s *session) error {
		before, err := h.postedDeployment(r, s)
		if err != nil {
			return err
		}
		comment := strings.TrimSpace(r.PostForm.Get("comment"))
		if _, err := h.API.Decide(r, s.id, before.ID, verdict, comment); err != nil {
			return h.refused(w, r, s, before.Repo, err)
		}
		http.Redirect(w, r, envsPath(before.Repo)+"#"+before.Environment, http.StatusSeeOther)
		return nil
	}
}

// postedDeployment is the deployment a form posts to (/deployments/{id}/…),
// in a repo where the user has a role: one in another is forbidden
// without saying more of it.
func (h *Handler) postedDeployment(r *http.Request, s *session) (*store.Deployment, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return nil, badf("deployment ID %q: want a positive number", r.PathValue("id"))
	}
	d, err := h.Store.Deployment(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := s.id.Need(store.RoleViewer, d.Repo); err != nil {
		return nil, errForbidden(fmt.Sprintf("%s may not do this: deployment %d is in a repo where %s has no role", s.id.User(), id, s.id.User()))
	}
	return d, nil
}

// withdraw ends a deployment that has not started, as gantry withdraw
// does, with the form's reason.
func (h *Handler) withdraw(w http.ResponseWriter, r *http.Request, s *session) error {
	before, err := h.postedDeployment(r, s)
	if err != nil {
		return err
	}
	if _, err := h.API.Withdraw(r, s.id, before.ID, strings.TrimSpace(r.PostForm.Get("reason"))); err != nil {
		return h.refused(w, r, s, before.Repo, err)
	}
	http.Redirect(w, r, envsPath(before.Repo)+"#"+before.Environment, http.StatusSeeOther)
	return nil
}

func (h *Handler) promote(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	in := api.PromoteRequest{Repo: f.Get("repo"), From: f.Get("from"), To: f.Get("to"), Release: f.Get("release")}
	if in.Repo == "" {
		return badf("repo is required")
	}
	if _, err := h.API.Promote(r, s.id, in); err != nil {
		return h.refused(w, r, s, in.Repo, err)
	}
	http.Redirect(w, r, envsPath(in.Repo)+"#"+in.To, http.StatusSeeOther)
	return nil
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	in := api.RollbackRequest{Repo: f.Get("repo"), Environment: f.Get("environment")}
	if in.Repo == "" {
		return badf("repo is required")
	}
	if _, err := h.API.Rollback(r, s.id, in); err != nil {
		return h.refused(w, r, s, in.Repo, err)
	}
	http.Redirect(w, r, envsPath(in.Repo)+"#"+in.Environment, http.StatusSeeOther)
	return nil
}

// envIndexRow is a repo on the environments index: what runs where.
type envIndexRow struct {
	Repo *store.Repo
	Envs []*delivery.Environment
}

type envIndexData struct {
	base
	Repos []envIndexRow
}

// environmentsIndex lists the repos the user may see, each with what runs
// in each of its environments.
func (h *Handler) environmentsIndex(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	d := envIndexData{base: baseOf(s, "Environments", "/environments")}
	d.Live = "/events"
	repos, err := h.visibleRepos(ctx, s)
	if err != nil {
		return err
	}
	for _, rp := range repos {
		envs, err := h.API.Delivery.Environments(ctx, rp.Name)
		if err != nil {
			return err
		}
		d.Repos = append(d.Repos, envIndexRow{Repo: rp, Envs: envs})
	}
	return h.render(w, http.StatusOK, "envindex", "layout", d)
}
