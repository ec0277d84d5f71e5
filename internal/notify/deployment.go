package notify

// Deployments: what each change of a deployment owes hooks (deployment.*
// events, chat messages) and GitHub (a deployment and its statuses).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/forge/github"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// DeploymentChanged is the delivery service's observer
// (delivery.Service.Observe): it notes the change and returns at once.
// The events and GitHub deployment statuses the change implies are stored
// by the enqueue loop, in the order of the changes, like a build's.
func (n *Notifier) DeploymentChanged(c delivery.Change) {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	n.queue = append(n.queue, change{dep: &c})
	if len(n.queue) > maxQueue {
		n.queue = latest(n.queue)
	}
	n.mu.Unlock()
	wake(n.enqueueWake)
}

// EnvironmentsURL is the link to a repo's environments page, where a
// waiting deployment is approved.
func (n *Notifier) EnvironmentsURL(repo string) string {
	return n.opts.PublicURL + "/repos/" + repo + "/environments"
}

// deploymentEvent is the hook event of a change, or "" for none (an
// approval or a rejection is told in the events around it).
func deploymentEvent(what string) string {
	switch what {
	case delivery.ChangeRequested:
		return "deployment.created"
	case delivery.ChangeApprovalRequired:
		return "deployment.approval_required"
	case delivery.ChangeStarted:
		return "deployment.started"
	case delivery.ChangeSucceeded, delivery.ChangeFailed, delivery.ChangeCancelled:
		return "deployment.finished"
	}
	return ""
}

// DeploymentPayload is a deployment in an event (Payload.Deployment).
type DeploymentPayload struct {
	ID int64 `json:"id"`
	// URL is the repo's environments page, where it is approved.
	URL         string `json:"url"`
	Environment string `json:"environment"`
	// Kind is how it was asked for: auto, deploy, promote, rollback or
	// auto-rollback (Gantry's, after a failed health check).
	Kind string `json:"kind"`
	// State is pending, running, succeeded, failed or cancelled.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// RequestedBy is who asked for it; empty for an automatic deployment.
	RequestedBy string `json:"requested_by"`
	// Waiting, on deployment.approval_required, says what it waits for.
	Waiting string `json:"waiting,omitempty"`
	// Approvals are the approvals and rejections given so far.
	Approvals []ApprovalPayload `json:"approvals"`
	// RollbackOf is, for a rollback, the version it replaces.
	RollbackOf string         `json:"rollback_of,omitempty"`
	Release    ReleasePayload `json:"release"`
	// Build is the build that runs it: null until it started.
	Build      *BuildRef  `json:"build"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// ApprovalPayload is one person's approval or rejection.
type ApprovalPayload struct {
	User      string    `json:"user"`
	Verdict   string    `json:"verdict"` // approve or reject
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ReleasePayload is the release a deployment puts in place.
type ReleasePayload struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Branch  string `json:"branch,omitempty"`
	Tag     string `json:"tag,omitempty"`
	// Build is the build that made the release.
	Build   BuildRef `json:"build"`
	Authors []string `json:"authors"`
	Issues  []string `json:"issues"`
}

// BuildRef names a build and links to its page.
type BuildRef struct {
	ID  int64  `json:"id"`
	URL string `json:"url"`
}

// deploymentFacts is what the deliveries of one deployment change say,
// read once.
type deploymentFacts struct {
	c          delivery.Change
	d          *store.Deployment
	repo       *store.Repo
	rel        *store.Release
	decisions  []*store.Decision
	rollbackOf string
	envURL     string // the environment's own URL, from its pipeline
}

// facts reads what the deliveries of c need; nil when its repo or
// release is gone.
func (n *Notifier) facts(ctx context.Context, c delivery.Change) (*deploymentFacts, error) {
	d := c.Deployment
	f := &deploymentFacts{c: c, d: &d}
	var err error
	if f.repo, err = n.st.Repo(ctx, d.Repo); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if f.rel, err = n.st.ReleaseByID(ctx, d.ReleaseID); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if d.Version == "" {
		f.d.Version = f.rel.Version
	}
	if f.decisions, err = n.st.DecisionsOf(ctx, d.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if d.RollbackOf != 0 {
		if prev, err := n.st.ReleaseByID(ctx, d.RollbackOf); err == nil {
			f.rollbackOf = prev.Version
		}
	}
	if b, err := n.st.Build(ctx, f.rel.BuildID); err == nil && len(b.Pipeline) > 0 {
		if p, err := spec.Parse("", b.Pipeline); err == nil {
			if e := plan.Environment(p, d.Environment); e != nil && isHTTP(e.URL) {
				f.envURL = e.URL
			}
		}
	}
	return f, nil
}

func isHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// deploymentDeliveries are what a deployment change owes: an event for
// each hook that subscribes to it, and a status of the GitHub deployment.
func (n *Notifier) deploymentDeliveries(ctx context.Context, c delivery.Change, hooks []*store.Hook) ([]*store.Delivery, error) {
	f, err := n.facts(ctx, c)
	if err != nil || f == nil {
		return nil, err
	}
	out := n.githubDeployment(ctx, f)
	ev := deploymentEvent(c.What)
	if ev == "" {
		return out, nil
	}
	now := time.Now().UTC()
	for _, h := range hooks {
		if h.RepoID != 0 && h.RepoID != f.repo.ID {
			continue
		}
		if h.Branch != "" {
			// A tag's release has no branch: a branch filter leaves it out.
			if ok, _ := doublestar.Match(h.Branch, f.rel.Branch); !ok || f.rel.Branch == "" {
				continue
			}
		}
		if !Subscribed(h.Events, ev) || !environmentMatches(h, f.d.Environment) {
			continue
		}
		var body []byte
		if h.Format == store.HookSlack {
			body, err = json.Marshal(struct {
				Text string `json:"text"`
			}{n.deploymentChat(ev, f)})
		} else {
			p := Payload{Event: ev, CreatedAt: now, Deployment: n.deploymentPayload(f)}
			p.Repo.Name, p.Repo.Forge = f.repo.Name, f.repo.Forge
			body, err = json.Marshal(p)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, &store.Delivery{
			Kind: store.DeliveryHook, RepoID: f.repo.ID, BuildID: f.d.BuildID, HookID: h.ID, Event: ev,
			URL: Redact(h.URL, h.Format), Host: hostOf(h.URL),
			Headers:   map[string]string{"Content-Type": "application/json"},
			Payload:   body,
			DedupeKey: fmt.Sprintf("hook:%d:%s:deployment:%d", h.ID, ev, f.d.ID),
		})
	}
	return out, nil
}

func (n *Notifier) deploymentPayload(f *deploymentFacts) *DeploymentPayload {
	d, rel := f.d, f.rel
	p := &DeploymentPayload{ID: d.ID, URL: n.EnvironmentsURL(f.repo.Name), Environment: d.Environment, Kind: d.Kind,
		State: d.State, Reason: d.Reason, RequestedBy: d.RequestedBy, RollbackOf: f.rollbackOf,
		Approvals: []ApprovalPayload{},
		Release: ReleasePayload{Version: rel.Version, Commit: rel.Commit, Branch: rel.Branch, Tag: rel.Tag,
			Build: BuildRef{rel.BuildID, n.BuildURL(rel.BuildID)}, Authors: nonNil(rel.Authors), Issues: nonNil(rel.Issues)},
		CreatedAt: d.CreatedAt.UTC(), StartedAt: timePtr(d.StartedAt), FinishedAt: timePtr(d.FinishedAt)}
	if f.c.What == delivery.ChangeApprovalRequired {
		p.Waiting = f.c.Detail
	}
	for _, dec := range f.decisions {
		if dec.Verdict == store.VerdictApprove || dec.Verdict == store.VerdictReject {
			p.Approvals = append(p.Approvals, ApprovalPayload{User: dec.User, Verdict: dec.Verdict, Comment: dec.Comment,
				CreatedAt: dec.CreatedAt.UTC()})
		}
	}
	if d.BuildID != 0 {
		p.Build = &BuildRef{d.BuildID, n.BuildURL(d.BuildID)}
	}
	return p
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// deploymentChat is the chat message of a deployment event, in Slack's
// mrkdwn. A deployment waiting for approval links to the repo's
// environments page, where it is approved; the others to the build that
// runs it, when there is one.
func (n *Notifier) deploymentChat(event string, f *deploymentFacts) string {
	d := f.d
	what := fmt.Sprintf("%s %s", slackEscape(f.repo.Name), slackEscape(d.Version))
	env := "`" + slackEscape(d.Environment) + "`"
	link := n.EnvironmentsURL(f.repo.Name)
	if d.BuildID != 0 {
		link = n.BuildURL(d.BuildID)
	}
	by := "automatically"
	if d.RequestedBy != "" {
		by = "by " + slackEscape(d.RequestedBy)
	}
	rollback := d.Kind == deploy.KindRollback || d.Kind == deploy.KindAutoRollback
	if d.Kind == deploy.KindAutoRollback {
		by = "automatically, as its health check failed"
	}
	var text string
	switch event {
	case "deployment.created":
		text = fmt.Sprintf(":package: <%s|%s> to %s requested %s", link, what, env, by)
	case "deployment.approval_required":
		text = fmt.Sprintf(":raised_hand: <%s|%s> to %s waits for approval (%s): <%s|approve or reject it>",
			link, what, env, slackEscape(strings.TrimPrefix(f.c.Detail, "waiting for approval: ")), n.EnvironmentsURL(f.repo.Name))
	case "deployment.started":
		text = fmt.Sprintf(":arrow_forward: <%s|%s> is deploying to %s", link, what, env)
	default:
		switch {
		case d.State == store.DeploySucceeded && rollback && f.rollbackOf != "":
			text = fmt.Sprintf(":rewind: %s rolled back to <%s|%s> (from %s)", env, link, what, slackEscape(f.rollbackOf))
		case d.State == store.DeploySucceeded && rollback:
			text = fmt.Sprintf(":rewind: %s rolled back to <%s|%s>", env, link, what)
		case d.State == store.DeploySucceeded:
			text = fmt.Sprintf(":white_check_mark: <%s|%s> is live in %s", link, what, env)
		case d.State == store.DeployCancelled:
			text = fmt.Sprintf(":no_entry_sign: deployment of <%s|%s> to %s was cancelled", link, what, env)
		default:
			text = fmt.Sprintf(":x: deployment of <%s|%s> to %s failed", link, what, env)
		}
		if f.envURL != "" && d.State == store.DeploySucceeded {
			text += " (<" + f.envURL + "|open>)"
		}
		if d.State != store.DeploySucceeded && d.Reason != "" {
			text += "\n> " + slackEscape(firstLine(d.Reason))
		}
	}
	return text
}

// ghDeploymentEnvelope is the stored payload of a DeliveryDeployment: the
// body that makes the GitHub deployment, posted when Gantry has not made
// it yet (the first status to be sent makes it), and the status's body.
type ghDeploymentEnvelope struct {
	Deployment int64           `json:"gantry_deployment"`
	Create     json.RawMessage `json:"create"`
	Status     json.RawMessage `json:"status"`
}

// githubState is the state of the GitHub deployment status a change
// posts, and its description; "" when it posts none.
func githubState(f *deploymentFacts) (string, string) {
	d := f.d
	name := fmt.Sprintf("%s to %s", d.Version, d.Environment)
	switch f.c.What {
	case delivery.ChangeRequested:
		if d.RequestedBy != "" {
			return github.DeployQueued, name + ", requested by " + d.RequestedBy
		}
		return github.DeployQueued, name + ", requested by Gantry"
	case delivery.ChangeApprovalRequired:
		return github.DeployPending, name + ": " + f.c.Detail
	case delivery.ChangeStarted:
		return github.DeployInProgress, name + " is deploying"
	case delivery.ChangeSucceeded:
		return github.DeploySuccess, name + " succeeded"
	case delivery.ChangeFailed:
		return github.DeployFailure, name + " failed: " + firstLine(d.Reason)
	case delivery.ChangeCancelled:
		return github.DeployError, name + " was cancelled: " + firstLine(d.Reason)
	}
	return "", ""
}

// githubDeployment is the GitHub deployment status a change owes, for a
// GitHub repo with credentials. Statuses of one deployment coalesce:
// one that a newer one follows before it is sent is superseded, so
// GitHub always ends at the last.
func (n *Notifier) githubDeployment(ctx context.Context, f *deploymentFacts) []*store.Delivery {
	state, desc := githubState(f)
	if f.repo.Forge != "github" || state == "" || !fullSHA(f.rel.Commit) {
		return nil
	}
	api, notice := n.forgeAPI(ctx, f.repo)
	if api == "" {
		return notice
	}
	create, err := github.CreateDeployment(api, github.Deployment{Repo: f.repo.Name, Commit: f.rel.Commit,
		Environment: f.d.Environment, Description: fmt.Sprintf("%s to %s by Gantry", f.d.Version, f.d.Environment)})
	if err != nil {
		n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "github deployment", slog.String("repo", f.repo.Name), slog.Any("err", err))
		return nil
	}
	st := github.DeploymentStatus{State: state, Description: desc, Environment: f.d.Environment, EnvironmentURL: f.envURL}
	if f.d.BuildID != 0 {
		st.LogURL = n.BuildURL(f.d.BuildID)
	} else {
		st.LogURL = n.EnvironmentsURL(f.repo.Name)
	}
	status, err := github.CreateDeploymentStatus(create.URL, 0, st)
	if err != nil {
		return nil
	}
	body, err := json.Marshal(ghDeploymentEnvelope{Deployment: f.d.ID, Create: create.Body, Status: status.Body})
	if err != nil {
		return nil
	}
	return []*store.Delivery{{
		Kind: store.DeliveryDeployment, RepoID: f.repo.ID, BuildID: f.d.BuildID, Forge: f.repo.Forge,
		Event: "deployment/" + f.d.Environment + ":" + state,
		URL:   create.URL, Host: hostOf(create.URL), Headers: create.Header, Payload: body,
		DedupeKey:   fmt.Sprintf("ghdeploy:%d:%s", f.d.ID, f.c.What),
		CoalesceKey: fmt.Sprintf("ghdeploy:%d", f.d.ID),
	}}
}

// deploymentTarget returns the URL and body of a claimed DeliveryDeployment:
// its status, posted to the GitHub deployment, which it makes first when
// none was recorded yet. When it cannot, it returns "" and the outcome.
func (n *Notifier) deploymentTarget(ctx context.Context, d *store.Delivery, sign func(http.Header)) (string, []byte, outcome) {
	var env ghDeploymentEnvelope
	if err := json.Unmarshal(d.Payload, &env); err != nil || env.Deployment == 0 {
		return "", nil, outcome{err: "the stored deployment status cannot be read"}
	}
	id, err := n.st.ForgeDeployment(ctx, env.Deployment)
	if errors.Is(err, store.ErrNotFound) {
		var o outcome
		if id, o = n.createGitHubDeployment(ctx, d, env, sign); id == 0 {
			return "", nil, o
		}
	} else if err != nil {
		return "", nil, outcome{err: "read the GitHub deployment: " + err.Error(), retry: true}
	}
	req, err := github.CreateDeploymentStatus(d.URL, id, github.DeploymentStatus{})
	if err != nil {
		return "", nil, outcome{err: err.Error()}
	}
	return req.URL, env.Status, outcome{}
}

// createGitHubDeployment posts the deployment and records its ID; 0 and
// the outcome when it did not.
func (n *Notifier) createGitHubDeployment(ctx context.Context, d *store.Delivery, env ghDeploymentEnvelope, sign func(http.Header)) (int64, outcome) {
	status, body, o := n.post(ctx, d.URL, d.Headers, env.Create, sign, d.Attempts)
	if o.err != "" {
		o.err = "create the GitHub deployment: " + o.err
		return 0, o
	}
	id, err := github.DeploymentID(body)
	if err != nil {
		return 0, outcome{status: status, err: err.Error()}
	}
	err = n.st.SetForgeDeployment(ctx, env.Deployment, id)
	if errors.Is(err, store.ErrConflict) {
		// Another server made one at the same time: use the one recorded.
		if first, err := n.st.ForgeDeployment(ctx, env.Deployment); err == nil {
			return first, outcome{}
		}
	}
	if err != nil {
		return 0, outcome{status: status, err: "record the GitHub deployment " + strconv.FormatInt(id, 10) + ": " + err.Error(), retry: true}
	}
	return id, outcome{}
}
