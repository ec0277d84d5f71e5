package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

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
