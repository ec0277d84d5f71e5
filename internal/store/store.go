// Package store is the storage seam of the Gantry server: repositories,
// builds with their jobs and steps, logs, and API tokens. Implementations
// (store/sqlite, store/postgres) translate their errors into the
// sentinels below at their edge and pass the conformance suite in
// store/storetest.
//
// The store holds state and enforces the few invariants that must hold
// under concurrency (one build per delivery, build numbers without gaps or
// duplicates, one writer per job through its lease token); it makes no
// decisions about what runs next: the server does, through Update.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors every implementation returns, wrapped with the operation.
var (
	// ErrNotFound: no such repo, build, job or token.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists already (a repo name, a delivery ID).
	ErrConflict = errors.New("already exists")
	// ErrStaleLease: the caller's lease on a job was taken away (it expired,
	// the job was cancelled or handed to another agent). Its writes are
	// refused, so a job never has two writers.
	ErrStaleLease = errors.New("lease is no longer held")
)

// Build and job statuses as stored. A job is "pending" while it waits for
// jobs it needs, "queued" once it may be leased.
const (
	StatusPending   = "pending"
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSuccess   = "success"
	StatusFailure   = "failure"
	StatusError     = "error"
	StatusCancelled = "cancelled"
	StatusSkipped   = "skipped"
)

// Finished reports whether a build or job status is final.
func Finished(status string) bool {
	switch status {
	case StatusSuccess, StatusFailure, StatusError, StatusCancelled, StatusSkipped:
		return true
	}
	return false
}

// Repo is a repository the server builds.
type Repo struct {
	ID   int64
	Name string // OWNER/NAME as the forge spells it
	// CloneURL is what agents fetch from.
	CloneURL string
	// Forge is github, gitea, gitlab or bitbucket.
	Forge         string
	WebhookSecret string
	// DefaultBranch is where scheduled builds run; "main" unless set.
	DefaultBranch string
	// APIURL is the base URL of the forge's API for commit statuses; empty
	// means the one the clone URL implies.
	APIURL    string
	CreatedAt time.Time
}

// Build is one run of a repository's pipeline for one commit.
type Build struct {
	ID     int64
	RepoID int64
	// Repo is the repository's name, filled in on reads.
	Repo string
	// Number counts the builds of one repository from 1, without gaps.
	Number      int64
	Status      string
	Reason      string
	Event       string // push, tag, pull_request, schedule, manual
	Branch      string
	Tag         string
	Commit      string
	BaseBranch  string
	PullRequest int
	Title       string
	Author      string
	Message     string
	// DeliveryID is the forge's delivery ID; a second build with the same
	// one for the same repo is refused (ErrConflict).
	DeliveryID string
	// Pipeline is the pipeline file the build runs, as read from its commit.
	Pipeline []byte
	// RetryOf is the build this one retries, or 0.
	RetryOf int64
	// FromFork marks a build of a pull request whose head lives in
	// another repository: it never receives secrets. Written only by
	// CreateBuild.
	FromFork bool
	// Environment and Release, on a build of event "deploy", name the
	// environment it deploys to and the version of the release it
	// deploys. Written only by CreateBuild.
	Environment string
	Release     string
	CreatedAt   time.Time
	StartedAt   time.Time // zero until a job starts
	FinishedAt  time.Time // zero until the build is finished
	// Jobs are in plan order.
	Jobs []*Job
}

// Job is one job of a build.
type Job struct {
	ID       int64
	BuildID  int64
	Name     string
	Position int // index in the build's plan
	Status   string
	Reason   string
	ExitCode int // of the step that decided the job; -1 when none did
	RunsOn   []string
	// Locks are the resource pools the job holds a unit of while it runs.
	Locks []string
	// Agent, LeaseToken and LeaseExpires describe the lease while the job
	// runs. LeaseToken increases with every lease of any job, so a token
	// names one lease for ever (a fencing token).
	Agent        string
	LeaseToken   int64
	LeaseExpires time.Time
	// Attempt counts the leases of this job: 1 for the first.
	Attempt    int
	CreatedAt  time.Time
	QueuedAt   time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	Steps      []*Step
}

// Step is one step of a job, as far as it has run.
type Step struct {
	Index      int
	Name       string
	Status     string
	Reason     string
	ExitCode   int
	Attempts   int
	StartedAt  time.Time
	FinishedAt time.Time
}

// LogChunk is a piece of a job's output: whole lines, already masked.
type LogChunk struct {
	JobID int64
	// Seq orders a job's chunks; the store assigns it, from 1.
	Seq       int64
	Step      int
	Data      []byte
	CreatedAt time.Time
}

// Token kinds: an API token acts for a person or a script on /api/v1; an
// agent token lets one or more agents lease and run jobs, and nothing else.
const (
	TokenAPI   = "api"
	TokenAgent = "agent"
)

// Token is an API or agent token; only a hash of its secret is stored.
type Token struct {
	ID    int64
	Name  string
	Hash  []byte
	Admin bool
	// Kind is TokenAPI or TokenAgent; empty is stored as TokenAPI.
	Kind string
	// Labels, on an agent token, are the only labels its agents may claim;
	// empty means any.
	Labels []string
	// UserID is the user an API token acts for, and User their name
	// (filled in on reads); Admin is then the user's.
	UserID    int64
	User      string
	CreatedAt time.Time
	// ExpiresAt, when not zero, is when the token stops working.
	ExpiresAt time.Time
	// RevokedAt is zero while the token is valid.
	RevokedAt time.Time
}

// Agent is an agent as last seen by any server: what it said of itself
// when it asked for work.
type Agent struct {
	Name     string
	TokenID  int64
	Labels   []string
	Capacity int
	Version  string
	// Draining is true once the agent said it takes no new jobs.
	Draining  bool
	FirstSeen time.Time
	LastSeen  time.Time
}

// Lock is a resource pool: at most Capacity running jobs hold it at once.
type Lock struct {
	Name      string
	Capacity  int
	CreatedAt time.Time
}

// BuildFilter selects builds; empty fields select everything.
type BuildFilter struct {
	Repo   string
	Branch string
	Status string
	// Blocked selects only queued builds none of whose jobs may run yet:
	// every job is pending (the build waits for another to finish).
	Blocked bool
	// Unfinished selects only builds not finished yet (pending, queued or
	// running).
	Unfinished bool
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// Notifier is implemented by stores that several servers share: a job
// queued through one server must wake the idle agents of all.
type Notifier interface {
	// NotifyQueued tells every server, this one included, that jobs may
	// have been queued.
	NotifyQueued(ctx context.Context) error
	// ListenQueued calls fn for every NotifyQueued of any server until ctx
	// ends, and once more whenever a notification may have been missed.
	ListenQueued(ctx context.Context, fn func()) error
}

// Store is the server's state. Every method is safe for concurrent use.
type Store interface {
	// AuditLog is in audit.go.
	AuditLog

	// CreateRepo stores r and sets r.ID and r.CreatedAt. ErrConflict when
	// the name is taken.
	CreateRepo(ctx context.Context, r *Repo) error
	// Repo returns the repo of that name, or ErrNotFound.
	Repo(ctx context.Context, name string) (*Repo, error)
	// Repos returns every repo, by name.
	Repos(ctx context.Context) ([]*Repo, error)
	// UpdateRepo stores r's clone URL, forge, webhook secret, default
	// branch and API URL over those of the repo named r.Name; its builds
	// stay. ErrNotFound when there is no such repo.
	UpdateRepo(ctx context.Context, r *Repo) error
	// DeleteRepo removes a repo with its builds, jobs, logs and grants.
	DeleteRepo(ctx context.Context, name string) error

	// CreateBuild stores b and its jobs in one transaction, giving b the
	// next number of its repo and setting the IDs and CreatedAt of b and
	// its jobs. When b.DeliveryID is not empty and a build of the same repo
	// has it already, nothing is stored: it returns ErrConflict and sets
	// b.ID to the existing build's ID.
	CreateBuild(ctx context.Context, b *Build) error
	// Build returns a build with its jobs and their steps.
	Build(ctx context.Context, id int64) (*Build, error)
	// Builds returns the builds that match f, newest first, with their
	// jobs but without steps or pipeline.
	Builds(ctx context.Context, f BuildFilter) ([]*Build, error)
	// BuildIDs returns the IDs of builds in any of these statuses, oldest
	// first.
	BuildIDs(ctx context.Context, statuses ...string) ([]int64, error)

	// Update runs fn on the build with its jobs and steps inside one
	// transaction that no other Update or Lease of the same build can
	// interleave with, then writes back whatever fn changed in the build,
	// its jobs and their steps (fn may append steps to a job, but must not
	// add or remove jobs). When fn
	// returns an error nothing is written and Update returns it.
	Update(ctx context.Context, buildID int64, fn func(b *Build) error) error

	// Lease hands the oldest queued job whose RunsOn labels are all in
	// labels, and that may take its locks, to agent: it becomes running
	// with a new LeaseToken, an Attempt one higher, and LeaseExpires = now
	// + ttl. It returns the job and its build (with jobs, without steps),
	// or ErrNotFound when no job fits. It never waits.
	//
	// A job may take its locks when each exists and, for each, the running
	// jobs that hold it plus the queued jobs ahead of it in the queue that
	// name it are fewer than its capacity: a later job never overtakes an
	// earlier one for the same lock.
	Lease(ctx context.Context, agent string, labels []string, ttl time.Duration) (*Build, *Job, error)
	// Renew extends a lease to now + ttl; ErrStaleLease when the job is no
	// longer running under that token.
	Renew(ctx context.Context, jobID, token int64, ttl time.Duration) error
	// ExpiredLeases returns the IDs of builds that have a running job whose
	// lease expired before now.
	ExpiredLeases(ctx context.Context, now time.Time) ([]int64, error)

	// AppendLogs stores chunks of one job under its lease: ErrStaleLease
	// when the job is not running under token. It assigns each chunk's Seq.
	AppendLogs(ctx context.Context, jobID, token int64, chunks []*LogChunk) error
	// Logs returns up to limit chunks of a job with Seq > after, in order.
	Logs(ctx context.Context, jobID, after int64, limit int) ([]*LogChunk, error)

	// CreateToken stores t and sets t.ID and t.CreatedAt; ErrConflict
	// when its hash exists.
	CreateToken(ctx context.Context, t *Token) error
	// TokenByHash returns the token with that hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
	// CountTokens returns how many tokens exist.
	CountTokens(ctx context.Context) (int, error)
	// Tokens returns the tokens of one kind, oldest first, with their
	// hashes.
	Tokens(ctx context.Context, kind string) ([]*Token, error)
	// RevokeToken marks a token revoked; ErrNotFound when there is no such
	// token. Revoking a revoked token keeps its first RevokedAt.
	RevokeToken(ctx context.Context, id int64) (*Token, error)

	// SaveAgent records what an agent said of itself and sets LastSeen to
	// now (and FirstSeen, the first time). Agents are keyed by name.
	SaveAgent(ctx context.Context, a *Agent) error
	// Agents returns every agent ever seen, by name.
	Agents(ctx context.Context) ([]*Agent, error)
	// CreateLock stores a lock and sets CreatedAt; ErrConflict when the
	// name is taken.
	CreateLock(ctx context.Context, l *Lock) error
	// SetLock creates a lock, or sets the capacity of the one of that name
	// (keeping its CreatedAt), and sets l.CreatedAt.
	SetLock(ctx context.Context, l *Lock) error
	// DeleteLock removes a lock; ErrNotFound when there is none. Jobs that
	// name it wait until it exists again.
	DeleteLock(ctx context.Context, name string) error
	// Locks returns every lock, by name.
	Locks(ctx context.Context) ([]*Lock, error)

	// RunningJobs returns the jobs that are running, with their lease,
	// oldest lease first, without steps.
	RunningJobs(ctx context.Context) ([]*Job, error)

	// CountBuilds returns the number of builds in each status.
	CountBuilds(ctx context.Context) (map[string]int, error)

	Access
	// Secrets, encrypted by the caller (package secret); see Secret.
	//
	// SetSecret stores s.Ciphertext under s.KeyID as the secret of repo
	// s.Repo named s.Name in s.Environment, replacing the value of one that
	// exists (whose ID and CreatedAt are kept); created says which. It sets
	// s.ID, s.RepoID, s.CreatedAt and s.UpdatedAt. ErrNotFound when there
	// is no such repo.
	SetSecret(ctx context.Context, s *Secret) (created bool, err error)
	// Secrets returns the secrets of a repo, by name then environment;
	// ErrNotFound when there is no such repo.
	Secrets(ctx context.Context, repo string) ([]*Secret, error)
	// AllSecrets returns the secrets of every repo, by ID.
	AllSecrets(ctx context.Context) ([]*Secret, error)
	// DeleteSecret removes one secret; ErrNotFound when there is none.
	DeleteSecret(ctx context.Context, repo, name, environment string) error
	// RekeySecret replaces the ciphertext of old (by ID) with ciphertext
	// under keyID, if the row still holds old.KeyID and old.Ciphertext; it
	// does not change UpdatedAt. ErrConflict when the value was set since
	// old was read, ErrNotFound when the secret is gone: then nothing is
	// written.
	RekeySecret(ctx context.Context, old *Secret, keyID string, ciphertext []byte) error

	// Outbox: deliveries to forges and hooks (delivery.go).
	Outbox
	// IssueLinks: the issue keys builds name (issue.go).
	IssueLinks
	Sessions
	LogTail

	// Releases: artifacts, releases, environments, deployments (release.go).
	Releases
	// Decisions is in approval.go.
	Decisions
	// Freezes is in freeze.go.
	Freezes

	// Close releases the store's resources.
	Close() error
}
