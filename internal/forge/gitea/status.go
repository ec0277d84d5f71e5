package gitea

import (
	"fmt"
	"net/http"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Reporter returns the Gitea and Forgejo commit-status adapter:
// repoCreateStatus, POST /repos/{owner}/{repo}/statuses/{sha} under
// /api/v1, with the token as "Authorization: token TOKEN".
func Reporter() forge.Reporter {
	return forge.Reporter{Name: "gitea", APIURL: APIURL, Status: Status, Authorize: Authorize}
}

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

// Status makes the request that posts s: the commit statuses API that
// GitHub defined and Gitea copied (wire.CommitStatus).
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	return wire.CommitStatus("gitea", apiURL, s, map[string]string{"Accept": "application/json"})
}

// Authorize sends token as "Authorization: token TOKEN", the scheme of
// Gitea's AuthorizationHeaderToken.
func Authorize(h http.Header, token string) {
	h.Set("Authorization", "token "+token)
}
