package store

import (
	"context"
	"time"
)

// Artifact is a file a job uploaded when it passed. Its bytes live outside
// the store, under their SHA-256 (package artifact); the store records
// which build and job made it, where, and what it must hash to.
type Artifact struct {
	ID      int64
	BuildID int64
	JobID   int64
	// Job is the job's name, filled in on reads.
	Job string
	// Path is where the file was in the workspace: relative, with slashes.
	Path string
	Size int64
	// Mode is the file's permission bits (0o644, or 0o755 for a program):
	// what it is given again where it is placed.
	Mode uint32
	// SHA256 is the lowercase hex SHA-256 of the bytes.
	SHA256    string
	CreatedAt time.Time
}

// Release is what one green build produced, registered to be deployed:
// the build's artifacts, by digest, under a version.
type Release struct {
	ID     int64
	RepoID int64
	// Repo is the repository's name, filled in on reads.
	Repo string
	// Version is unique within the repository: the build's tag, or
	// BRANCH-NUMBER.
	Version string
	BuildID int64
	// BuildNumber is the build's number in its repository, filled in on
	// reads.
	BuildNumber int64
	Commit      string
	Branch      string
	Tag         string
	// Authors are the authors of the release's commits ("Name <email>"),
	// those since the previous release of the same branch.
	Authors []string
	// Issues are the issue keys the release's commits name (the same
	// commits as Authors), sorted; read back with the release.
	Issues    []string
	CreatedAt time.Time
	// Artifacts are the build's artifacts when the release was made, by
	// path; read back with the release.
	Artifacts []*Artifact
}

// Deployment states as stored; package deploy has the machine that moves
// a deployment between them.
const (
	// DeployPending: requested, waiting for its turn in its environment.
	DeployPending = "pending"
	// DeployRunning: its build exists; queued for an agent or running.
	DeployRunning = "running"
	// DeploySucceeded, DeployFailed and DeployCancelled are final.
	DeploySucceeded = "succeeded"
	DeployFailed    = "failed"
	DeployCancelled = "cancelled"
)

// DeployFinished reports whether a deployment state is final.
func DeployFinished(state string) bool {
	switch state {
	case DeploySucceeded, DeployFailed, DeployCancelled:
		return true
	}
	return false
}

// Deployment is one request to put a release into an environment, and
// what came of it. It runs as a build of event "deploy" whose one job
// runs the environment's steps.
type Deployment struct {
	ID     int64
	RepoID int64
	// Repo is the repository's name, filled in on reads.
	Repo        string
	Environment string
	ReleaseID   int64
	// Version is the release's version, filled in on reads.
	Version string
	// Kind is how it was asked for: auto, deploy, promote or rollback.
	Kind string
	// RequestedBy is the user who asked; empty for automatic deployments.
	RequestedBy string
	// RollbackOf is the release a rollback replaced, or 0.
	RollbackOf int64
	State      string
	// Reason says why a deployment failed, was cancelled, or was refused.
	Reason string
	// BuildID is the build that runs it, 0 until it started.
	BuildID    int64
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// ReleaseFilter selects releases; empty fields select everything.
type ReleaseFilter struct {
	Repo   string
	Branch string
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// DeploymentFilter selects deployments; empty fields select everything.
type DeploymentFilter struct {
	Repo        string
	Environment string
	ReleaseID   int64
	// States selects deployments in any of these states.
	States []string
	// Limit caps the number returned; 0 means 50.
	Limit int
}

// Releases is the part of the Store that holds what delivery needs:
// artifacts, releases, environments and deployments. Every method is safe
// for concurrent use.
type Releases interface {
	// AddArtifact records an artifact of job a.JobID of build a.BuildID
	// while that job runs under the lease token: ErrStaleLease otherwise.
	// The same job recording the same path again replaces the record (a
	// job run again after its agent was lost uploads again); another job
	// of the build with that path is ErrConflict. It sets a.ID, a.Job and
	// a.CreatedAt.
	AddArtifact(ctx context.Context, a *Artifact, token int64) error
	// Artifacts returns the artifacts of a build, by path.
	Artifacts(ctx context.Context, buildID int64) ([]*Artifact, error)
	// ExpireArtifacts removes the artifacts created before t that no
	// release refers to, and returns how many it removed.
	ExpireArtifacts(ctx context.Context, before time.Time) (int, error)
	// ArtifactInUse reports whether an artifact with that SHA-256 is
	// recorded: whether its bytes must be kept.
	ArtifactInUse(ctx context.Context, sha256 string) (bool, error)

	// CreateRelease stores r, with every artifact of its build as
	// r.Artifacts, makes sure the repository has the environments named in
	// envs, and stores deploys (deployments of r, whose ReleaseID it sets)
	// in one transaction, with r.Issues. It sets the IDs and CreatedAt of r and deploys,
	// r.Repo, r.BuildNumber and r.Artifacts. ErrConflict when the repo has
	// a release of that version, or of that build, already: nothing is
	// stored.
	CreateRelease(ctx context.Context, r *Release, envs []string, deploys []*Deployment) error
	// Release returns a repo's release of that version, with its artifacts,
	// or ErrNotFound.
	Release(ctx context.Context, repo, version string) (*Release, error)
	// ReleaseByID returns a release with its artifacts, or ErrNotFound.
	ReleaseByID(ctx context.Context, id int64) (*Release, error)
	// ReleaseOfBuild returns the release a build made, or ErrNotFound.
	ReleaseOfBuild(ctx context.Context, buildID int64) (*Release, error)
	// ListReleases returns the releases that match f, newest first, with
	// their artifacts.
	ListReleases(ctx context.Context, f ReleaseFilter) ([]*Release, error)

	// Environments returns the names of a repo's environments, in the
	// order they were first seen; ErrNotFound when there is no such repo.
	Environments(ctx context.Context, repo string) ([]string, error)

	// CreateDeployment stores d, making its environment when the repo has
	// none of that name, and sets d.ID and d.CreatedAt. ErrNotFound when
	// the repo or the release does not exist, or the release is of
	// another repo.
	CreateDeployment(ctx context.Context, d *Deployment) error
	// StartDeployment starts the pending deployment id: in one
	// transaction, which no other StartDeployment of the same environment
	// interleaves with, it stores b as CreateBuild does and makes the
	// deployment running with b's ID. ErrConflict, and nothing changes,
	// when the deployment is not pending or its environment has a running
	// deployment: one deployment runs at a time per environment.
	StartDeployment(ctx context.Context, id int64, b *Build) error
	// EndDeployment moves a deployment in state from (pending or
	// running) to state (one of the final ones) with reason, and returns
	// it. ErrConflict, and nothing changes, when it is no longer in from:
	// it ended already, or it started meanwhile (a pending deployment
	// withdrawn or rejected as another server starts it is left running).
	EndDeployment(ctx context.Context, id int64, from, state, reason string) (*Deployment, error)
	// Deployment returns a deployment, or ErrNotFound.
	Deployment(ctx context.Context, id int64) (*Deployment, error)
	// DeploymentOfBuild returns the deployment a build runs, or
	// ErrNotFound.
	DeploymentOfBuild(ctx context.Context, buildID int64) (*Deployment, error)
	// Deployments returns the deployments that match f, newest first.
	Deployments(ctx context.Context, f DeploymentFilter) ([]*Deployment, error)
}
