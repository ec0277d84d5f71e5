// Package gitlab is Gantry's adapter for GitLab webhooks (gitlab.com and
// self-managed): it checks a delivery's secret token and turns its body into
// [forge.Event] values.
//
// What it does:
//
//   - Verify compares X-Gitlab-Token with the webhook's secret token,
//     verbatim and in constant time. GitLab signs no body by default; the
//     Standard Webhooks signature (webhook-signature) that GitLab has behind
//     a feature flag is not checked.
//   - Parse reads X-Gitlab-Event. "Push Hook" and "Tag Push Hook" become Push
//     and Tag events (deletions when after is the zero SHA); "Merge Request
//     Hook" with action open, reopen, or update with new commits becomes a
//     PullRequest event; a "System Hook" is read by its object_kind the same
//     way. Every other event comes back Ignored with a reason.
//
// Merge request updates: GitLab sends action "update" for any change to a
// merge request (title, labels, assignees, draft status, description, target
// branch) as well as for a push to its source branch. Only an update that
// carries object_attributes.oldrev, which GitLab documents as present exactly
// when there are new commits (a push, an applied suggestion), is built, with
// action "synchronized"; any other update is ignored, because its head was
// built already. A merge request whose target branch changes is therefore not
// rebuilt until its next push.
//
// Commits: the commit built is checkout_sha, which for an annotated tag is the
// commit the tag points at (after is the tag object). GitLab lists at most 20
// commits of a push and gives the full count in total_commits_count; a
// shorter list than the count means ChangedPaths is nil.
//
// Authors: a push names the pusher (user_username, user_email); a merge
// request event names only the user who caused it, not the merge request's
// author, so Author is that actor. Emails GitLab hides as "[REDACTED]" come
// back empty.
//
// What it does not do: post commit statuses or pipelines, call the GitLab API,
// or reconstruct a compare URL beyond a link built from the project's web URL.
//
// Redeliveries: the delivery ID is Idempotency-Key (GitLab 17.4+), which stays
// the same across GitLab's retries of a delivery, else X-Gitlab-Event-UUID
// (14.8+), which identifies the event; the fixtures README does not say
// whether a manual "Resend request" keeps either.
package gitlab

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Webhook returns the GitLab adapter, to be served at /hooks/gitlab.
func Webhook() forge.Webhook {
	return forge.Webhook{Name: "gitlab", Verify: Verify, Parse: Parse}
}

// Verify checks that the X-Gitlab-Token header equals secret. It returns nil
// or an error wrapping [forge.ErrSignature] that names what is wrong.
func Verify(h http.Header, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("no secret configured to check X-Gitlab-Token: %w", forge.ErrSignature)
	}
	token := h.Get("X-Gitlab-Token")
	if token == "" {
		return fmt.Errorf("missing X-Gitlab-Token header: %w", forge.ErrSignature)
	}
	// Comparing digests keeps the time independent of the token's length
	// as well as of its contents.
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("X-Gitlab-Token header does not match the secret token: %w", forge.ErrSignature)
	}
	return nil
}

// Parse turns a verified GitLab delivery into exactly one event. Its errors
// wrap [forge.ErrMalformed].
func Parse(h http.Header, body []byte) ([]forge.Event, error) {
	_, delivery := wire.FirstHeader(h, "Idempotency-Key", "X-Gitlab-Event-UUID")
	e := forge.Event{Forge: "gitlab", DeliveryID: delivery}
	event := h.Get("X-Gitlab-Event")
	if event == "" {
		return nil, fmt.Errorf("missing X-Gitlab-Event header: %w", forge.ErrMalformed)
	}
	kind := event
	if event == "System Hook" {
		var p struct {
			ObjectKind string `json:"object_kind"`
		}
		if err := wire.Decode("system hook payload", body, &p); err != nil {
			return nil, err
		}
		kind = p.ObjectKind
		event = "System Hook " + wire.Name(p.ObjectKind)
	}
	switch kind {
	case "Push Hook", "Tag Push Hook", "push", "tag_push":
		return parsePush(e, body)
	case "Merge Request Hook", "merge_request":
		return parseMergeRequest(e, body)
	default:
		return parseOther(e, event, body)
	}
}

type project struct {
	ID                int64  `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
	WebURL            string `json:"web_url"`
}

// email drops the placeholder GitLab sends for an email it will not reveal.
func email(s string) string {
	if s == "[REDACTED]" {
		return ""
	}
	return s
}

type pushPayload struct {
	Ref               string        `json:"ref"`
	Before            string        `json:"before"`
	After             string        `json:"after"`
	CheckoutSHA       string        `json:"checkout_sha"`
	UserUsername      string        `json:"user_username"`
	UserEmail         string        `json:"user_email"`
	Project           *project      `json:"project"`
	Commits           []wire.Commit `json:"commits"`
	TotalCommitsCount int           `json:"total_commits_count"`
}

func parsePush(e forge.Event, body []byte) ([]forge.Event, error) {
	const what = "push payload"
	var p pushPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	if p.Project == nil || p.Project.PathWithNamespace == "" {
		return nil, wire.Malformed(what, "missing project.path_with_namespace")
	}
	e.Repo, e.CloneURL = p.Project.PathWithNamespace, p.Project.GitHTTPURL
	e.Author, e.AuthorEmail = p.UserUsername, email(p.UserEmail)
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
	checkout, err := wire.SHA(what, "checkout_sha", p.CheckoutSHA)
	if err != nil {
		return nil, err
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
	if checkout != "" {
		e.Commit = checkout
	}
	e.Message = wire.MessageOf(p.Commits, e.Commit)
	if web := p.Project.WebURL; web != "" {
		if kind == forge.Push && e.Before != "" {
			e.URL = web + "/-/compare/" + e.Before + "..." + after
		} else {
			e.URL = web + "/-/commit/" + e.Commit
		}
	}
	if kind == forge.Push && e.Before != "" && p.TotalCommitsCount == len(p.Commits) {
		e.ChangedPaths = wire.ChangedPaths(p.Commits)
	}
	return []forge.Event{e}, nil
}

type mergeRequestPayload struct {
	User struct {
		Username string `json:"username"`
		Email    string `json:"email"`
	} `json:"user"`
	Project          *project `json:"project"`
	ObjectAttributes *struct {
		IID             int      `json:"iid"`
		Action          string   `json:"action"`
		Title           string   `json:"title"`
		URL             string   `json:"url"`
		SourceBranch    string   `json:"source_branch"`
		TargetBranch    string   `json:"target_branch"`
		SourceProjectID int64    `json:"source_project_id"`
		TargetProjectID int64    `json:"target_project_id"`
		OldRev          string   `json:"oldrev"`
		Source          *project `json:"source"`
		Target          *project `json:"target"`
		LastCommit      *struct {
			ID      string `json:"id"`
			Message string `json:"message"`
		} `json:"last_commit"`
	} `json:"object_attributes"`
}

// action translates GitLab's merge request action into the words
// Event.Action uses; "update" is decided by the caller.
func action(a string) string {
	switch a {
	case "open":
		return "opened"
	case "reopen":
		return "reopened"
	case "close":
		return "closed"
	case "merge":
		return "merged"
	}
	return a
}

func parseMergeRequest(e forge.Event, body []byte) ([]forge.Event, error) {
	const what = "merge_request payload"
	var p mergeRequestPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	mr := p.ObjectAttributes
	if mr == nil {
		return nil, wire.Malformed(what, "missing object_attributes")
	}
	repo := p.Project
	if repo == nil || repo.PathWithNamespace == "" {
		repo = mr.Target
	}
	if repo == nil || repo.PathWithNamespace == "" {
		return nil, wire.Malformed(what, "missing project.path_with_namespace")
	}
	e.Repo, e.CloneURL = repo.PathWithNamespace, repo.GitHTTPURL
	if e.PullRequest = mr.IID; e.PullRequest <= 0 {
		return nil, wire.Malformed(what, "missing object_attributes.iid")
	}
	e.Title, e.URL = mr.Title, mr.URL
	e.Author, e.AuthorEmail = p.User.Username, email(p.User.Email)
	e.Branch, e.BaseBranch = mr.SourceBranch, mr.TargetBranch
	if mr.Source != nil {
		e.HeadRepo = mr.Source.PathWithNamespace
	}
	e.FromFork = fromFork(mr.SourceProjectID, mr.TargetProjectID, mr.Source, mr.Target)
	var err error
	if e.Before, err = wire.SHA(what, "object_attributes.oldrev", mr.OldRev); err != nil {
		return nil, err
	}
	if mr.LastCommit != nil {
		if e.Commit, err = wire.SHA(what, "object_attributes.last_commit.id", mr.LastCommit.ID); err != nil {
			return nil, err
		}
		e.Message = wire.Message(mr.LastCommit.Message)
	}
	e.Action = action(mr.Action)
	if mr.Action == "update" {
		if e.Before == "" {
			e.Action = "updated"
			return wire.Ignore(e, "merge_request update without new commits (no oldrev) is not built"), nil
		}
		e.Action = "synchronized"
	}
	switch e.Action {
	case "opened", "synchronized", "reopened":
	default:
		return wire.Ignore(e, "merge_request action %s is not built", wire.Name(e.Action)), nil
	}
	if e.Commit == "" {
		return nil, wire.Malformed(what, "missing object_attributes.last_commit.id")
	}
	if e.Branch == "" || e.BaseBranch == "" {
		return nil, wire.Malformed(what, "missing object_attributes.source_branch or target_branch")
	}
	e.Kind = forge.PullRequest
	return []forge.Event{e}, nil
}

// fromFork reports whether a merge request's source project is another
// project than its target, by ID where the payload gives both and by path
// otherwise. A source the payload does not describe (a deleted fork) counts
// as a fork.
func fromFork(sourceID, targetID int64, source, target *project) bool {
	if sourceID != 0 && targetID != 0 {
		return sourceID != targetID
	}
	if source == nil || target == nil || source.PathWithNamespace == "" {
		return true
	}
	return source.PathWithNamespace != target.PathWithNamespace
}

func parseOther(e forge.Event, event string, body []byte) ([]forge.Event, error) {
	var p struct {
		Project *project `json:"project"`
	}
	if err := wire.Decode(wire.Name(event)+" payload", body, &p); err != nil {
		return nil, err
	}
	if p.Project != nil {
		e.Repo, e.CloneURL = p.Project.PathWithNamespace, p.Project.GitHTTPURL
	}
	return wire.Ignore(e, "%s events are not built", wire.Name(event)), nil
}
