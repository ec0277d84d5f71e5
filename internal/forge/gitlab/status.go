package gitlab

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Reporter returns the GitLab commit-status adapter: "Set the pipeline
// status of a commit", POST /projects/:id/statuses/:sha under /api/v4, the
// project named by its URL-encoded path, the token in PRIVATE-TOKEN.
func Reporter() forge.Reporter {
	return forge.Reporter{Name: "gitlab", APIURL: APIURL, Status: Status, Authorize: Authorize}
}

// maxText is the longest target_url and description GitLab takes.
const maxText = 255

// APIURL is the instance's web root (relative URL root included) followed
// by /api/v4: https://gitlab.com/api/v4 for gitlab.com, whatever the clone
// URL's scheme.
func APIURL(cloneURL, repo string) (string, error) {
	r, err := wire.ParseRemote(cloneURL, repo)
	if err != nil {
		return "", err
	}
	switch {
	case r.Host == "gitlab.com":
		return "https://gitlab.com/api/v4", nil
	case r.Web == "":
		return "", fmt.Errorf("clone URL %q of a self-managed GitLab is not HTTP(S): %w", cloneURL, forge.ErrNoAPIURL)
	}
	return r.Web + "/api/v4", nil
}

// state maps Gantry's states to GitLab's: pending, running, success,
// failed, canceled. A skipped job is reported as success: "skipped" is
// not known to every GitLab release.
func state(s forge.State) string {
	switch s {
	case forge.StateRunning:
		return "running"
	case forge.StateSuccess, forge.StateSkipped:
		return "success"
	case forge.StateFailure, forge.StateError:
		return "failed"
	case forge.StateCancelled:
		return "canceled"
	}
	return "pending"
}

// Status makes the request that posts s. The context becomes the status's
// name; the ref ties it to a branch (a merge request's source branch).
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	if s.Repo == "" || strings.HasPrefix(s.Repo, "/") || strings.HasSuffix(s.Repo, "/") || !strings.Contains(s.Repo, "/") {
		return nil, fmt.Errorf("gitlab status: project path %q is not GROUP/NAME", s.Repo)
	}
	u := fmt.Sprintf("%s/projects/%s/statuses/%s", strings.TrimSuffix(apiURL, "/"),
		url.PathEscape(s.Repo), url.PathEscape(s.Commit))
	return wire.JSONRequest(u, struct {
		State       string `json:"state"`
		Ref         string `json:"ref,omitempty"`
		Name        string `json:"name"`
		TargetURL   string `json:"target_url,omitempty"`
		Description string `json:"description,omitempty"`
	}{state(s.State), s.Ref, s.Context, s.TargetURL, forge.Truncate(s.Description, maxText)},
		map[string]string{"Accept": "application/json"})
}

// Authorize sends token in the PRIVATE-TOKEN header, which GitLab takes
// for personal, project and group access tokens.
func Authorize(h http.Header, token string) {
	h.Set("PRIVATE-TOKEN", token)
}
