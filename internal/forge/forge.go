// Package forge is the seam between Gantry and the forges that host its
// repositories (GitHub, Gitea and Forgejo, GitLab, Bitbucket Cloud): the one
// [Event] type the rest of Gantry sees when a forge tells it about a push or a
// pull request, the [Webhook] pair of functions each adapter provides to turn
// a delivery into events, and the sentinel errors they return.
//
// The adapters live in the subpackages github, gitea (also Forgejo), gitlab
// and bitbucket. Each verifies a delivery's signature or token and parses the
// body; neither step does any I/O, keeps state, or talks back to the forge.
//
// This package does not:
//
//   - serve HTTP, limit body sizes, or map errors to status codes (the
//     server does that, in one place);
//   - remember deliveries: deduplicating redeliveries by [Event.DeliveryID]
//     is the caller's job, and only some forges keep the ID on a redelivery
//     (see each adapter's package doc);
//   - decide what to build: an [Event] says what happened on the forge, and
//     the pipeline's own filters (branches, paths, event kinds) decide
//     whether it runs;
//   - call any forge API: a [Reporter] (status.go) makes the request that
//     posts a commit status, as data, and the notify package stores and
//     sends it; so the package never resolves an abbreviated SHA, fetches
//     a full list of changed files, or looks up a user.
package forge

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind says what an [Event] asks Gantry to do.
//
// It is a string so that it reads well in logs, in the database and in the
// pipeline's expression context (`event == "pull_request"`).
type Kind string

// The kinds of event. Every event a forge sends that Gantry does not build is
// [Ignored] rather than an error: forges send many event types (comments,
// labels, reviews, releases) to the same URL, and refusing them would only
// fill the forge's delivery log with failures.
const (
	// Push is a push to a branch: build Commit on Branch. A Push with
	// Deleted set is a branch deletion and has nothing to build.
	Push Kind = "push"
	// Tag is a push of a tag: build Commit for Tag. A Tag with Deleted set
	// is a tag deletion and has nothing to build.
	Tag Kind = "tag"
	// PullRequest is a pull or merge request that was opened, reopened, or
	// whose head moved: build Commit, the head of the request.
	PullRequest Kind = "pull_request"
	// Ping is a forge checking that the webhook works (GitHub sends one when
	// a hook is created). Nothing to build; answer with success.
	Ping Kind = "ping"
	// Ignored is a well-formed delivery that Gantry does not act on;
	// [Event.Reason] says why.
	Ignored Kind = "ignored"
)

// Event is one thing that happened on a forge, in the terms the rest of Gantry
// uses, whichever forge it came from. Fields a kind does not use are empty.
//
// Text fields are copied from the payload as the forge spelled them; they are
// written by whoever pushed or opened the request, possibly a stranger with a
// fork, and must be treated as untrusted (quoted for the shell, escaped for
// HTML, never used as a path or as a command-line option).
type Event struct {
	// Forge is "github", "gitea", "gitlab" or "bitbucket". Forgejo
	// deliveries are "gitea": the two share one payload schema.
	Forge string
	Kind  Kind
	// Reason says, for an Ignored event only, why it is not built, in a
	// sentence fit for a log line or a delivery response.
	Reason string
	// DeliveryID is the forge's identifier for this delivery, from its
	// headers; empty if the forge did not send one. Several events parsed
	// from one delivery (a Bitbucket push of several refs) share it.
	DeliveryID string

	// Repo is the repository's full name as the forge spells it,
	// "owner/name"; on GitLab the path with namespace, which may contain
	// subgroups ("group/sub/name"). For a pull request it is the base
	// (target) repository.
	Repo string
	// CloneURL is the repository's HTTP(S) clone URL as the forge reports
	// it (plain http on a forge served over http). For a pull request it is
	// the base repository's; the head may live in a fork, see HeadRepo.
	CloneURL string

	// Branch is the pushed branch, or a pull request's head (source) branch.
	Branch string
	// Tag is the pushed tag's name.
	Tag string
	// Commit is the SHA to build: the pushed commit, the commit a tag
	// points at (not an annotated tag's own object), or a pull request's
	// head. Empty on deletions. It is hex, but not always a full SHA:
	// Bitbucket Cloud sends pull request heads abbreviated to 12 digits,
	// so resolve it after fetching before reporting a status on it.
	Commit string
	// Before is what the ref pointed at before a push (or, on GitHub and
	// GitLab, a pull request's previous head); empty when the ref was just
	// created or the forge does not say.
	Before string
	// BaseBranch is a pull request's target branch.
	BaseBranch string
	// PullRequest is the pull request's number as users see it (GitLab's
	// iid, not its global id).
	PullRequest int
	// Title is the pull request's title.
	Title string
	// Action is what happened to a pull request, in one vocabulary for all
	// forges: "opened", "synchronized" (new commits), "reopened", and for
	// ignored events the forge's word ("closed", "merged", "edited",
	// "labeled", ...).
	Action string
	// FromFork says a pull request's head lives in a different repository
	// from its base. It is also true when the payload does not say where
	// the head lives (a deleted fork), because Gantry withholds secrets
	// from fork builds and must not guess in the unsafe direction.
	FromFork bool
	// HeadRepo is the full name of the repository holding a pull request's
	// head, when the payload names it.
	HeadRepo string

	// Author is the login of whoever pushed, or of the pull request's
	// author; on GitLab merge requests, whoever caused the event (GitLab
	// names only the actor); on Bitbucket, the account's nickname
	// (Bitbucket Cloud has no usernames any more).
	Author string
	// AuthorEmail is Author's email address when the payload gives one.
	AuthorEmail string
	// Message is the message of the commit being built, without trailing
	// newlines, when the payload carries it.
	Message string
	// ChangedPaths is the sorted union of the files added, modified and
	// removed by the pushed commits, when the payload lists them all. It
	// is nil when that is unknown: the forge truncated the list, the push
	// created the ref or was forced, the forge does not list files
	// (Bitbucket, pull requests), or the event is a deletion. A nil list
	// means "anything may have changed" to a path filter; an empty,
	// non-nil list means nothing did.
	ChangedPaths []string
	// Deleted says the push deleted Branch or Tag: there is nothing to
	// build, but a caller may cancel or clean up.
	Deleted bool
	// URL links to the change on the forge: a compare page for a push, the
	// pull request's page for a pull request.
	URL string
}

// ErrSignature means a delivery's signature or token is missing, malformed
// or wrong, or that no secret is configured to check it with. The wrapping
// error names the header; it never contains the secret or the expected
// digest. The caller must not parse such a delivery.
var ErrSignature = errors.New("webhook signature invalid")

// ErrMalformed means a delivery is not in the forge's shape: the body is not
// JSON, a field has the wrong type, a required field (the repository, the
// ref, the commit) is missing, or the event header is absent. The wrapping
// error says what is wrong.
var ErrMalformed = errors.New("webhook payload malformed")

// Webhook is one forge's webhook adapter, so the server can route
// /hooks/{name} to it. Both functions are pure: they are safe for
// concurrent use, do no I/O, and do not retain h or body.
//
// The server reads the raw body (bounded in size), then calls Verify, then
// Parse; [Webhook.Receive] does both in that order. Parse must never see a
// body that Verify has not accepted: it trusts the payload's contents.
type Webhook struct {
	// Name is the forge's name, as used in [Event.Forge] and in the URL.
	Name string
	// Verify checks the delivery's signature or token against secret. It
	// returns nil or an error wrapping [ErrSignature]. An empty secret is
	// always an error: an adapter never accepts unsigned deliveries.
	Verify func(h http.Header, body []byte, secret string) error
	// Parse turns a verified delivery into events. On success it returns
	// at least one event: one for every forge except Bitbucket, which
	// reports a push of several refs in one delivery and gets one event per
	// ref. Event types Gantry does not build come back as [Ignored] events,
	// not errors. Any error wraps [ErrMalformed].
	Parse func(h http.Header, body []byte) ([]Event, error)
}

// Receive verifies a delivery and then parses it. It is what a server
// should call: it cannot forget the verification.
func (w Webhook) Receive(h http.Header, body []byte, secret string) ([]Event, error) {
	if err := w.Verify(h, body, secret); err != nil {
		return nil, fmt.Errorf("verify %s webhook: %w", w.Name, err)
	}
	events, err := w.Parse(h, body)
	if err != nil {
		return nil, fmt.Errorf("parse %s webhook: %w", w.Name, err)
	}
	return events, nil
}
