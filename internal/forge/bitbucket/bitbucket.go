// Package bitbucket is Gantry's adapter for Bitbucket Cloud webhooks: it
// verifies a delivery's signature and turns its body into [forge.Event]
// values. Bitbucket Data Center (Server), whose payloads and event keys
// differ, is not supported; its deliveries come back Ignored.
//
// What it does:
//
//   - Verify checks X-Hub-Signature, "sha256=" and the hex HMAC-SHA256 of the
//     raw body keyed with the webhook's secret, in constant time. Note the
//     unsuffixed header name, unlike GitHub's. Bitbucket signs only when the
//     webhook has a secret, and Gantry accepts only signed deliveries.
//   - Parse reads X-Event-Key. "repo:push" becomes one event per changed
//     ref: a Push for a branch, a Tag for a tag (new.type "tag"), and a
//     deletion (Deleted, with the kind of the old ref) when new is null.
//     Bitbucket reports a push of several refs (git push --follow-tags, git
//     push --all) as one delivery, which is why Parse returns a list.
//     "pullrequest:created" and "pullrequest:updated" become PullRequest
//     events with actions "opened" and "synchronized". Every other event
//     comes back Ignored with a reason.
//
// Limits of the payload, which this adapter passes on rather than papers
// over:
//
//   - Pull request heads come as 12-digit abbreviated SHAs: Commit must be
//     resolved after fetching before a status is reported on it.
//   - "pullrequest:updated" fires for any edit (title, description,
//     reviewers) as well as for new commits, and the payload does not say
//     which; every update is built, so an edit rebuilds the same head.
//   - Push payloads list commits without their files, so ChangedPaths is
//     always nil.
//   - Bitbucket Cloud has no usernames: Author is the account's nickname
//     (which may contain spaces), and AuthorEmail is the email of the
//     pushed commit's author when Bitbucket has linked that author to the
//     pusher's account, else empty.
//   - Repo is the repository's full name, which changes when a repository
//     is renamed or moves workspace; its UUID does not (and is not exposed).
//
// What it does not do: post commit statuses, call the Bitbucket API, or
// support Bitbucket Data Center.
//
// Redeliveries: the delivery ID is X-Request-UUID, which is new for every
// request, retries included (X-Attempt-Number counts them). It cannot catch a
// redelivery: deduplicate on the payload (repository, ref, commit) instead.
package bitbucket

import (
	"fmt"
	"net/http"
	"net/mail"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/internal/wire"
)

// Webhook returns the Bitbucket Cloud adapter, to be served at
// /hooks/bitbucket.
func Webhook() forge.Webhook {
	return forge.Webhook{Name: "bitbucket", Verify: Verify, Parse: Parse}
}

// Verify checks the X-Hub-Signature header of a delivery against the
// HMAC-SHA256 of body keyed with secret. It returns nil or an error wrapping
// [forge.ErrSignature] that names what is wrong.
func Verify(h http.Header, body []byte, secret string) error {
	return wire.VerifyHMAC("X-Hub-Signature", h.Get("X-Hub-Signature"), "sha256=", body, secret)
}

// Parse turns a verified Bitbucket Cloud delivery into events: one per
// changed ref for a push, exactly one otherwise. Its errors wrap
// [forge.ErrMalformed].
func Parse(h http.Header, body []byte) ([]forge.Event, error) {
	e := forge.Event{Forge: "bitbucket", DeliveryID: h.Get("X-Request-UUID")}
	event := h.Get("X-Event-Key")
	if event == "" {
		return nil, fmt.Errorf("missing X-Event-Key header: %w", forge.ErrMalformed)
	}
	switch event {
	case "repo:push":
		return parsePush(e, body)
	case "pullrequest:created", "pullrequest:updated":
		return parsePullRequest(e, event, body)
	default:
		return parseOther(e, event, body)
	}
}

type account struct {
	UUID        string `json:"uuid"`
	Nickname    string `json:"nickname"`
	DisplayName string `json:"display_name"`
}

func (a account) name() string {
	if a.Nickname != "" {
		return a.Nickname
	}
	return a.DisplayName
}

type link struct {
	Href string `json:"href"`
}

type repository struct {
	FullName string `json:"full_name"`
	UUID     string `json:"uuid"`
	Links    struct {
		HTML link `json:"html"`
	} `json:"links"`
}

// cloneURL returns the repository's HTTPS clone URL, which Bitbucket Cloud
// derives from its web page's URL.
func (r *repository) cloneURL() string {
	if web := r.Links.HTML.Href; web != "" {
		return strings.TrimSuffix(web, "/") + ".git"
	}
	return "https://bitbucket.org/" + r.FullName + ".git"
}

type ref struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Target struct {
		Hash    string `json:"hash"`
		Message string `json:"message"`
		Author  struct {
			Raw  string   `json:"raw"`
			User *account `json:"user"`
		} `json:"author"`
	} `json:"target"`
	Links struct {
		HTML link `json:"html"`
	} `json:"links"`
}

// kind returns the kind of event a push to the ref makes, or ok false for a
// ref that is neither a branch nor a tag (Mercurial bookmarks, in the days
// Bitbucket hosted them).
func (r *ref) kind() (k forge.Kind, ok bool) {
	switch r.Type {
	case "branch", "named_branch":
		return forge.Push, true
	case "tag", "annotated_tag":
		return forge.Tag, true
	}
	return "", false
}

type pushPayload struct {
	Actor      account     `json:"actor"`
	Repository *repository `json:"repository"`
	Push       *struct {
		Changes []struct {
			Old   *ref `json:"old"`
			New   *ref `json:"new"`
			Links struct {
				HTML link `json:"html"`
			} `json:"links"`
		} `json:"changes"`
	} `json:"push"`
}

func parsePush(base forge.Event, body []byte) ([]forge.Event, error) {
	const what = "repo:push payload"
	var p pushPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	if p.Repository == nil || p.Repository.FullName == "" {
		return nil, wire.Malformed(what, "missing repository.full_name")
	}
	base.Repo, base.CloneURL = p.Repository.FullName, p.Repository.cloneURL()
	base.Author = p.Actor.name()
	if p.Push == nil {
		return nil, wire.Malformed(what, "missing push")
	}
	if len(p.Push.Changes) == 0 {
		return wire.Ignore(base, "repo:push without ref changes is not built"), nil
	}
	var events []forge.Event
	for i, c := range p.Push.Changes {
		e := base
		r := c.New
		if r == nil {
			r = c.Old
		}
		if r == nil {
			events = append(events, wire.Ignore(e, "push change %d has neither an old nor a new ref", i)...)
			continue
		}
		kind, ok := r.kind()
		if !ok {
			events = append(events, wire.Ignore(e, "push to a %s is not a branch or tag push", wire.Name(r.Type))...)
			continue
		}
		if r.Name == "" {
			return nil, wire.Malformed(what, "missing push.changes[%d] ref name", i)
		}
		e.Kind = kind
		if kind == forge.Tag {
			e.Tag = r.Name
		} else {
			e.Branch = r.Name
		}
		var err error
		if c.Old != nil {
			if e.Before, err = wire.SHA(what, fmt.Sprintf("push.changes[%d].old.target.hash", i), c.Old.Target.Hash); err != nil {
				return nil, err
			}
		}
		if c.New == nil {
			e.Deleted = true
			events = append(events, e)
			continue
		}
		field := fmt.Sprintf("push.changes[%d].new.target.hash", i)
		if e.Commit, err = wire.SHA(what, field, c.New.Target.Hash); err != nil {
			return nil, err
		}
		if e.Commit == "" {
			return nil, wire.Malformed(what, "missing %s", field)
		}
		e.Message = wire.Message(c.New.Target.Message)
		e.URL = c.Links.HTML.Href
		if e.URL == "" {
			e.URL = c.New.Links.HTML.Href
		}
		if u := c.New.Target.Author.User; u != nil && u.UUID != "" && u.UUID == p.Actor.UUID {
			if a, err := mail.ParseAddress(c.New.Target.Author.Raw); err == nil {
				e.AuthorEmail = a.Address
			}
		}
		events = append(events, e)
	}
	return events, nil
}

type endpoint struct {
	Branch struct {
		Name string `json:"name"`
	} `json:"branch"`
	Commit *struct {
		Hash string `json:"hash"`
	} `json:"commit"`
	Repository *repository `json:"repository"`
}

type pullRequestPayload struct {
	Repository  *repository `json:"repository"`
	PullRequest *struct {
		ID          int      `json:"id"`
		Title       string   `json:"title"`
		Author      account  `json:"author"`
		Source      endpoint `json:"source"`
		Destination endpoint `json:"destination"`
		Links       struct {
			HTML link `json:"html"`
		} `json:"links"`
	} `json:"pullrequest"`
}

func parsePullRequest(e forge.Event, event string, body []byte) ([]forge.Event, error) {
	what := event + " payload"
	var p pullRequestPayload
	if err := wire.Decode(what, body, &p); err != nil {
		return nil, err
	}
	pr := p.PullRequest
	if pr == nil {
		return nil, wire.Malformed(what, "missing pullrequest")
	}
	repo := p.Repository
	if repo == nil || repo.FullName == "" {
		repo = pr.Destination.Repository
	}
	if repo == nil || repo.FullName == "" {
		return nil, wire.Malformed(what, "missing repository.full_name")
	}
	e.Repo, e.CloneURL = repo.FullName, repo.cloneURL()
	if e.PullRequest = pr.ID; e.PullRequest <= 0 {
		return nil, wire.Malformed(what, "missing pullrequest.id")
	}
	e.Title, e.URL = pr.Title, pr.Links.HTML.Href
	e.Author = pr.Author.name()
	e.Branch, e.BaseBranch = pr.Source.Branch.Name, pr.Destination.Branch.Name
	if src := pr.Source.Repository; src != nil {
		e.HeadRepo = src.FullName
	}
	dst := pr.Destination.Repository
	if dst == nil {
		dst = repo
	}
	e.FromFork = fromFork(pr.Source.Repository, dst)
	e.Action = "opened"
	if event == "pullrequest:updated" {
		e.Action = "synchronized"
	}
	if pr.Source.Commit != nil {
		var err error
		if e.Commit, err = wire.SHA(what, "pullrequest.source.commit.hash", pr.Source.Commit.Hash); err != nil {
			return nil, err
		}
	}
	if e.Commit == "" {
		return nil, wire.Malformed(what, "missing pullrequest.source.commit.hash")
	}
	if e.Branch == "" || e.BaseBranch == "" {
		return nil, wire.Malformed(what, "missing pullrequest source or destination branch name")
	}
	e.Kind = forge.PullRequest
	return []forge.Event{e}, nil
}

// fromFork reports whether a pull request's source repository is another
// repository than its destination, by UUID where the payload gives both and
// by full name otherwise. A source the payload does not describe counts as a
// fork.
func fromFork(source, destination *repository) bool {
	if source == nil {
		return true
	}
	if source.UUID != "" && destination.UUID != "" {
		return source.UUID != destination.UUID
	}
	return source.FullName == "" || source.FullName != destination.FullName
}

func parseOther(e forge.Event, event string, body []byte) ([]forge.Event, error) {
	var p struct {
		Repository *repository `json:"repository"`
		Actor      account     `json:"actor"`
	}
	if err := wire.Decode(wire.Name(event)+" payload", body, &p); err != nil {
		return nil, err
	}
	if p.Repository != nil && p.Repository.FullName != "" {
		e.Repo, e.CloneURL = p.Repository.FullName, p.Repository.cloneURL()
	}
	e.Author = p.Actor.name()
	switch event {
	case "pullrequest:fulfilled":
		e.Action = "merged"
	case "pullrequest:rejected":
		e.Action = "closed"
	}
	return wire.Ignore(e, "%s events are not built", wire.Name(event)), nil
}
