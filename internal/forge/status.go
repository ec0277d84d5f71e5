package forge

import (
	"errors"
	"net/http"
)

// State is a build's or a job's state as Gantry reports it on a commit.
// Each [Reporter] maps it to its forge's own vocabulary.
type State string

// The states Gantry reports.
const (
	StatePending   State = "pending" // queued, or waiting for the jobs it needs
	StateRunning   State = "running"
	StateSuccess   State = "success"
	StateFailure   State = "failure" // a step failed
	StateError     State = "error"   // the machinery failed (no agent, a bad pipeline file)
	StateCancelled State = "cancelled"
	StateSkipped   State = "skipped" // a job whose `if:` was false
)

// Status is one commit status: the state of a build (Context "gantry") or
// of one of its jobs ("gantry/test") on one commit.
type Status struct {
	// Repo is the repository's full name as the forge spells it (GitLab:
	// the path with namespace, subgroups included).
	Repo string
	// Commit is the full SHA the status is about.
	Commit string
	// Ref is the branch or tag built; for a pull request, its source
	// branch (which GitLab and Bitbucket want to tie a status to it).
	Ref string
	// Context names the status, so that branch protection can require it.
	Context     string
	State       State
	Description string
	// TargetURL links to the build's page.
	TargetURL string
}

// Request is an HTTP request to a forge's API, not yet sent: plain data,
// so it can be stored and sent later, by another server. It carries no
// credential: [Reporter.Authorize] adds that when it is sent.
type Request struct {
	Method string
	URL    string
	Header map[string]string
	Body   []byte
}

// ErrNoAPIURL means a forge's API URL cannot be told from a clone URL (a
// local path, or ssh to a self-hosted forge): the repo needs one set.
var ErrNoAPIURL = errors.New("cannot tell the forge's API URL from the clone URL")

// Reporter is one forge's commit-status adapter, the outbound twin of
// [Webhook]. Its functions are pure: safe for concurrent use, no I/O.
type Reporter struct {
	// Name is the forge's name, as in [Event.Forge].
	Name string
	// APIURL is the base URL of the forge's API for a repository with
	// this clone URL and full name. Its errors wrap [ErrNoAPIURL].
	APIURL func(cloneURL, repo string) (string, error)
	// Status makes the request that posts s through the API at apiURL.
	Status func(apiURL string, s Status) (*Request, error)
	// Authorize sets on h the header that carries token, in the scheme
	// the forge documents for it.
	Authorize func(h http.Header, token string)
}

// Truncate shortens s to at most n runes, ending in "…" when it cut.
// Forges refuse long descriptions (GitHub at 140 characters, GitLab at
// 255) rather than cutting them.
func Truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
