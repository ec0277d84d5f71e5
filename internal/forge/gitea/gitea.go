// Package gitea is Gantry's adapter for Gitea and Forgejo webhooks (Forgejo
// is a fork of Gitea and sends the same payloads): it verifies a delivery's
// signature and turns its body into [forge.Event] values, whose Forge is
// "gitea" for both.
//
// What it does:
//
//   - Verify checks the first signature header present of X-Forgejo-Signature
//     and X-Gitea-Signature (the bare hex HMAC-SHA256 of the raw body keyed
//     with the webhook's secret) and X-Hub-Signature-256 ("sha256=" and the
//     same hex), in constant time. Gitea sends all of them, with empty
//     values when the hook has no secret; an empty header counts as absent.
//     The SHA-1 X-Hub-Signature is not accepted.
//   - Parse reads X-Forgejo-Event, else X-Gitea-Event, and the body (JSON, or
//     the payload field of a form-encoded body). "push" becomes a Push or
//     Tag event; "pull_request" with action opened, synchronized or reopened
//     becomes a PullRequest event; "delete" becomes a deletion, because Gitea
//     sends no push event when a branch is deleted. A tag deletion arrives
//     twice, as a push to the zero SHA and as "delete": two Deleted events.
//     Everything else comes back Ignored with a reason. Gitea has no ping
//     event; its "Test delivery" button sends a push.
//
// What it does not do: post commit statuses, call the Gitea API, or handle
// Gogs (whose X-Gogs-* copies Gitea also sends are ignored).
//
// Changed paths: Gitea lists at most FEED_MAX_COMMIT_NUM commits (5 by
// default) and says how many there were in total_commits. Without
// total_commits (older Gitea) the list cannot be known to be complete, and
// ChangedPaths is nil.
//
// Redeliveries: X-Forgejo-Delivery / X-Gitea-Delivery is the UUID of one hook
// task. Gitea does not retry a failed delivery by itself, and "Redeliver"
// copies the payload into a new hook task with a new UUID (models/webhook
// ReplayHookTask; the fixtures README does not cover this), so the ID does
// not catch a redelivery: deduplicate on the payload (repository, ref,
// commit) instead.
package gitea

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Webhook returns the Gitea and Forgejo adapter, to be served at
// /hooks/gitea.
func Webhook() forge.Webhook {
	return forge.Webhook{Name: "gitea", Verify: Verify, Parse: Parse}
}

// Verify checks the first non-empty one of X-Forgejo-Signature,
// X-Gitea-Signature and X-Hub-Signature-256 against the HMAC-SHA256 of body
// keyed with secret. It returns nil or an error wrapping
// [forge.ErrSignature] that names what is wrong.
func Verify(h http.Header, body []byte, secret string) error {
	headers := []struct{ name, prefix string }{
		{"X-Forgejo-Signature", ""},
		{"X-Gitea-Signature", ""},
		{"X-Hub-Signature-256", "sha256="},
	}
	for _, s := range headers {
		if v := h.Get(s.name); v != "" && v != s.prefix {
			return wire.VerifyHMAC(s.name, v, s.prefix, body, secret)
		}
	}
	if secret == "" {
		return wire.VerifyHMAC(headers[0].name, "", "", body, secret)
	}
	return fmt.Errorf("missing X-Forgejo-Signature, X-Gitea-Signature and X-Hub-Signature-256 headers (is a secret set on the webhook?): %w", forge.ErrSignature)
}

// Parse turns a verified Gitea or Forgejo delivery into exactly one event.
// Its errors wrap [forge.ErrMalformed].
func Parse(h http.Header, body []byte) ([]forge.Event, error) {
	_, delivery := wire.FirstHeader(h, "X-Forgejo-Delivery", "X-Gitea-Delivery")
	e := forge.Event{Forge: "gitea", DeliveryID: delivery}
	_, event := wire.FirstHeader(h, "X-Forgejo-Event", "X-Gitea-Event")
	if event == "" {
		return nil, fmt.Errorf("missing X-Forgejo-Event and X-Gitea-Event headers: %w", forge.ErrMalformed)
	}
	body, err := wire.FormPayload(h, body)
	if err != nil {
		return nil, err
	}
	switch event {
	case "push":
		return parsePush(e, body)
	case "pull_request", "pull_request_sync":
		// Current Gitea sends "pull_request" for every pull request event
		// type (assign, label, sync, ...) and the exact type in
		// X-Gitea-Event-Type; the body's action tells them apart.
		return parsePullRequest(e, body)
	case "delete":
		return parseDelete(e, body)
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
	Login    string `json:"login"`
	UserName string `json:"username"`
	Email    string `json:"email"`
}

func (u user) name() string {
	if u.Login != "" {
		return u.Login
	}
	return u.UserName
}

type pushPayload struct {
	Ref          string        `json:"ref"`
	Before       string        `json:"before"`
	After        string        `json:"after"`
	CompareURL   string        `json:"compare_url"`
	Commits      []wire.Commit `json:"commits"`
	TotalCommits *int          `json:"total_commits"`
	HeadCommit   *wire.Commit  `json:"head_commit"`
	Pusher       user          `json:"pusher"`
	Repository   *repository   `json:"repository"`
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
	e.Author, e.AuthorEmail = p.Pusher.name(), p.Pusher.Email
	e.URL = p.CompareURL
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
	if after == "" {
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
	// For a created branch Gitea lists the newest commits of its history,
	// not what the push added, so only a push to an existing branch whose
	// list is known to be whole has changed paths.
	if kind == forge.Push && e.Before != "" && p.TotalCommits != nil && *p.TotalCommits == len(p.Commits) {
		e.ChangedPaths = wire.ChangedPaths(p.Commits)
	}
	return []forge.Event{e}, nil
}

type branch struct {
	Ref    string      `json:"ref"`
	SHA    string      `json:"sha"`
	RepoID int64       `json:"repo_id"`
	Repo   *repository `json:"repo"`
}

func (b branch) repoID() int64 {
	if b.RepoID != 0 || b.Repo == nil {
		return b.RepoID
	}
	return b.Repo.ID
}

type pullRequestPayload struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
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
	e.Author, e.AuthorEmail = pr.User.name(), pr.User.Email
	e.Branch, e.BaseBranch = pr.Head.Ref, pr.Base.Ref
	e.FromFork = fromFork(pr.Head, pr.Base, repo)
	switch {
	case pr.Head.Repo != nil && pr.Head.Repo.FullName != "":
		e.HeadRepo = pr.Head.Repo.FullName
	case !e.FromFork:
		// An abridged payload names no head repository, but the IDs
		// say it is the base.
		e.HeadRepo = e.Repo
	}
	e.Action = p.Action
	if p.Action == "closed" && pr.Merged {
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
	e.Kind = forge.PullRequest
	return []forge.Event{e}, nil
}

// fromFork reports whether a pull request's head lives in another repository
// than its base, by repository ID where the payload gives one and by name
// otherwise. When it says neither, the head counts as a fork.
func fromFork(head, base branch, repo *repository) bool {
	baseID := base.repoID()
	if baseID == 0 {
		baseID = repo.ID
	}
	if headID := head.repoID(); headID != 0 && baseID != 0 {
		return headID != baseID
	}
	if head.Repo == nil || head.Repo.FullName == "" {
		return true
	}
	return head.Repo.FullName != repo.FullName
}

type deletePayload struct {
	Ref        string      `json:"ref"`
	RefType    string      `json:"ref_type"`
	Repository *repository `json:"repository"`
	Sender     user        `json:"sender"`
}

func parseDelete(e forge.Event, body []byte) ([]forge.Event, error) {
	const what = "delete payload"
	var p deletePayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	if p.Repository == nil || p.Repository.FullName == "" {
		return nil, wire.Malformed(what, "missing repository.full_name")
	}
	e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.CloneURL
	e.Author, e.AuthorEmail = p.Sender.name(), p.Sender.Email
	// Gitea sends the short name; accept a full one too.
	name := strings.TrimPrefix(strings.TrimPrefix(p.Ref, "refs/heads/"), "refs/tags/")
	if name == "" {
		return nil, wire.Malformed(what, "missing ref")
	}
	switch p.RefType {
	case "branch":
		e.Kind, e.Branch = forge.Push, name
	case "tag":
		e.Kind, e.Tag = forge.Tag, name
	default:
		return wire.Ignore(e, "deletion of a %s is not a branch or tag deletion", wire.Name(p.RefType)), nil
	}
	e.Deleted = true
	return []forge.Event{e}, nil
}

type otherPayload struct {
	Repository *repository `json:"repository"`
	Sender     user        `json:"sender"`
}

func parseOther(e forge.Event, event string, body []byte) ([]forge.Event, error) {
	var p otherPayload
	if err := wire.Decode(wire.Name(event)+" payload", body, &p); err != nil {
		return nil, err
	}
	if p.Repository != nil {
		e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.CloneURL
	}
	e.Author = p.Sender.name()
	if event == "create" {
		return wire.Ignore(e, "create events are not built: the push event for the same ref is"), nil
	}
	return wire.Ignore(e, "%s events are not built", wire.Name(event)), nil
}
