// Package api is Gantry's HTTP API, version 1: the handlers the server
// mounts under /api/v1, and the client the CLI uses. Both sides share the
// wire types below; their JSON field names are a contract with scripts.
package api

import (
	"github.com/gantry-ci/gantry/internal/git"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

// Repo is a repository as the API shows it. The webhook secret is never
// shown. APIURL, when set, is the forge API's base URL for commit
// statuses; else it follows from the clone URL.
type Repo struct {
	Name          string    `json:"name"`
	CloneURL      string    `json:"clone_url"`
	Forge         string    `json:"forge"`
	DefaultBranch string    `json:"default_branch"`
	APIURL        string    `json:"api_url,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// RepoAnswer answers POST and PATCH /api/v1/repos: the repository, and a
// warning when the server could not read it at the clone URL (it is saved
// all the same: the forge may be down, or the credentials come later).
type RepoAnswer struct {
	Repo
	Warning string `json:"warning,omitempty"`
}

// RepoChange is the body of PATCH /api/v1/repos/{owner}/{name}: the
// settings to change. Those left out keep their value; an empty api_url
// goes back to the one the clone URL implies.
type RepoChange struct {
	CloneURL      *string `json:"clone_url,omitempty"`
	WebhookSecret *string `json:"webhook_secret,omitempty"`
	Forge         *string `json:"forge,omitempty"`
	DefaultBranch *string `json:"default_branch,omitempty"`
	APIURL        *string `json:"api_url,omitempty"`
}

// NewRepo is the body of POST /api/v1/repos.
type NewRepo struct {
	Name          string `json:"name"`
	CloneURL      string `json:"clone_url"`
	Forge         string `json:"forge"`
	WebhookSecret string `json:"webhook_secret"`
	DefaultBranch string `json:"default_branch,omitempty"`
	APIURL        string `json:"api_url,omitempty"`
}

// Build is a build as the API shows it.
type Build struct {
	ID          int64      `json:"id"`
	Number      int64      `json:"number"`
	Repo        string     `json:"repo"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason,omitempty"`
	Event       string     `json:"event"`
	Commit      string     `json:"commit"`
	Branch      string     `json:"branch"`
	Tag         string     `json:"tag,omitempty"`
	BaseBranch  string     `json:"base_branch,omitempty"`
	PullRequest int        `json:"pull_request,omitempty"`
	FromFork    bool       `json:"from_fork,omitempty"` // a pull request from another repository: it gets no secrets
	Title       string     `json:"title,omitempty"`
	Author      string     `json:"author"`
	Message     string     `json:"message,omitempty"`
	RetryOf     int64      `json:"retry_of,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Jobs        []Job      `json:"jobs"`
}

// Job is a job of a build.
type Job struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	ExitCode *int   `json:"exit_code"`
	Agent    string `json:"agent,omitempty"`
	// Attempt counts the times the job was handed to an agent.
	Attempt    int        `json:"attempt"`
	RunsOn     []string   `json:"runs_on,omitempty"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Steps      []Step     `json:"steps"`
}

// Step is a step of a job.
type Step struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	ExitCode   *int       `json:"exit_code"`
	Attempts   int        `json:"attempts"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// Trigger is the body of POST /api/v1/builds: a manual build.
type Trigger struct {
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Commit string `json:"commit,omitempty"`
}

// LogLine is one line of a job's log, as GET .../logs returns it.
type LogLine struct {
	Job  string `json:"job"`
	Step int    `json:"step"`
	Seq  int64  `json:"seq"`
	Line string `json:"line"`
}

// Error is the body of every error response.
type Error struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func exitCode(code int, status string) *int {
	if code < 0 || !store.Finished(status) || status == store.StatusSkipped {
		return nil
	}
	return &code
}

// RepoOf converts a stored repo. The clone URL's credentials, if it has
// any, stay on the server: they are for fetching, not for whoever may see
// the repository.
func RepoOf(r *store.Repo) Repo {
	return Repo{Name: r.Name, CloneURL: git.RedactURL(r.CloneURL), Forge: r.Forge, DefaultBranch: r.DefaultBranch, APIURL: r.APIURL, CreatedAt: r.CreatedAt.UTC()}
}

// BuildOf converts a stored build.
func BuildOf(b *store.Build) Build {
	out := Build{
		ID: b.ID, Number: b.Number, Repo: b.Repo, Status: b.Status, Reason: b.Reason, Event: b.Event,
		Commit: b.Commit, Branch: b.Branch, Tag: b.Tag, BaseBranch: b.BaseBranch, PullRequest: b.PullRequest,
		FromFork: b.FromFork, Title: b.Title, Author: b.Author, Message: b.Message, RetryOf: b.RetryOf,
		CreatedAt: b.CreatedAt.UTC(), StartedAt: timePtr(b.StartedAt), FinishedAt: timePtr(b.FinishedAt),
		Jobs: []Job{},
	}
	for _, j := range b.Jobs {
		oj := Job{ID: j.ID, Name: j.Name, Status: j.Status, Reason: j.Reason, ExitCode: exitCode(j.ExitCode, j.Status),
			Agent: j.Agent, Attempt: j.Attempt, RunsOn: j.RunsOn, StartedAt: timePtr(j.StartedAt), FinishedAt: timePtr(j.FinishedAt), Steps: []Step{}}
		for _, s := range j.Steps {
			oj.Steps = append(oj.Steps, Step{Name: s.Name, Status: s.Status, Reason: s.Reason, ExitCode: exitCode(s.ExitCode, s.Status),
				Attempts: s.Attempts, StartedAt: timePtr(s.StartedAt), FinishedAt: timePtr(s.FinishedAt)})
		}
		out.Jobs = append(out.Jobs, oj)
	}
	return out
}
