package github

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

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

// maxDescription is the longest description GitHub takes.
const maxDescription = 140

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

// state maps Gantry's states to GitHub's: error, failure, pending, success.
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

// Status makes the request that posts s.
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	owner, name, ok := wire.SplitRepo(s.Repo)
	if !ok {
		return nil, fmt.Errorf("github status: repo %q is not OWNER/NAME", s.Repo)
	}
	u := fmt.Sprintf("%s/repos/%s/%s/statuses/%s", strings.TrimSuffix(apiURL, "/"),
		url.PathEscape(owner), url.PathEscape(name), url.PathEscape(s.Commit))
	return wire.JSONRequest(u, struct {
		State       string `json:"state"`
		TargetURL   string `json:"target_url,omitempty"`
		Description string `json:"description,omitempty"`
		Context     string `json:"context"`
	}{state(s.State), s.TargetURL, forge.Truncate(s.Description, maxDescription), s.Context},
		map[string]string{"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": APIVersion})
}

// Authorize sends token as "Authorization: Bearer TOKEN", which GitHub
// takes for personal access tokens and GitHub App installation tokens.
func Authorize(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
}
