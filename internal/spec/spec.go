// Package spec reads a pipeline file (.gantry.yml) into a Pipeline: parsed,
// type-checked and validated, with every problem reported at its line and
// column. It does no I/O beyond the bytes it is given, and it decides nothing
// about what runs: package plan turns a Pipeline and a trigger into jobs.
//
// docs/pipeline.md documents the format; schema/gantry.schema.json describes
// it for editors, and a test keeps the two in step with this package.
package spec

import (
	"time"
	"unicode/utf8"
)

// Pipeline is a whole pipeline file.
type Pipeline struct {
	On  Triggers
	Env map[string]string
	// Concurrency maps an event (push, pull_request, tag, schedule, manual)
	// to what a new build does to the unfinished builds of the same branch
	// (or pull request): see ConcurrencyMode.
	Concurrency map[string]string
	// Limits cap the jobs that run at once (concurrency.repo and
	// concurrency.branch).
	Limits Limits
	// Jobs are in the order the file lists them.
	Jobs []*Job
	// Environments are in the order the file lists them.
	Environments []*Environment
}

// Limits cap how many jobs run at once: of the repository, and of one
// branch; 0 is no limit.
type Limits struct {
	Repo   int
	Branch int
}

// Concurrency modes: what a new build does to the unfinished builds of the
// same branch, or of the same pull request.
const (
	// ConcurrencyCancel cancels them: only the newest commit matters.
	ConcurrencyCancel = "cancel"
	// ConcurrencyQueue waits until they have finished.
	ConcurrencyQueue = "queue"
	// ConcurrencyParallel runs beside them.
	ConcurrencyParallel = "parallel"
)

// ConcurrencyModes lists the modes `concurrency:` accepts.
var ConcurrencyModes = []string{ConcurrencyCancel, ConcurrencyQueue, ConcurrencyParallel}

// ConcurrencyMode is the mode for builds started by event: as the file
// says, or by default cancel for pull requests and queue for the rest.
func (p *Pipeline) ConcurrencyMode(event string) string {
	if m := p.Concurrency[event]; m != "" {
		return m
	}
	if event == "pull_request" {
		return ConcurrencyCancel
	}
	return ConcurrencyQueue
}

// Job returns the job called name, or nil.
func (p *Pipeline) Job(name string) *Job {
	for _, j := range p.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Pos is a 1-based line and column in the pipeline file.
type Pos struct {
	Line, Col int
}

// Triggers says which events start the pipeline. A file without `on` builds
// every push to every branch and tag, and every pull request.
type Triggers struct {
	Push        *PushTrigger
	PullRequest *PullRequestTrigger
	Schedule    []Schedule
}

// PushTrigger filters pushes. Empty lists filter nothing. Patterns are globs
// where * stops at / and ** does not.
type PushTrigger struct {
	Branches       []string
	BranchesIgnore []string
	Tags           []string
	Paths          []string
	PathsIgnore    []string
}

// PullRequestTrigger filters pull requests by their target branch and the
// paths they change.
type PullRequestTrigger struct {
	Branches       []string
	BranchesIgnore []string
	Paths          []string
	PathsIgnore    []string
}

// Schedule is a cron trigger; scheduled builds run on the default branch.
type Schedule struct {
	Cron string
	Pos  Pos
}

// Job is a job as written, before its matrix is expanded.
type Job struct {
	Name     string
	Pos      Pos
	Needs    []string
	NeedsPos Pos
	If       string
	IfPos    Pos
	RunsOn   []string
	Image    string
	// Pull is the image pull policy: "always", "if-not-present", "never",
	// or empty for the backend's default (if-not-present).
	Pull      string
	Services  []*Service
	Locks     []string
	Artifacts []string
	Secrets   []string
	Env       map[string]string
	Matrix    *Matrix
	Timeout   time.Duration
	Steps     []*Step
}

// Step is one command of a job.
type Step struct {
	Name string
	Pos  Pos
	Run  string
	// RunPos is where the script text starts, for expression errors.
	RunPos  Pos
	Env     map[string]string
	Timeout time.Duration
	// Retry is how many more times a failed step is run before it counts as failed.
	Retry int
	If    string
	IfPos Pos
	// WorkingDirectory is relative to the workspace.
	WorkingDirectory string
	// Health, on the step a deployment adds after an environment's steps,
	// makes it a health check instead of a script (Run is empty).
	Health *Health
}

// DisplayName is the step's name, or its first line of script.
func (s *Step) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return firstLine(s.Run, 60)
}

func firstLine(s string, max int) string {
	for i, c := range s {
		if c == '\n' {
			s = s[:i]
			break
		}
	}
	if len(s) > max {
		i := max - 1
		for i > 0 && !utf8.RuneStart(s[i]) {
			i-- // do not cut a character in two
		}
		s = s[:i] + "…"
	}
	return s
}

// Matrix is a job's matrix: the product of its axes, less Exclude, plus Include.
type Matrix struct {
	Axes    []Axis
	Include []map[string]string
	Exclude []map[string]string
}

// Axis is one dimension of a matrix, in file order.
type Axis struct {
	Name   string
	Values []string
}

// Service is a sidecar container started beside a job's steps.
type Service struct {
	Name    string
	Image   string
	Env     map[string]string
	Command []string
	// Ready is a command that succeeds once the service accepts work.
	Ready *Ready
}

// Ready is a readiness check for a service.
type Ready struct {
	Run      string
	Interval time.Duration
	Timeout  time.Duration
}

// Environment is a deployment target (executed by the delivery half of Gantry).
type Environment struct {
	Name string
	Pos  Pos
	// DeployBranch, when set, deploys every green build of that branch here by itself.
	DeployBranch string
	// PromoteFrom names the environment a release must have succeeded in first.
	PromoteFrom string
	// Groups, when set, are the only groups whose members (and admins)
	// may deploy, promote or roll back here.
	Groups    []string
	Approvals *Approvals
	Rollout   *Rollout
	// Health, when set, is checked after the steps; a deployment whose
	// check fails is rolled back to the release live before it.
	Health  *Health
	Freeze  []*Freeze
	RunsOn  []string
	Image   string
	Env     map[string]string
	Secrets []string
	Timeout time.Duration
	URL     string
	Steps   []*Step
}

// Approvals says who must approve a deployment before it starts.
type Approvals struct {
	Required         int
	Groups           []string
	AuthorMayApprove bool
}

// Rollout spreads a deployment across hosts in batches, with health checks.
type Rollout struct {
	Hosts  string
	Batch  int
	Health *Health
}

// Health is a health check, of an environment after its steps or of each
// host of a rollout: an HTTP GET of URL (any 2xx passes) or the command
// Run (exit code 0 passes), each try bounded by Timeout and Interval
// apart. It passes once Successes tries in a row passed, and fails once
// more than Retries tries failed.
type Health struct {
	URL       string
	Run       string
	Timeout   time.Duration
	Interval  time.Duration
	Successes int
	Retries   int
}

// The defaults of a health check's keys.
const (
	HealthTimeout   = 5 * time.Second
	HealthInterval  = 2 * time.Second
	HealthSuccesses = 3
	HealthRetries   = 3
)

// Freeze is a window during which nothing is deployed: it opens at each time
// Cron matches and lasts Duration.
type Freeze struct {
	Cron     string
	Duration time.Duration
	Reason   string
	Pos      Pos
}
