package web

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/store"
)

// statuses a build can be filtered by, in the order the filter lists them.
var statuses = []string{store.StatusQueued, store.StatusRunning, store.StatusSuccess, store.StatusFailure,
	store.StatusError, store.StatusCancelled, store.StatusSkipped}

func icon(status string) string {
	switch status {
	case store.StatusSuccess:
		return "✓"
	case store.StatusFailure:
		return "✗"
	case store.StatusError:
		return "!"
	case store.StatusCancelled:
		return "⊘"
	case store.StatusSkipped:
		return "↷"
	case store.StatusRunning:
		return "●"
	}
	return "○"
}

// duration is how long something took, or has taken so far.
func duration(start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(start)
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.UTC().Format("2006-01-02")
}

func short(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

// exitCode is a finished step's or job's exit code as shown: "" while it
// runs or when nothing ran.
func exitCode(code int, status string) string {
	if code < 0 || !store.Finished(status) || status == store.StatusSkipped {
		return ""
	}
	return strconv.Itoa(code)
}

type repoRow struct {
	Repo    *store.Repo
	Default *store.Build // the latest build of the default branch
	Latest  []*store.Build
}

type reasonCount struct {
	Reason string
	Count  int
}

type dashboardData struct {
	base
	Repos   []repoRow
	Waiting int
	Reasons []reasonCount
	Queue   []api.QueuedJob
	Agents  []agentRow
	States  []reasonCount // agents by state
	Running int
}

type agentRow struct {
	Name, State string
	Labels      []string
	Capacity    int
	Running     int
	LastSeen    time.Time
}

// visibleRepos returns the repos the user may view.
func (h *Handler) visibleRepos(ctx context.Context, s *session) ([]*store.Repo, error) {
	repos, err := h.Store.Repos(ctx)
	if err != nil {
		return nil, err
	}
	out := repos[:0]
	for _, rp := range repos {
		if s.id.Can(store.RoleViewer, rp.Name) {
			out = append(out, rp)
		}
	}
	return out, nil
}

func (h *Handler) dashboard(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	d := dashboardData{base: baseOf(s, "Dashboard", "/")}
	d.Live = "/events"
	repos, err := h.visibleRepos(ctx, s)
	if err != nil {
		return err
	}
	for _, rp := range repos {
		row := repoRow{Repo: rp}
		latest, err := h.Store.Builds(ctx, store.BuildFilter{Repo: rp.Name, Limit: 5})
		if err != nil {
			return err
		}
		row.Latest = latest
		def, err := h.Store.Builds(ctx, store.BuildFilter{Repo: rp.Name, Branch: rp.DefaultBranch, Limit: 1})
		if err != nil {
			return err
		}
		if len(def) > 0 {
			row.Default = def[0]
		}
		d.Repos = append(d.Repos, row)
	}
	queued, err := h.API.Queued(ctx, s.id)
	if err != nil {
		return err
	}
	d.Waiting = len(queued)
	counts := map[string]int{}
	for _, q := range queued {
		reason := q.Reason
		if reason == "" {
			reason = "about to start"
		}
		counts[reason]++
	}
	for reason, n := range counts {
		d.Reasons = append(d.Reasons, reasonCount{reason, n})
	}
	slices.SortFunc(d.Reasons, func(a, b reasonCount) int { return cmp.Or(b.Count-a.Count, cmp.Compare(a.Reason, b.Reason)) })
	d.Queue = queued[:min(len(queued), 10)]
	agents, err := h.Queue.Agents(ctx)
	if err != nil {
		return err
	}
	states := map[string]int{}
	for _, a := range agents {
		states[a.State]++
		d.Running += len(a.Running)
		d.Agents = append(d.Agents, agentRow{Name: a.Name, State: a.State, Labels: a.Labels, Capacity: a.Capacity,
			Running: len(a.Running), LastSeen: a.LastSeen})
	}
	for _, st := range []string{"idle", "busy", "draining", "offline"} {
		if states[st] > 0 {
			d.States = append(d.States, reasonCount{st, states[st]})
		}
	}
	return h.render(w, http.StatusOK, "dashboard", "layout", d)
}

type branchRow struct {
	Name   string
	Latest *store.Build
}

type repoData struct {
	base
	Repo     *store.Repo
	Branch   string
	Status   string
	Statuses []string
	Branches []branchRow
	Builds   []*store.Build
	// CanTrigger: the user is a developer on the repo.
	CanTrigger bool
}

func (h *Handler) repo(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	name := r.PathValue("repo")
	rp, err := h.Store.Repo(ctx, name)
	if err != nil {
		return err
	}
	if err := s.id.Need(store.RoleViewer, rp.Name); err != nil {
		return err
	}
	q := r.URL.Query()
	d := repoData{base: baseOf(s, rp.Name, "/"), Repo: rp, Branch: q.Get("branch"), Status: q.Get("status"), Statuses: statuses,
		CanTrigger: s.id.Can(store.RoleDeveloper, rp.Name)}
	d.Live = "/events?repo=" + url.QueryEscape(rp.Name)
	if d.Status != "" && !slices.Contains(statuses, d.Status) {
		return badf("status %q: want one of %v", d.Status, statuses)
	}
	recent, err := h.Store.Builds(ctx, store.BuildFilter{Repo: rp.Name, Limit: 200})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, b := range recent {
		if b.Branch != "" && !seen[b.Branch] {
			seen[b.Branch] = true
			d.Branches = append(d.Branches, branchRow{b.Branch, b})
		}
	}
	// The default branch first, then the others by their latest build.
	slices.SortStableFunc(d.Branches, func(a, b branchRow) int {
		switch {
		case a.Name == rp.DefaultBranch:
			return -1
		case b.Name == rp.DefaultBranch:
			return 1
		}
		return 0
	})
	d.Builds, err = h.Store.Builds(ctx, store.BuildFilter{Repo: rp.Name, Branch: d.Branch, Status: d.Status, Limit: 50})
	if err != nil {
		return err
	}
	return h.render(w, http.StatusOK, "repo", "layout", d)
}

func (h *Handler) trigger(w http.ResponseWriter, r *http.Request, s *session) error {
	repo := r.PostForm.Get("repo")
	if repo == "" {
		return badf("repo is required")
	}
	if err := s.id.Need(store.RoleDeveloper, repo); err != nil {
		return err
	}
	b, err := h.API.Trigger(r.Context(), s.id.User(), api.Trigger{Repo: repo, Branch: r.PostForm.Get("branch")})
	if err != nil {
		return err
	}
	if err := h.API.Audit(r, s.id, "build.trigger", fmt.Sprintf("build:%d", b.ID), map[string]string{
		"repo": b.Repo, "number": strconv.FormatInt(b.Number, 10), "branch": b.Branch, "commit": b.Commit, "via": "web"}); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/builds/%d", b.ID), http.StatusSeeOther)
	return nil
}

// buildOf reads the build the {id} path value names and checks that the
// user has role on its repo.
func (h *Handler) buildOf(r *http.Request, s *session, role string) (*store.Build, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return nil, badf("build ID %q: want a positive number", r.PathValue("id"))
	}
	b, err := h.Store.Build(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := s.id.NeedOnBuild(role, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleDeveloper)
	if err != nil {
		return err
	}
	cb, err := h.Builds.Cancel(r.Context(), b.ID, "cancelled by "+s.id.User())
	if err != nil {
		return err
	}
	if err := h.API.Audit(r, s.id, "build.cancel", fmt.Sprintf("build:%d", b.ID), map[string]string{
		"repo": b.Repo, "number": strconv.FormatInt(b.Number, 10), "status": cb.Status, "via": "web"}); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/builds/%d", b.ID), http.StatusSeeOther)
	return nil
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleDeveloper)
	if err != nil {
		return err
	}
	failed := r.PostForm.Get("failed") == "1"
	nb, err := h.Builds.Retry(r.Context(), b.ID, failed)
	if err != nil {
		return err
	}
	if err := h.API.Audit(r, s.id, "build.retry", fmt.Sprintf("build:%d", b.ID), map[string]string{
		"repo": b.Repo, "new_build": strconv.FormatInt(nb.ID, 10), "failed_only": strconv.FormatBool(failed), "via": "web"}); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/builds/%d", nb.ID), http.StatusSeeOther)
	return nil
}

// needsOf is what each job of b needs, from its stored pipeline; nothing
// when the pipeline cannot be read.
func needsOf(b *store.Build) map[string][]string {
	out := map[string][]string{}
	if len(b.Pipeline) == 0 {
		return out
	}
	pl, err := build.Plan(b)
	if err != nil {
		return out
	}
	for _, j := range pl.Jobs {
		out[j.Name] = j.Needs
	}
	return out
}

type stepRow struct {
	Index                         int
	Name, Status, Reason          string
	Duration, Exit, Href, RawHref string
	Selected                      bool
}

type buildData struct {
	base
	Build *store.Build
	Graph graph
	// Job is the job whose steps and log the page shows; nil when the
	// build has none.
	Job   *store.Job
	Step  int // -1: the whole job's log
	Steps []stepRow
	// AllHref shows the whole job's log.
	AllHref string
	// CanAct: the user is a developer on the repo (cancel, retry).
	CanAct      bool
	Finished    bool
	RetryFailed bool // some job did not succeed
	Log         *logView
}

// buildView is the build page without its log: what the state events
// re-render as the build changes.
func (h *Handler) buildView(s *session, b *store.Build, jobName string, step int) *buildData {
	d := &buildData{base: baseOf(s, fmt.Sprintf("%s #%d", b.Repo, b.Number), "/"), Build: b, Step: step,
		CanAct: s.id.Can(store.RoleDeveloper, b.Repo), Finished: store.Finished(b.Status)}
	for _, j := range b.Jobs {
		if j.Name == jobName {
			d.Job = j
		}
		if store.Finished(j.Status) && j.Status != store.StatusSuccess && j.Status != store.StatusSkipped {
			d.RetryFailed = true
		}
	}
	if d.Job == nil {
		d.Job = defaultJob(b)
	}
	name := ""
	if d.Job != nil {
		name = d.Job.Name
		q := url.Values{"job": {name}}
		d.AllHref = fmt.Sprintf("/builds/%d?%s#log", b.ID, q.Encode())
		for _, st := range d.Job.Steps {
			q.Set("step", strconv.Itoa(st.Index))
			d.Steps = append(d.Steps, stepRow{Index: st.Index, Name: st.Name, Status: st.Status, Reason: st.Reason,
				Duration: duration(st.StartedAt, st.FinishedAt), Exit: exitCode(st.ExitCode, st.Status),
				Href: fmt.Sprintf("/builds/%d?%s#log", b.ID, q.Encode()), RawHref: fmt.Sprintf("/builds/%d/raw?%s", b.ID, q.Encode()),
				Selected: st.Index == step})
		}
	}
	d.Graph = layout(b.Jobs, needsOf(b), name)
	return d
}

// defaultJob is the job a build page opens on: the first that failed, else
// the first that runs, else the first.
func defaultJob(b *store.Build) *store.Job {
	for _, want := range []func(string) bool{
		func(st string) bool { return st == store.StatusFailure || st == store.StatusError },
		func(st string) bool { return st == store.StatusRunning },
		func(string) bool { return true },
	} {
		for _, j := range b.Jobs {
			if want(j.Status) {
				return j
			}
		}
	}
	return nil
}

func (h *Handler) buildPage(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := h.buildOf(r, s, store.RoleViewer)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	step := -1
	var cur cursor
	if q.Get("job") != "" {
		if _, step, cur, err = logQuery(r, b); err != nil {
			return err
		}
	}
	d := h.buildView(s, b, q.Get("job"), step)
	if d.Job != nil {
		if d.Log, err = h.logView(r.Context(), b, d.Job, step, cur); err != nil {
			return err
		}
	}
	if !d.Finished && d.Log == nil {
		d.Live = fmt.Sprintf("/builds/%d/events", b.ID)
	}
	return h.render(w, http.StatusOK, "build", "layout", d)
}
