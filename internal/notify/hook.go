package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/gantry-ci/gantry/internal/store"
)

// The headers of a hook delivery, besides Content-Type and User-Agent.
const (
	// HeaderEvent names the event (build.finished).
	HeaderEvent = "Gantry-Event"
	// HeaderDelivery is the delivery's ID: a retry carries the same one,
	// so a receiver can tell a retry from a new event.
	HeaderDelivery = "Gantry-Delivery"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body,
	// keyed with the hook's secret.
	HeaderSignature = "Gantry-Signature"
)

// Sign is the HeaderSignature of body for a hook with secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a HeaderSignature value against body, in constant time:
// what a receiver of Gantry's hooks does.
func Verify(secret string, body []byte, signature string) error {
	if !hmac.Equal([]byte(Sign(secret, body)), []byte(signature)) {
		return errors.New("Gantry-Signature does not match the body")
	}
	return nil
}

// Payload is the body of a JSON hook delivery.
type Payload struct {
	Event string `json:"event"`
	// CreatedAt is when the event was queued.
	CreatedAt time.Time `json:"created_at"`
	Repo      struct {
		Name  string `json:"name"`
		Forge string `json:"forge"`
	} `json:"repo"`
	// Build is the build as it was when the event happened.
	Build *BuildPayload `json:"build,omitempty"`
	// Previous is, on build.fixed, the failed build before it.
	Previous *BuildPayload `json:"previous,omitempty"`
	// Deployment is the deployment of a deployment.* event.
	Deployment *DeploymentPayload `json:"deployment,omitempty"`
}

// BuildPayload is a build in an event.
type BuildPayload struct {
	ID          int64        `json:"id"`
	Number      int64        `json:"number"`
	URL         string       `json:"url"`
	Status      string       `json:"status"`
	Reason      string       `json:"reason,omitempty"`
	Event       string       `json:"event"`
	Branch      string       `json:"branch"`
	Tag         string       `json:"tag,omitempty"`
	Commit      string       `json:"commit"`
	PullRequest int          `json:"pull_request,omitempty"`
	Title       string       `json:"title,omitempty"`
	Author      string       `json:"author"`
	Message     string       `json:"message,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	StartedAt   *time.Time   `json:"started_at"`
	FinishedAt  *time.Time   `json:"finished_at"`
	Jobs        []JobPayload `json:"jobs,omitempty"`
}

// JobPayload is a job of a build in an event.
type JobPayload struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	ExitCode   *int       `json:"exit_code"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (n *Notifier) buildPayload(b *store.Build) *BuildPayload {
	p := &BuildPayload{ID: b.ID, Number: b.Number, URL: n.BuildURL(b.ID), Status: b.Status, Reason: b.Reason, Event: b.Event,
		Branch: b.Branch, Tag: b.Tag, Commit: b.Commit, PullRequest: b.PullRequest, Title: b.Title, Author: b.Author,
		Message: b.Message, CreatedAt: b.CreatedAt.UTC(), StartedAt: timePtr(b.StartedAt), FinishedAt: timePtr(b.FinishedAt)}
	for _, j := range b.Jobs {
		jp := JobPayload{Name: j.Name, Status: j.Status, Reason: j.Reason, StartedAt: timePtr(j.StartedAt), FinishedAt: timePtr(j.FinishedAt)}
		if code := j.ExitCode; code >= 0 && store.Finished(j.Status) && j.Status != store.StatusSkipped {
			jp.ExitCode = &code
		}
		p.Jobs = append(p.Jobs, jp)
	}
	return p
}

// buildEvents are the events a build in its present state implies, in the
// order they happened. previous is looked up only when build.fixed may be
// one.
func (n *Notifier) buildEvents(ctx context.Context, b *store.Build) ([]string, *store.Build, error) {
	events := []string{"build.created"}
	if !b.StartedAt.IsZero() {
		events = append(events, "build.started")
	}
	if !store.Finished(b.Status) {
		return events, nil, nil
	}
	events = append(events, "build.finished")
	var previous *store.Build
	switch b.Status {
	case store.StatusFailure, store.StatusError:
		events = append(events, "build.failed")
	case store.StatusSuccess:
		prev, err := n.st.LatestBuild(ctx, b.Repo, b.Branch, b.ID, store.StatusSuccess, store.StatusFailure, store.StatusError)
		switch {
		case err == nil && prev.Status != store.StatusSuccess:
			events, previous = append(events, "build.fixed"), prev
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, nil, err
		}
	}
	return events, previous, nil
}

// events are the hook deliveries b owes in its present state: one per
// hook and event it subscribes to, stored once whichever server saw it.
func (n *Notifier) events(ctx context.Context, repo *store.Repo, b *store.Build, hooks []*store.Hook) ([]*store.Delivery, error) {
	var mine []*store.Hook
	for _, h := range hooks {
		if h.RepoID != 0 && h.RepoID != repo.ID {
			continue
		}
		if h.Branch != "" {
			if ok, _ := doublestar.Match(h.Branch, b.Branch); !ok {
				continue
			}
		}
		if !environmentMatches(h, b.Environment) {
			continue
		}
		mine = append(mine, h)
	}
	if len(mine) == 0 {
		return nil, nil
	}
	events, previous, err := n.buildEvents(ctx, b)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	var out []*store.Delivery
	for _, h := range mine {
		for _, ev := range events {
			if !Subscribed(h.Events, ev) {
				continue
			}
			body, err := n.hookBody(h.Format, ev, now, repo, b, previous)
			if err != nil {
				return nil, err
			}
			out = append(out, &store.Delivery{
				Kind: store.DeliveryHook, RepoID: repo.ID, BuildID: b.ID, HookID: h.ID, Event: ev,
				URL: Redact(h.URL, h.Format), Host: hostOf(h.URL),
				Headers:   map[string]string{"Content-Type": "application/json"},
				Payload:   body,
				DedupeKey: fmt.Sprintf("hook:%d:%s:%d", h.ID, ev, b.ID),
			})
		}
	}
	return out, nil
}

func (n *Notifier) hookBody(format, event string, now time.Time, repo *store.Repo, b, previous *store.Build) ([]byte, error) {
	if format == store.HookSlack {
		return json.Marshal(struct {
			Text string `json:"text"`
		}{n.chatText(event, repo, b, previous)})
	}
	p := Payload{Event: event, CreatedAt: now, Build: n.buildPayload(b)}
	p.Repo.Name, p.Repo.Forge = repo.Name, repo.Forge
	if event == "build.fixed" && previous != nil {
		p.Previous = n.buildPayload(previous)
	}
	return json.Marshal(p)
}

// slackEscape escapes the three characters Slack's message formatting
// gives a meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// chatText is a one-line message for a chat room, in Slack's mrkdwn
// (which Mattermost and Zulip's Slack endpoint read too).
func (n *Notifier) chatText(event string, repo *store.Repo, b, previous *store.Build) string {
	icon, verb := ":information_source:", b.Status
	switch event {
	case "build.created":
		icon, verb = ":hourglass:", "is queued"
	case "build.started":
		icon, verb = ":arrow_forward:", "started"
	case "build.failed":
		icon, verb = ":x:", "failed"
		if b.Status == store.StatusError {
			verb = "errored"
		}
	case "build.fixed":
		icon, verb = ":white_check_mark:", "is fixed"
		if previous != nil {
			verb = fmt.Sprintf("is fixed (#%d had failed)", previous.Number)
		}
	case "build.finished":
		switch b.Status {
		case store.StatusSuccess:
			icon, verb = ":white_check_mark:", "passed"
		case store.StatusFailure, store.StatusError:
			icon, verb = ":x:", b.Status
		case store.StatusCancelled:
			icon, verb = ":no_entry_sign:", "was cancelled"
		case store.StatusSkipped:
			icon, verb = ":fast_forward:", "was skipped"
		}
	}
	ref := "`" + slackEscape(b.Branch) + "`"
	switch {
	case b.PullRequest != 0:
		ref = fmt.Sprintf("pull request #%d (%s)", b.PullRequest, ref)
	case b.Tag != "":
		ref = "tag `" + slackEscape(b.Tag) + "`"
	}
	text := fmt.Sprintf("%s <%s|%s #%d> %s on %s at %s", icon, n.BuildURL(b.ID), slackEscape(repo.Name), b.Number, verb, ref, shortSHA(b.Commit))
	if b.Author != "" {
		text += " by " + slackEscape(b.Author)
	}
	if m := firstLine(b.Message); m != "" {
		text += ": " + slackEscape(m)
	}
	if (event == "build.failed" || b.Status == store.StatusError) && b.Reason != "" {
		text += "\n> " + slackEscape(firstLine(b.Reason))
	}
	return text
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// Redact is a hook URL as it may be shown: without a password or query,
// and for a chat hook, whose URL is its secret, without its path.
func Redact(raw, format string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	out := u.Scheme + "://" + u.Host
	if format == store.HookSlack {
		return out + "/…"
	}
	out += u.EscapedPath()
	if u.RawQuery != "" {
		out += "?…"
	}
	return out
}

// environmentMatches reports whether a hook takes events of env (a
// deployment's environment; "" for a build that deploys nothing): every
// hook does without an environment filter, and one with a filter only
// those of a matching environment.
func environmentMatches(h *store.Hook, env string) bool {
	if h.Environment == "" {
		return true
	}
	ok, _ := doublestar.Match(h.Environment, env)
	return ok && env != ""
}
