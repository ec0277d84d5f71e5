// Package github is Gantry's adapter for GitHub webhooks (github.com and
// GitHub Enterprise Server): it verifies a delivery's signature and turns its
// body into [forge.Event] values.
//
// What it does:
//
//   - Verify checks X-Hub-Signature-256, "sha256=" and the hex HMAC-SHA256 of
//     the raw body keyed with the webhook's secret, in constant time. The
//     legacy SHA-1 X-Hub-Signature is not accepted.
//   - Parse reads X-GitHub-Event and the body (JSON, or the payload field of
//     a form-encoded body). "push" becomes a Push or Tag event (a deletion
//     when the payload says deleted), "pull_request" with action opened,
//     synchronize or reopened becomes a PullRequest event, "ping" becomes a
//     Ping. Every other event, and every other pull_request action, comes
//     back Ignored with a reason; "create" and "delete" are ignored because
//     GitHub sends a push event for the same ref change.
//
// What it does not do: post commit statuses or checks, call the GitHub API,
// handle GitHub App installation events, or resolve more than the 2048
// commits GitHub lists in a push (a longer push has nil ChangedPaths).
//
// Redeliveries: X-GitHub-Delivery identifies the event, and a redelivery from
// the hook's settings page carries the same GUID (fixtures README, citing
// github/docs#32822), so it is a sound key for deduplication. The header is
// not signed, though: a captured delivery replayed with a fresh GUID still
// verifies.
package github

import (
	"fmt"
	"net/http"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// maxCommits is the most commits GitHub lists in a push payload; a list this
// long may have been cut short.
const maxCommits = 2048

// Webhook returns the GitHub adapter, to be served at /hooks/github.
func Webhook() forge.Webhook {
	return forge.Webhook{Name: "github", Verify: Verify, Parse: Parse}
}

// Verify checks the X-Hub-Signature-256 header of a delivery against the
// HMAC-SHA256 of body keyed with secret. It returns nil or an error wrapping
// [forge.ErrSignature] that names what is wrong.
func Verify(h http.Header, body []byte, secret string) error {
	return wire.VerifyHMAC("X-Hub-Signature-256", h.Get("X-Hub-Signature-256"), "sha256=", body, secret)
}

// Parse turns a verified GitHub delivery into exactly one event. Its errors
// wrap [forge.ErrMalformed].
func Parse(h http.Header, body []byte) ([]forge.Event, error) {
	e := forge.Event{Forge: "github", DeliveryID: h.Get("X-GitHub-Delivery")}
	event := h.Get("X-GitHub-Event")
	if event == "" {
		return nil, fmt.Errorf("missing X-GitHub-Event header: %w", forge.ErrMalformed)
	}
	body, err := wire.FormPayload(h, body)
	if err != nil {
		return nil, err
	}
	switch event {
	case "push":
		return parsePush(e, body)
	case "pull_request":
		return parsePullRequest(e, body)
	case "ping":
		return parsePing(e, body)
	default:
		return parseOther(e, event, body)
	}
}

type repository struct {
	ID       int64  `json:"id"`
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
}

type user struct {
	Login string `json:"login"`
	Email string `json:"email"`
}

type pushPayload struct {
	Ref        string        `json:"ref"`
	Before     string        `json:"before"`
	After      string        `json:"after"`
	Created    bool          `json:"created"`
	Deleted    bool          `json:"deleted"`
	Forced     bool          `json:"forced"`
	Compare    string        `json:"compare"`
	Commits    []wire.Commit `json:"commits"`
	HeadCommit *wire.Commit  `json:"head_commit"`
	Pusher     struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"pusher"`
	Repository *repository `json:"repository"`
}

func parsePush(e forge.Event, body []byte) ([]forge.Event, error) {
	const what = "push payload"
	var p pushPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	if p.Repository == nil || p.Repository.FullName == "" {
		return nil, wire.Malformed(what, "missing repository.full_name")
	}
	e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.CloneURL
	e.Author, e.AuthorEmail = p.Pusher.Name, p.Pusher.Email
	e.URL = p.Compare
	if p.Ref == "" {
		return nil, wire.Malformed(what, "missing ref")
	}
	if p.After == "" {
		return nil, wire.Malformed(what, "missing after")
	}
	after, err := wire.SHA(what, "after", p.After)
	if err != nil {
		return nil, err
	}
	if e.Before, err = wire.SHA(what, "before", p.Before); err != nil {
		return nil, err
	}
	var head string
	if p.HeadCommit != nil {
		if head, err = wire.SHA(what, "head_commit.id", p.HeadCommit.ID); err != nil {
			return nil, err
		}
	}
	kind, name, ok := wire.SplitRef(p.Ref)
	if !ok {
		return wire.Ignore(e, "push to %s is not a branch or tag push", wire.Name(p.Ref)), nil
	}
	e.Kind = kind
	if kind == forge.Tag {
		e.Tag = name
	} else {
		e.Branch = name
	}
	if p.Deleted || after == "" {
		e.Deleted = true
		return []forge.Event{e}, nil
	}
	e.Commit = after
	if kind == forge.Tag && head != "" {
		// For an annotated tag, after is the tag object; head_commit is
		// the commit it points at, which is what gets built.
		e.Commit = head
	}
	if head == e.Commit {
		e.Message = wire.Message(p.HeadCommit.Message)
	} else {
		e.Message = wire.MessageOf(p.Commits, e.Commit)
	}
	// The commit list is the compare between before and after only for an
	// ordinary push to an existing branch: a created ref has no before, a
	// forced push drops commits the list does not show, and the list stops
	// at maxCommits.
	if kind == forge.Push && e.Before != "" && !p.Created && !p.Forced && len(p.Commits) < maxCommits {
		e.ChangedPaths = wire.ChangedPaths(p.Commits)
	}
	return []forge.Event{e}, nil
}

type branch struct {
	Ref  string      `json:"ref"`
	SHA  string      `json:"sha"`
	Repo *repository `json:"repo"`
}

type pullRequestPayload struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	Before      string `json:"before"`
	PullRequest *struct {
		Number  int    `json:"number"`
		Title   string `json:"title"`
		HTMLURL string `json:"html_url"`
		Merged  bool   `json:"merged"`
		User    user   `json:"user"`
		Head    branch `json:"head"`
		Base    branch `json:"base"`
	} `json:"pull_request"`
	Repository *repository `json:"repository"`
}

func parsePullRequest(e forge.Event, body []byte) ([]forge.Event, error) {
	const what = "pull_request payload"
	var p pullRequestPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	pr := p.PullRequest
	if pr == nil {
		return nil, wire.Malformed(what, "missing pull_request")
	}
	repo := p.Repository
	if repo == nil || repo.FullName == "" {
		repo = pr.Base.Repo
	}
	if repo == nil || repo.FullName == "" {
		return nil, wire.Malformed(what, "missing repository.full_name")
	}
	e.Repo, e.CloneURL = repo.FullName, repo.CloneURL
	e.PullRequest = pr.Number
	if e.PullRequest == 0 {
		e.PullRequest = p.Number
	}
	if e.PullRequest <= 0 {
		return nil, wire.Malformed(what, "missing pull_request.number")
	}
	e.Title, e.URL = pr.Title, pr.HTMLURL
	e.Author, e.AuthorEmail = pr.User.Login, pr.User.Email
	e.Branch, e.BaseBranch = pr.Head.Ref, pr.Base.Ref
	if pr.Head.Repo != nil {
		e.HeadRepo = pr.Head.Repo.FullName
	}
	base := pr.Base.Repo
	if base == nil {
		base = repo
	}
	e.FromFork = fromFork(pr.Head.Repo, base)
	e.Action = p.Action
	switch {
	case p.Action == "synchronize":
		e.Action = "synchronized"
	case p.Action == "closed" && pr.Merged:
		e.Action = "merged"
	}
	switch e.Action {
	case "opened", "synchronized", "reopened":
	default:
		return wire.Ignore(e, "pull_request action %s is not built", wire.Name(e.Action)), nil
	}
	var err error
	if e.Commit, err = wire.SHA(what, "pull_request.head.sha", pr.Head.SHA); err != nil {
		return nil, err
	}
	if e.Commit == "" {
		return nil, wire.Malformed(what, "missing pull_request.head.sha")
	}
	if e.Branch == "" || e.BaseBranch == "" {
		return nil, wire.Malformed(what, "missing pull_request.head.ref or base.ref")
	}
	if e.Before, err = wire.SHA(what, "before", p.Before); err != nil {
		return nil, err
	}
	e.Kind = forge.PullRequest
	return []forge.Event{e}, nil
}

// fromFork reports whether a pull request's head lives in another repository
// than its base. A head repository the payload does not describe (GitHub
// sends null once a fork is deleted) counts as a fork.
func fromFork(head, base *repository) bool {
	if head == nil || base == nil {
		return true
	}
	if head.ID != 0 && base.ID != 0 {
		return head.ID != base.ID
	}
	return head.FullName == "" || head.FullName != base.FullName
}

type otherPayload struct {
	Repository *repository `json:"repository"`
	Sender     user        `json:"sender"`
}

func parsePing(e forge.Event, body []byte) ([]forge.Event, error) {
	var p otherPayload
	if err := wire.Decode("ping payload", body, &p); err != nil {
		return nil, err
	}
	// An organization or app hook's ping has no repository.
	if p.Repository != nil {
		e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.CloneURL
	}
	e.Author = p.Sender.Login
	e.Kind = forge.Ping
	return []forge.Event{e}, nil
}

func parseOther(e forge.Event, event string, body []byte) ([]forge.Event, error) {
	var p otherPayload
	if err := wire.Decode(wire.Name(event)+" payload", body, &p); err != nil {
		return nil, err
	}
	if p.Repository != nil {
		e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.CloneURL
	}
	e.Author = p.Sender.Login
	switch event {
	case "create", "delete":
		return wire.Ignore(e, "%s events are not built: the push event for the same ref is", event), nil
	}
	return wire.Ignore(e, "%s events are not built", wire.Name(event)), nil
}
