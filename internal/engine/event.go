package engine

import "time"

// Status is the state of a job, a step or a whole run.
//
//	pending ──► running ──► success
//	   │           ├──────► failure    (a step exited non-zero or timed out)
//	   │           ├──────► error      (the machinery failed: no shell, no container)
//	   │           └──────► cancelled  (interrupted, or stopped by --fail-fast)
//	   ├──────────────────► skipped    (its if: was false, or a job it needs did not pass)
//	   └──────────────────► cancelled  (the run was interrupted before it started)
type Status string

// The statuses a job, step or run can be in.
const (
	Pending   Status = "pending"
	Running   Status = "running"
	Success   Status = "success"
	Failure   Status = "failure"
	Error     Status = "error"
	Cancelled Status = "cancelled"
	Skipped   Status = "skipped"
)

// Passed reports whether a job in this state lets the jobs that need it run.
func (s Status) Passed() bool { return s == Success }

// EventType says what an Event reports.
type EventType string

// The events a run emits, in this order for each job:
// job.started, (step.started, log*, step.finished)*, job.finished. A job that
// never starts emits only job.finished.
const (
	JobStarted   EventType = "job.started"
	JobFinished  EventType = "job.finished"
	StepStarted  EventType = "step.started"
	StepFinished EventType = "step.finished"
	Log          EventType = "log"
)

// Event is one thing that happened in a run. Events of one job arrive in
// order; events of different jobs interleave.
type Event struct {
	Type EventType
	Time time.Time
	Job  string
	// Step is the step's display name and StepIndex its 0-based index, on
	// step and log events.
	Step      string
	StepIndex int
	// Attempt counts runs of a step with retry: 1 for the first.
	Attempt int
	// MaxAttempts is 1 + the step's retry count.
	MaxAttempts int
	// Status, on finished events.
	Status Status
	// ExitCode, on step.finished: the process's exit status, -1 when it was
	// stopped by a signal or never started.
	ExitCode int
	// Duration, on finished events.
	Duration time.Duration
	// Reason says why, when Status is not success: "exit code 1", "timed out
	// after 10s", "needs build: failure".
	Reason string
	// Data, on log events: one or more whole lines, each ending in '\n',
	// with every secret already masked. It is only valid during the call
	// to the sink: copy it to keep it.
	Data []byte
}
