package bitbucket

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Reporter returns the Bitbucket Cloud commit-status adapter: "Create a
// build status for a commit", POST
// /repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build on
// https://api.bitbucket.org/2.0.
func Reporter() forge.Reporter {
	return forge.Reporter{Name: "bitbucket", APIURL: APIURL, Status: Status, Authorize: Authorize}
}

// maxKey keeps a status key short; a longer one is shortened with a hash,
// and the full context goes in the name.
const maxKey = 40

// APIURL is https://api.bitbucket.org/2.0 for repositories on
// bitbucket.org; Bitbucket Data Center has another API.
func APIURL(cloneURL, repo string) (string, error) {
	r, err := wire.ParseRemote(cloneURL, repo)
	if err != nil {
		return "", err
	}
	if r.Host != "bitbucket.org" {
		return "", fmt.Errorf("clone URL %q is not on bitbucket.org: %w", cloneURL, forge.ErrNoAPIURL)
	}
	return "https://api.bitbucket.org/2.0", nil
}

// state maps Gantry's states to Bitbucket's: INPROGRESS, SUCCESSFUL,
// FAILED, STOPPED.
func state(s forge.State) string {
	switch s {
	case forge.StateSuccess, forge.StateSkipped:
		return "SUCCESSFUL"
	case forge.StateFailure, forge.StateError:
		return "FAILED"
	case forge.StateCancelled:
		return "STOPPED"
	}
	return "INPROGRESS"
}

// key is the status key for a context: the context itself when short.
func key(context string) string {
	if len(context) <= maxKey {
		return context
	}
	sum := sha256.Sum256([]byte(context))
	return strings.ToValidUTF8(context[:maxKey-13], "") + "-" + hex.EncodeToString(sum[:6])
}

// Status makes the request that posts s. The key names the status (one
// per context), refname ties it to a pull request's source branch.
func Status(apiURL string, s forge.Status) (*forge.Request, error) {
	workspace, slug, ok := wire.SplitRepo(s.Repo)
	if !ok {
		return nil, fmt.Errorf("bitbucket status: repo %q is not WORKSPACE/SLUG", s.Repo)
	}
	u := fmt.Sprintf("%s/repositories/%s/%s/commit/%s/statuses/build", strings.TrimSuffix(apiURL, "/"),
		url.PathEscape(workspace), url.PathEscape(slug), url.PathEscape(s.Commit))
	return wire.JSONRequest(u, struct {
		Key         string `json:"key"`
		State       string `json:"state"`
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		URL         string `json:"url,omitempty"`
		Refname     string `json:"refname,omitempty"`
	}{key(s.Context), state(s.State), s.Context, forge.Truncate(s.Description, 255), s.TargetURL, s.Ref},
		map[string]string{"Accept": "application/json"})
}

// Authorize sends an access token (repository, project or workspace) as
// a Bearer credential, and USER:APP_PASSWORD as Basic authentication.
func Authorize(h http.Header, token string) {
	if strings.Contains(token, ":") {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(token)))
		return
	}
	h.Set("Authorization", "Bearer "+token)
}
