// Package backend defines where a step's process lives: the seam between the
// engine, which decides what runs when, and the machinery that runs it (a
// process on this host, a container, later a pod).
//
// A backend knows nothing of pipelines, expressions or secrets: it receives a
// fully resolved job and fully resolved steps. Every implementation passes the
// conformance suite in package backendtest.
//
// Lifecycle of a job on a backend:
//
//	Start ──► Exec(step 1) ──► Exec(step 2) ──► ... ──► Close
//	  │                                                   ▲
//	  └──────────────── (error) ──────────────────────────┘ (Close is always called once Start succeeded)
package backend

import (
	"context"
	"errors"
	"io"
	"time"
)

// Backend prepares the place where a job's steps run. Start may be called
// concurrently for different jobs.
type Backend interface {
	// Name is the backend's short name ("local", "docker") as shown to users.
	Name() string

	// Start prepares a job: its workspace, and for container backends its
	// network, services and images. The caller owns the returned Job and must
	// Close it, whatever happens to its steps. Start honours ctx; on error
	// nothing it created is left behind.
	Start(ctx context.Context, spec JobSpec) (Job, error)
}

// Job is one started job. Its steps run one at a time: the engine never calls
// Exec concurrently on the same Job, but Close may be called while an Exec is
// running (to cancel) and must make that Exec return promptly.
type Job interface {
	// Exec runs one step to completion and writes its output to out: stdout
	// and stderr interleaved in the order the process wrote them. Writes to
	// out come from one goroutine at a time.
	//
	// A step that ran and exited is a Result, whatever its exit code; error
	// means the machinery failed (the shell could not be started, the
	// container vanished). When ctx is done, Exec stops the step's whole
	// process tree: SIGTERM, a grace period, then SIGKILL. It then returns a
	// Result with Stopped set and an error wrapping context.Cause(ctx), so the
	// caller can tell a timeout from a cancel.
	Exec(ctx context.Context, step StepSpec, out io.Writer) (Result, error)

	// Close stops whatever the job's steps left running (background
	// processes, containers, networks) and releases the job's resources. It
	// is safe to call more than once and from another goroutine than Exec.
	Close(ctx context.Context) error
}

// JobSpec is a job as a backend needs it: resolved, with no expressions left.
type JobSpec struct {
	// ID is unique among the jobs alive on this backend at one time; container
	// backends label what they create with it.
	ID string
	// Name is the job's name, for messages.
	Name string
	// Workspace is the host directory that holds the checkout. Steps start in
	// it, and container backends mount it at the same path.
	Workspace string
	// Image is the container image the steps run in; empty on the local backend.
	Image string
	// Pull is the image pull policy for Image and the services' images:
	// "always", "if-not-present" or "never"; empty means the backend's
	// default. Backends without images ignore it.
	Pull string
	// Services are sidecar containers started beside the steps.
	Services []Service
}

// Service is a sidecar a job's steps can reach by its Name.
type Service struct {
	Name    string
	Image   string
	Env     map[string]string
	Command []string
	// Ready, when set, is a check run inside the service's container until
	// it succeeds: Start returns only once every service is ready.
	Ready *Ready
}

// Ready is a service's readiness check.
type Ready struct {
	// Command is run in the service's container, for example
	// ["sh", "-c", "pg_isready"]; exit status 0 means ready.
	Command []string
	// Interval is the pause between two checks; zero means the backend's
	// default.
	Interval time.Duration
	// Timeout bounds the wait for the service; zero means the backend's
	// default.
	Timeout time.Duration
}

// StepSpec is one step to execute.
type StepSpec struct {
	// Name is the step's name, for messages.
	Name string
	// Command is the program and its arguments, for example
	// ["sh", "-e", "-c", script].
	Command []string
	// Env is the step's environment as KEY=VALUE pairs. The backend adds only
	// what its documentation says it adds (for the local backend a few host
	// basics such as PATH and HOME when Env does not set them).
	Env []string
	// Dir is the working directory, relative to the workspace; empty means
	// the workspace itself.
	Dir string
}

// Result is how a step ended.
type Result struct {
	// ExitCode is the process's exit status; -1 when it was ended by a
	// signal or never started.
	ExitCode int
	// Stopped is true when the step was stopped because its context ended
	// (timeout or cancel) rather than exiting by itself.
	Stopped bool
}

// ErrUnavailable is returned by Start when the backend cannot run jobs here
// (no Docker Engine, for example).
var ErrUnavailable = errors.New("backend unavailable")
