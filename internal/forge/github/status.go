package github

import (
	"fmt"
	"net/http"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Reporter returns the GitHub commit-status adapter: "Create a commit
// status", POST /repos/{owner}/{repo}/statuses/{sha}, with the headers
// GitHub's REST docs ask for (Accept: application/vnd.github+json,
// X-GitHub-Api-Version) and the token as a Bearer credential.
func Reporter() forge.Reporter {
	return forge.Reporter{Name: "github", APIURL: APIURL, Status: Status, Authorize: Authorize}
}

// APIVersion is the REST API version requested.
const APIVersion = "2022-11-28"

// APIURL is https://api.github.com for github.com, and HOST/api/v3 for a
// GitHub Enterprise Server reached over HTTP(S).
func APIURL(cloneURL, repo string) (string, error) {
	r, err := wire.ParseRemote(cloneURL, repo)
	if err != nil {
		return "", err
	}
	switch {
	case r.Host == "github.com" || r.Host == "www.github.com":
		return "https://api.github.com", nil
	case r.Web == "":
		return "", fmt.Errorf("clone URL %q of a GitHub Enterprise Server is not HTTP(S): %w", cloneURL, forge.ErrNoAPIURL)
	}
	return r.Web + "/api/v3", nil
}

// Status makes the request that posts s: the commit statuses API that
// GitHub defined and Gitea copied (wire.CommitStatus).
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	return wire.CommitStatus("github", apiURL, s, map[string]string{"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": APIVersion})
}

// Authorize sends token as "Authorization: Bearer TOKEN", which GitHub
// takes for personal access tokens and GitHub App installation tokens.
func Authorize(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
}
