package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/issue"
	"github.com/gantry-ci/gantry/internal/store"
)

// issueBuilds serves GET /api/v1/issues/{key}/builds: the builds whose
// branch, title or commit message name the key (ABC-123, or #123 escaped
// as %23123), newest first, those the caller may see.
func (h *Handler) issueBuilds(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if !issue.Valid(key) {
		return badRequestf("issue key %q: want a key such as ABC-123 or #123", key)
	}
	limit := 0
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequestf("limit %q: want 1 to 1000", l)
		}
		limit = n
	}
	builds, err := h.Store.IssueBuilds(r.Context(), key, limit)
	if err != nil {
		return err
	}
	out := []Build{}
	for _, b := range visible(r.Context(), builds, func(b *store.Build) string { return b.Repo }) {
		out = append(out, BuildOf(b))
	}
	return WriteJSON(w, http.StatusOK, out)
}

// IssueBuilds lists the builds that name an issue key, newest first.
func (c *Client) IssueBuilds(ctx context.Context, key string, limit int) ([]Build, error) {
	path := "/api/v1/issues/" + url.PathEscape(key) + "/builds"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out []Build
	return out, c.do(ctx, "GET", path, nil, &out)
}

// IssueReleases is what GET /api/v1/issues/{key}/releases answers: the
// releases that ship an issue, and the environments that run it now.
type IssueReleases struct {
	// Releases name the issue in their commits, newest first.
	Releases []Release `json:"releases"`
	// Running are the environments whose live release ships it: one of
	// Releases, or a newer release of the same branch (tags: a newer
	// tagged release), which carries the same commits.
	Running []IssueRunning `json:"running"`
}

// IssueRunning is an environment that runs an issue's change now.
type IssueRunning struct {
	Repo        string `json:"repo"`
	Environment string `json:"environment"`
	// Release is the release live there; Since when it went live.
	Release string    `json:"release"`
	Since   time.Time `json:"since"`
}

// issueReleases serves GET /api/v1/issues/{key}/releases.
func (h *Handler) issueReleases(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if !issue.Valid(key) {
		return badRequestf("issue key %q: want a key such as ABC-123 or #123", key)
	}
	ctx := r.Context()
	rels, err := h.Store.IssueReleases(ctx, key, 1000)
	if err != nil {
		return err
	}
	rels = visible(ctx, rels, func(rel *store.Release) string { return rel.Repo })
	out := IssueReleases{Releases: []Release{}, Running: []IssueRunning{}}
	// The oldest release that ships it, per repo and line (a branch, or
	// tags): every newer release of that line ships it too.
	type line struct{ repo, branch string }
	oldest := map[line]int64{}
	var repos []string
	for _, rel := range rels {
		out.Releases = append(out.Releases, ReleaseOf(rel))
		l := line{rel.Repo, lineOf(rel)}
		if _, ok := oldest[l]; !ok && !slices.Contains(repos, rel.Repo) {
			repos = append(repos, rel.Repo)
		}
		oldest[l] = rel.ID // newest first: the last one seen is the oldest
	}
	if h.Delivery == nil {
		return WriteJSON(w, http.StatusOK, out)
	}
	for _, repo := range repos {
		envs, err := h.Delivery.Environments(ctx, repo)
		if err != nil {
			return err
		}
		for _, e := range envs {
			if e.Current == nil {
				continue
			}
			live, err := h.Store.ReleaseByID(ctx, e.Current.ReleaseID)
			if err != nil {
				return err
			}
			if first, ok := oldest[line{repo, lineOf(live)}]; ok && live.ID >= first {
				out.Running = append(out.Running, IssueRunning{Repo: repo, Environment: e.Name, Release: live.Version,
					Since: e.Current.FinishedAt.UTC()})
			}
		}
	}
	return WriteJSON(w, http.StatusOK, out)
}

// lineOf is the line of releases rel belongs to: its branch, or tags.
func lineOf(rel *store.Release) string {
	if rel.Tag != "" {
		return "tags"
	}
	return "branch " + rel.Branch
}

// IssueReleases returns the releases that ship an issue key, and the
// environments that run it now.
func (c *Client) IssueReleases(ctx context.Context, key string) (IssueReleases, error) {
	var out IssueReleases
	return out, c.do(ctx, "GET", "/api/v1/issues/"+url.PathEscape(key)+"/releases", nil, &out)
}
