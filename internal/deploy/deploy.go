// Package deploy decides what happens to deployments: the states a
// deployment moves through and what moves it, which waiting deployment of
// an environment starts next, whether a release may go to an environment,
// which release a rollback returns to, and what a build's release is
// called. It does no I/O and keeps no state: package delivery carries its
// decisions out against the store and the build queue.
//
// It decides who may deploy to an environment, who may approve or reject
// a deployment and when enough people have, and when a freeze window
// holds one (approval.go); Next takes a Ready function, where approvals
// and freeze windows hold a deployment in line.
//
// What it does not decide yet: rollouts across hosts. An environment that
// asks for one is refused (Admit) rather than deployed to without it.
package deploy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// How a deployment was asked for.
const (
	// KindAuto: a new release of a branch an environment's deploy.branch
	// names.
	KindAuto = "auto"
	// KindDeploy: gantry deploy.
	KindDeploy = "deploy"
	// KindPromote: gantry promote, from the environment promote-from names.
	KindPromote = "promote"
	// KindRollback: gantry rollback, to the release live before.
	KindRollback = "rollback"
	// KindAutoRollback: Gantry's own, when a deployment failed its
	// environment's health check, to the release live before it (see
	// AutoRollback). It goes ahead of every waiting deployment, and
	// neither approvals nor freeze windows hold it: it puts back what
	// was approved and running a moment ago.
	KindAutoRollback = "auto-rollback"
)

// Event is what happens to a deployment.
type Event string

// The events of a deployment's life.
const (
	// Start: its build was stored and queued.
	Start Event = "start"
	// Succeed: its build passed.
	Succeed Event = "succeed"
	// Fail: its build failed or errored, or it could not start.
	Fail Event = "fail"
	// Cancel: someone cancelled its build.
	Cancel Event = "cancel"
	// Reject: an approver rejected it before it started.
	Reject Event = "reject"
)

// ErrTransition: the event cannot happen to a deployment in that state.
var ErrTransition = errors.New("no such transition")

// transitions is the machine:
//
//	requested
//	    │
//	    ▼
//	 pending ───Start───► running ───Succeed───► succeeded
//	    │                    │
//	    │ Fail, Reject,      │ Fail, Cancel
//	    │ Cancel             │
//	    ▼                    ▼
//	 failed, cancelled    failed, cancelled
//
// A pending deployment waits its turn: one runs at a time per environment,
// in the order asked, and while it lacks approvals or a freeze window is
// open (a rejection fails it);
// one that cannot start is refused (Fail). A running deployment is never
// cancelled by a newer one: only its build's end, or someone cancelling
// that build, ends it. Final states have no way out.
var transitions = map[string]map[Event]string{
	store.DeployPending: {Start: store.DeployRunning, Fail: store.DeployFailed, Reject: store.DeployFailed, Cancel: store.DeployCancelled},
	store.DeployRunning: {Succeed: store.DeploySucceeded, Fail: store.DeployFailed, Cancel: store.DeployCancelled},
}

// Transition returns the state a deployment in state from moves to on ev;
// an error wrapping ErrTransition when it cannot (a final state, an
// unknown one, or an event that does not apply).
func Transition(from string, ev Event) (string, error) {
	if to, ok := transitions[from][ev]; ok {
		return to, nil
	}
	return "", fmt.Errorf("deployment %s: %s: %w", from, ev, ErrTransition)
}

// Outcome is the event that a deployment's build, finished, is to it, and
// the reason to record when it did not succeed: the reason of its first
// job that did not pass, else the build's.
func Outcome(b *store.Build) (Event, string) {
	reason := b.Reason
	for _, j := range b.Jobs {
		if j.Status != store.StatusSuccess && j.Reason != "" {
			reason = j.Name + ": " + j.Reason
			break
		}
	}
	switch b.Status {
	case store.StatusSuccess:
		return Succeed, ""
	case store.StatusCancelled:
		if reason == "" {
			reason = fmt.Sprintf("build %d was cancelled", b.ID)
		}
		return Cancel, reason
	}
	if reason == "" {
		reason = fmt.Sprintf("build %d ended %s", b.ID, b.Status)
	}
	return Fail, reason
}

// HealthFailed reports whether deployment build b failed its
// environment's health check: its last step is plan.HealthStep, and it
// failed.
func HealthFailed(b *store.Build) bool {
	for _, j := range b.Jobs {
		if n := len(j.Steps); n > 0 && j.Steps[n-1].Name == plan.HealthStep && j.Steps[n-1].Status == store.StatusFailure {
			return true
		}
	}
	return false
}

// AutoRollback decides where an environment goes back to when deployment
// failed failed its health check: the release of the newest of its
// succeeded deployments (newest first), which was live there when failed
// started. target is 0, with the reason, when there is none to go to: an
// automatic rollback that fails is not rolled back in turn (a person has
// to look), nor is a release redeployed over itself.
func AutoRollback(failed *store.Deployment, succeeded []*store.Deployment) (target int64, why string) {
	switch {
	case failed.Kind == KindAutoRollback:
		return 0, "the automatic rollback failed too: nothing more is tried, a person has to look"
	case len(succeeded) == 0:
		return 0, "not rolled back: no release succeeded in " + failed.Environment + " before"
	case succeeded[0].ReleaseID == failed.ReleaseID:
		return 0, "not rolled back: " + succeeded[0].Version + " was the release live before too"
	}
	return succeeded[0].ReleaseID, ""
}

// Ready says whether a pending deployment, first in line, may start now,
// and why not. It is where approvals and freeze windows hold one.
type Ready func(d *store.Deployment) (ok bool, why string)

// Next decides which of an environment's open deployments (pending or
// running, in any order) starts now: none while one runs; otherwise the
// oldest pending one, if ready says so. Deployments start in the order
// they were asked for: a later one never overtakes an earlier one, but
// for automatic rollbacks, which go first.
// waiting says why each pending deployment that does not start waits.
func Next(open []*store.Deployment, ready Ready) (start *store.Deployment, waiting map[int64]string) {
	waiting = map[int64]string{}
	var running *store.Deployment
	var pending []*store.Deployment
	for _, d := range open {
		switch d.State {
		case store.DeployRunning:
			running = d
		case store.DeployPending:
			pending = append(pending, d)
		}
	}
	slices.SortFunc(pending, InLine)
	for i, d := range pending {
		switch {
		case running != nil && i == 0:
			waiting[d.ID] = fmt.Sprintf("waiting for deployment %d (%s) to finish", running.ID, running.Version)
		case i > 0:
			waiting[d.ID] = fmt.Sprintf("waiting behind deployment %d (%s)", pending[i-1].ID, pending[i-1].Version)
		default:
			ok, why := true, ""
			if ready != nil {
				ok, why = ready(d)
			}
			if ok {
				start = d
			} else {
				waiting[d.ID] = why
			}
		}
	}
	return start, waiting
}

// InLine orders waiting deployments as they will start: automatic
// rollbacks first, then in the order they were asked for.
func InLine(a, b *store.Deployment) int {
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.ID, b.ID))
}

func rank(d *store.Deployment) int {
	if d.Kind == KindAutoRollback {
		return 0
	}
	return 1
}

// ErrRefused: the pipeline's rules do not let that release go to that
// environment. Its message says which rule.
var ErrRefused = errors.New("refused")

// refused is an error wrapping ErrRefused with the reason alone as its
// message.
type refused struct{ msg string }

func (e *refused) Error() string { return e.msg }
func (e *refused) Unwrap() error { return ErrRefused }

func refusef(format string, args ...any) error { return &refused{fmt.Sprintf(format, args...)} }

// Request is a release asked to go to an environment.
type Request struct {
	// Pipeline is the pipeline file of the release's build: a release is
	// deployed with the steps it was built with.
	Pipeline *spec.Pipeline
	// Environment is where it goes.
	Environment string
	Version     string
	Kind        string
	// SucceededIn reports whether the release has a succeeded deployment
	// in an environment.
	SucceededIn func(env string) bool
}

// Admit returns nil when the request may be carried out, or an error
// wrapping ErrRefused that says why not: the release's pipeline has no
// such environment; the environment takes only releases that succeeded
// in its promote-from, and this one has not (a rollback, to a release
// that was live there, is not held to this); or the environment asks for
// what this server does not carry out yet (a rollout), which is refused
// rather than skipped. Approvals and freeze windows do not refuse a
// request: they hold the deployment (Ready), and package delivery
// refuses a person's request while a window is open.
func Admit(r Request) error {
	e := plan.Environment(r.Pipeline, r.Environment)
	if e == nil {
		var names []string
		for _, e := range r.Pipeline.Environments {
			names = append(names, e.Name)
		}
		return refusef("release %s: the default branch's pipeline has no environment %q (it has: %s)", r.Version, r.Environment, listOrNone(names))
	}
	if e.Rollout != nil {
		return refusef("environment %s asks for a rollout, which this server does not carry out yet: nothing is deployed there rather than deployed without it",
			e.Name)
	}
	if e.PromoteFrom != "" && r.Kind != KindRollback && (r.SucceededIn == nil || !r.SucceededIn(e.PromoteFrom)) {
		return refusef("release %s has not succeeded in %s, and %s takes only releases that did (promote-from: %s)",
			r.Version, e.PromoteFrom, e.Name, e.PromoteFrom)
	}
	return nil
}

// CheckPromotion returns nil when environment to of the release's
// pipeline is promoted to from environment from, else an error wrapping
// ErrRefused that says where it takes releases from.
func CheckPromotion(p *spec.Pipeline, from, to string) error {
	e := plan.Environment(p, to)
	switch {
	case e == nil:
		return nil // Admit says so, with the environments there are
	case e.PromoteFrom == "" && e.DeployBranch != "":
		return refusef("%s takes releases from branch %s, not from %s: use gantry deploy", to, e.DeployBranch, from)
	case e.PromoteFrom == "":
		return refusef("%s has no promote-from: use gantry deploy", to)
	case e.PromoteFrom != from:
		return refusef("%s is promoted to from %s, not from %s", to, e.PromoteFrom, from)
	}
	return nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// RollbackTarget picks the release a rollback of an environment returns
// to, from its succeeded deployments, newest first: current is the
// release live there (the newest), target the one live before it,
// passing over releases a rollback moved away from since. So rolling back
// twice goes two releases back, not forth again. ok is false when there
// is nothing to return to.
func RollbackTarget(succeeded []*store.Deployment) (current, target int64, ok bool) {
	if len(succeeded) == 0 {
		return 0, 0, false
	}
	current = succeeded[0].ReleaseID
	skip := map[int64]bool{}
	for _, d := range succeeded {
		if d.Kind == KindRollback && d.RollbackOf != 0 {
			skip[d.RollbackOf] = true
		}
		if d.ReleaseID != current && !skip[d.ReleaseID] {
			return current, d.ReleaseID, true
		}
	}
	return current, 0, false
}

// Version names the release of build b: its tag, or BRANCH-NUMBER.
func Version(b *store.Build) string {
	if b.Tag != "" {
		return b.Tag
	}
	return fmt.Sprintf("%s-%d", b.Branch, b.Number)
}

// Releases reports whether finished build b, whose pipeline is p, makes a
// release, and the environments it then goes to by itself. A build makes
// one when it passed, was started by a push, a tag or a person (never a
// pull request, whose code is a proposal, nor a schedule), and either is
// of a branch some environment's deploy.branch matches (those are the
// environments it goes to), or is of a tag while the pipeline has
// environments (a tag is a release by intent; it goes nowhere by itself).
func Releases(p *spec.Pipeline, b *store.Build) (makes bool, auto []string) {
	if b.Status != store.StatusSuccess || len(p.Environments) == 0 {
		return false, nil
	}
	switch b.Event {
	case plan.EventPush, plan.EventManual, plan.EventTag:
	default:
		return false, nil
	}
	if b.Tag != "" {
		return true, nil
	}
	for _, e := range p.Environments {
		if e.DeployBranch == "" || b.Branch == "" {
			continue
		}
		if ok, _ := doublestar.Match(e.DeployBranch, b.Branch); ok {
			auto = append(auto, e.Name)
		}
	}
	return len(auto) > 0, auto
}
