package gitea

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Reporter returns the Gitea and Forgejo commit-status adapter:
// repoCreateStatus, POST /repos/{owner}/{repo}/statuses/{sha} under
// /api/v1, with the token as "Authorization: token TOKEN".
func Reporter() forge.Reporter {
	return forge.Reporter{Name: "gitea", APIURL: APIURL, Status: Status, Authorize: Authorize}
}

// maxDescription keeps descriptions as short as GitHub's, which Gitea's
// status API mirrors.
const maxDescription = 140

// APIURL is the forge's web root (subpath included) followed by /api/v1;
// only an HTTP(S) clone URL tells where the web root is.
func APIURL(cloneURL, repo string) (string, error) {
	r, err := wire.ParseRemote(cloneURL, repo)
	if err != nil {
		return "", err
	}
	if r.Web == "" {
		return "", fmt.Errorf("clone URL %q is not HTTP(S): %w", cloneURL, forge.ErrNoAPIURL)
	}
	return r.Web + "/api/v1", nil
}

// state maps Gantry's states to Gitea's CommitStatusState: pending,
// success, error, failure (the four every release knows).
func state(s forge.State) string {
	switch s {
	case forge.StateSuccess, forge.StateSkipped:
		return "success"
	case forge.StateFailure:
		return "failure"
	case forge.StateError, forge.StateCancelled:
		return "error"
	}
	return "pending"
}

// Status makes the request that posts s (CreateStatusOption).
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	owner, name, ok := wire.SplitRepo(s.Repo)
	if !ok {
		return nil, fmt.Errorf("gitea status: repo %q is not OWNER/NAME", s.Repo)
	}
	u := fmt.Sprintf("%s/repos/%s/%s/statuses/%s", strings.TrimSuffix(apiURL, "/"),
		url.PathEscape(owner), url.PathEscape(name), url.PathEscape(s.Commit))
	return wire.JSONRequest(u, struct {
		State       string `json:"state"`
		TargetURL   string `json:"target_url,omitempty"`
		Description string `json:"description,omitempty"`
		Context     string `json:"context"`
	}{state(s.State), s.TargetURL, forge.Truncate(s.Description, maxDescription), s.Context},
		map[string]string{"Accept": "application/json"})
}

// Authorize sends token as "Authorization: token TOKEN", the scheme of
// Gitea's AuthorizationHeaderToken.
func Authorize(h http.Header, token string) {
	h.Set("Authorization", "token "+token)
}
