package wire

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
)

// Remote is where a clone URL points: the web root of the forge that
// serves the repository.
type Remote struct {
	// Host is the host name, without a port.
	Host string
	// Web is the forge's web root for HTTP(S) clone URLs: scheme, host,
	// port, and the path prefix a forge served under a subpath has
	// (https://example.com/git). Empty for ssh clone URLs, whose port and
	// scheme say nothing about the web server's.
	Web string
}

// ParseRemote reads a clone URL of repo (its full name, OWNER/NAME or a
// GitLab path with subgroups): https://host/prefix/OWNER/NAME(.git),
// ssh://git@host/OWNER/NAME.git or git@host:OWNER/NAME.git. Its errors wrap
// [forge.ErrNoAPIURL].
func ParseRemote(cloneURL, repo string) (Remote, error) {
	fail := func(why string) (Remote, error) {
		return Remote{}, fmt.Errorf("clone URL %q %s: %w", cloneURL, why, forge.ErrNoAPIURL)
	}
	var host, path, scheme, port string
	switch {
	case strings.Contains(cloneURL, "://"):
		u, err := url.Parse(cloneURL)
		if err != nil || u.Host == "" {
			return fail("is not a URL with a host")
		}
		scheme, host, port, path = u.Scheme, u.Hostname(), u.Port(), u.Path
	default:
		// scp-like: [user@]host:path, with no slash before the colon.
		at, colon := strings.LastIndex(cloneURL, "@"), strings.Index(cloneURL, ":")
		if colon < 0 || strings.Contains(cloneURL[:colon], "/") {
			return fail("is a local path")
		}
		scheme, host, path = "ssh", cloneURL[at+1:colon], "/"+strings.TrimPrefix(cloneURL[colon+1:], "/")
	}
	if host == "" {
		return fail("has no host")
	}
	r := Remote{Host: strings.ToLower(host)}
	if scheme != "http" && scheme != "https" {
		return r, nil
	}
	path = strings.TrimSuffix(strings.TrimSuffix(path, "/"), ".git")
	prefix, ok := cutSuffixFold(path, "/"+repo)
	if !ok {
		return fail(fmt.Sprintf("does not end in the repository's name %q", repo))
	}
	r.Web = scheme + "://" + host
	if port != "" {
		r.Web += ":" + port
	}
	r.Web += prefix
	return r, nil
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) < len(suffix) || !strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return s, false
	}
	return s[:len(s)-len(suffix)], true
}

// SplitRepo splits OWNER/NAME; ok is false for anything else.
func SplitRepo(repo string) (owner, name string, ok bool) {
	owner, name, ok = strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return owner, name, true
}

// JSONRequest is a POST of v as JSON to url with the given headers.
func JSONRequest(url string, v any, header map[string]string) (*forge.Request, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range header {
		h[k] = v
	}
	return &forge.Request{Method: "POST", URL: url, Header: h, Body: body}, nil
}

// CommitStatus is the request that posts s to the commit statuses API
// GitHub defined and Gitea/Forgejo copied: POST
// {apiURL}/repos/OWNER/NAME/statuses/SHA with state (pending, success,
// error, failure), target_url, description (cut to 140 characters) and
// context. forgeName names the forge in errors.
func CommitStatus(forgeName, apiURL string, s forge.Status, header map[string]string) (*forge.Request, error) {
	owner, name, ok := SplitRepo(s.Repo)
	if !ok {
		return nil, fmt.Errorf("%s status: repo %q is not OWNER/NAME", forgeName, s.Repo)
	}
	u := fmt.Sprintf("%s/repos/%s/%s/statuses/%s", strings.TrimSuffix(apiURL, "/"),
		url.PathEscape(owner), url.PathEscape(name), url.PathEscape(s.Commit))
	return JSONRequest(u, struct {
		State       string `json:"state"`
		TargetURL   string `json:"target_url,omitempty"`
		Description string `json:"description,omitempty"`
		Context     string `json:"context"`
	}{commitState(s.State), s.TargetURL, forge.Truncate(s.Description, 140), s.Context}, header)
}

// commitState maps Gantry's states to the four of that API.
func commitState(s forge.State) string {
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
