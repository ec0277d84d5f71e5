package notify

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/gantry-ci/gantry/internal/console"
	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// BuildContext is the status context of a whole build; a job's is
// BuildContext + "/" + its name (gantry/test), so branch protection can
// require the build, or single jobs.
const BuildContext = "gantry"

// DeployContext is the status context of a deployment to env
// (gantry/deploy/staging): one per environment, apart from the build's.
func DeployContext(env string) string { return BuildContext + "/deploy/" + env }

// deployDescription says where a deployment of a release stands.
func deployDescription(b *store.Build) string {
	name := fmt.Sprintf("Deployment of %s to %s", b.Release, b.Environment)
	switch b.Status {
	case store.StatusQueued:
		return name + " is queued"
	case store.StatusRunning:
		return name + " is running"
	case store.StatusSuccess:
		return name + " succeeded"
	case store.StatusCancelled:
		return name + " was cancelled"
	}
	return name + " failed"
}

// statuses are the commit statuses b owes its forge in its present state:
// the build's, and each job's. A build in which nothing ran (skipped by
// its pipeline's filters, a fork's, no pipeline file) reports nothing. A
// repo without an API URL or credentials reports nothing either, and that
// is recorded once per repo (notice).
func (n *Notifier) statuses(ctx context.Context, repo *store.Repo, b *store.Build) []*store.Delivery {
	if (b.Status == store.StatusSkipped && len(b.Jobs) == 0) || !fullSHA(b.Commit) {
		return nil
	}
	rep := n.opts.Reporters[repo.Forge]
	api, notice := n.forgeAPI(ctx, repo)
	if api == "" {
		return notice
	}
	host := hostOf(api)
	ref := b.Branch
	if b.Tag != "" {
		ref = b.Tag
	}
	var out []*store.Delivery
	add := func(context string, state forge.State, desc string) {
		req, err := rep.Status(api, forge.Status{Repo: repo.Name, Commit: b.Commit, Ref: ref, Context: context,
			State: state, Description: desc, TargetURL: n.BuildURL(b.ID)})
		if err != nil {
			n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "commit status", slog.String("repo", repo.Name), slog.Any("err", err))
			return
		}
		out = append(out, &store.Delivery{
			Kind: store.DeliveryStatus, RepoID: repo.ID, BuildID: b.ID, Forge: repo.Forge, Event: context,
			URL: req.URL, Host: host, Headers: req.Header, Payload: req.Body,
			// One delivery per build, context and state, whichever
			// server saw the change; the newest per commit and context
			// supersedes the older ones not yet sent.
			DedupeKey:   fmt.Sprintf("status:%d:%s:%s", b.ID, context, state),
			CoalesceKey: fmt.Sprintf("status:%d:%s:%s", repo.ID, b.Commit, context),
		})
	}
	if b.Event == plan.EventDeploy {
		// A deployment is not the commit's build: it has a context of
		// its own, so that a failed deployment never turns the build's
		// status, which branch protection reads, red.
		add(DeployContext(b.Environment), stateOf(b.Status), deployDescription(b))
		return out
	}
	add(BuildContext, stateOf(b.Status), buildDescription(b))
	for _, j := range b.Jobs {
		add(BuildContext+"/"+j.Name, stateOf(j.Status), jobDescription(j))
	}
	return out
}

func fullSHA(s string) bool {
	return (len(s) == 40 || len(s) == 64) && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// forgeAPI is the URL of repo's forge API, when Gantry has a reporter
// for its forge and credentials for it; otherwise "" and, at most once
// per repo, the notice that says why nothing is posted.
func (n *Notifier) forgeAPI(ctx context.Context, repo *store.Repo) (string, []*store.Delivery) {
	rep, ok := n.opts.Reporters[repo.Forge]
	if !ok {
		return "", nil
	}
	token, err := n.opts.Credentials(ctx, repo.Name)
	switch {
	case err != nil:
		// Asked again when each is sent.
		n.opts.Log.LogAttrs(ctx, slog.LevelWarn, "forge credentials", slog.String("repo", repo.Name), slog.Any("err", err))
	case token == "":
		why := fmt.Sprintf("no forge credentials for %s: commit statuses are not posted", repo.Name)
		if n.opts.CredentialsHint != "" {
			why += " (" + n.opts.CredentialsHint + ")"
		}
		return "", n.notice(ctx, repo, "nocreds", BuildContext, why)
	}
	if repo.APIURL != "" {
		return repo.APIURL, nil
	}
	api, err := rep.APIURL(repo.CloneURL, repo.Name)
	if err != nil {
		return "", n.notice(ctx, repo, "noapi", BuildContext, fmt.Sprintf("%v: set the API URL with gantry repo add --api-url", err))
	}
	return api, nil
}

// hostOf is the host:port deliveries to u are held by.
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.Host)
}

// stateOf maps a stored build or job status to the state reported.
func stateOf(status string) forge.State {
	switch status {
	case store.StatusRunning:
		return forge.StateRunning
	case store.StatusSuccess:
		return forge.StateSuccess
	case store.StatusFailure:
		return forge.StateFailure
	case store.StatusError:
		return forge.StateError
	case store.StatusCancelled:
		return forge.StateCancelled
	case store.StatusSkipped:
		return forge.StateSkipped
	}
	return forge.StatePending
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func buildDescription(b *store.Build) string {
	name := fmt.Sprintf("Build #%d", b.Number)
	switch b.Status {
	case store.StatusQueued:
		if b.Reason != "" {
			return name + " is queued: " + firstLine(b.Reason)
		}
		return name + " is queued"
	case store.StatusRunning:
		return name + " is running"
	case store.StatusSuccess:
		if !b.StartedAt.IsZero() && !b.FinishedAt.IsZero() {
			return name + " passed in " + console.Duration(b.FinishedAt.Sub(b.StartedAt))
		}
		return name + " passed"
	case store.StatusFailure:
		var failed []string
		for _, j := range b.Jobs {
			if j.Status == store.StatusFailure {
				failed = append(failed, j.Name)
			}
		}
		return name + " failed: " + strings.Join(failed, ", ")
	case store.StatusError:
		if b.Reason != "" {
			return name + " errored: " + firstLine(b.Reason)
		}
		for _, j := range b.Jobs {
			if j.Status == store.StatusError && j.Reason != "" {
				return name + " errored: " + j.Name + ": " + firstLine(j.Reason)
			}
		}
		return name + " errored"
	case store.StatusCancelled:
		return name + " was cancelled"
	case store.StatusSkipped:
		return name + ": every job was skipped"
	}
	return name + " is " + b.Status
}

func jobDescription(j *store.Job) string {
	switch j.Status {
	case store.StatusPending:
		return "Waiting for the jobs it needs"
	case store.StatusQueued:
		if j.Reason != "" {
			return "Queued: " + firstLine(j.Reason)
		}
		return "Queued"
	case store.StatusRunning:
		return "Running"
	case store.StatusSuccess:
		if !j.StartedAt.IsZero() && !j.FinishedAt.IsZero() {
			return "Passed in " + console.Duration(j.FinishedAt.Sub(j.StartedAt))
		}
		return "Passed"
	case store.StatusFailure:
		if j.ExitCode > 0 {
			return fmt.Sprintf("Failed with exit code %d", j.ExitCode)
		}
		return "Failed"
	}
	if j.Status == "" {
		return ""
	}
	text := strings.ToUpper(j.Status[:1]) + j.Status[1:]
	if j.Reason != "" {
		text += ": " + firstLine(j.Reason)
	}
	return text
}
