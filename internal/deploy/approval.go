package deploy

// Who may deploy to an environment, who may approve a deployment there,
// when enough people have, and when a freeze window holds it.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// ErrForbidden: the person may not do that there. Its message says who,
// what was missing, and which rule of the pipeline says so.
var ErrForbidden = errors.New("forbidden")

type forbidden struct{ msg string }

func (e *forbidden) Error() string { return e.msg }
func (e *forbidden) Unwrap() error { return ErrForbidden }

func forbidf(format string, args ...any) error { return &forbidden{fmt.Sprintf(format, args...)} }

// Person is someone who acts on a deployment.
type Person struct {
	Name string
	// Admin may deploy anywhere; an admin is held to approval rules like
	// everyone else, since separation of duties is the point of them.
	Admin bool
	// Groups are the groups the person is a member of.
	Groups []string
}

func (p Person) inAny(groups []string) bool {
	for _, g := range groups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}

func groupsOf(p Person) string {
	if len(p.Groups) == 0 {
		return "no group"
	}
	return "groups " + strings.Join(p.Groups, ", ")
}

// MayDeploy returns nil when p may deploy, promote or roll back to
// environment e, else an error wrapping ErrForbidden: when e names
// groups, only their members and admins may.
func MayDeploy(e *spec.Environment, p Person) error {
	if e == nil || len(e.Groups) == 0 || p.Admin || p.inAny(e.Groups) {
		return nil
	}
	return forbidf("%s may not deploy to %s: only members of %s (and admins) may (groups: in the pipeline file), and %s is in %s",
		p.Name, e.Name, strings.Join(e.Groups, ", "), p.Name, groupsOf(p))
}

// Ballot is what deciding on one deployment needs to know.
type Ballot struct {
	Environment *spec.Environment
	Deployment  *store.Deployment
	// Authors are the authors of the release's commits ("Name <email>").
	Authors []string
	// Decisions are those made on the deployment so far.
	Decisions []*store.Decision
}

// MayDecide returns nil when p may approve or reject the deployment,
// else an error: wrapping ErrRefused when there is nothing to decide
// (the environment asks for no approvals, the deployment is no longer
// waiting, p decided already), wrapping ErrForbidden when p may not. The
// approvers are the members of approvals.groups, or when it names none,
// whoever may deploy there. With author-may-approve false, neither the
// person who requested the deployment nor an author of any commit of the
// release may decide on it.
func MayDecide(b Ballot, p Person) error {
	e, d := b.Environment, b.Deployment
	if e == nil || e.Approvals == nil || e.Approvals.Required == 0 {
		return refusef("%s asks for no approvals: deployment %d needs none", d.Environment, d.ID)
	}
	if d.State != store.DeployPending {
		return refusef("deployment %d is %s: there is nothing left to approve or reject", d.ID, d.State)
	}
	for _, dec := range b.Decisions {
		if dec.User == p.Name && (dec.Verdict == store.VerdictApprove || dec.Verdict == store.VerdictReject) {
			return refusef("%s has decided on deployment %d already (%s)", p.Name, d.ID, dec.Verdict)
		}
	}
	if g := e.Approvals.Groups; len(g) > 0 {
		if !p.inAny(g) {
			return forbidf("%s may not approve deployments to %s: only members of %s may (approvals.groups), and %s is in %s",
				p.Name, e.Name, strings.Join(g, ", "), p.Name, groupsOf(p))
		}
	} else if err := MayDeploy(e, p); err != nil {
		return forbidf("%s may not approve deployments to %s: only those who may deploy there may, and %s is in %s",
			p.Name, e.Name, p.Name, groupsOf(p))
	}
	if e.Approvals.AuthorMayApprove {
		return nil
	}
	if d.RequestedBy != "" && d.RequestedBy == p.Name {
		return forbidf("%s requested deployment %d, and %s does not let the requester approve it (author-may-approve: false)",
			p.Name, d.ID, e.Name)
	}
	for _, a := range b.Authors {
		if IsAuthor(p.Name, a) {
			return forbidf("%s authored a commit of release %s (%s), and %s does not let its authors approve it (author-may-approve: false)",
				p.Name, d.Version, a, e.Name)
		}
	}
	return nil
}

// IsAuthor reports whether user is the author a ("Name <email>") of a
// commit. A Gantry user has a name and no verified email, so it is a
// match when the user name equals, ignoring case, the author's name, the
// whole email, or the email's part before the @: it errs toward
// refusing an approval rather than letting an author approve.
func IsAuthor(user, a string) bool {
	name, email := a, ""
	if i := strings.LastIndex(a, " <"); i >= 0 && strings.HasSuffix(a, ">") {
		name, email = a[:i], a[i+2:len(a)-1]
	}
	local, _, _ := strings.Cut(email, "@")
	for _, s := range []string{name, email, local} {
		if s != "" && strings.EqualFold(strings.TrimSpace(s), user) {
			return true
		}
	}
	return false
}

// Tally is where a deployment stands with its approvals.
type Tally struct {
	// Required is how many distinct people must approve; 0 when the
	// environment asks for no approvals.
	Required int
	Groups   []string
	// ApprovedBy are the approvers so far, in the order they approved.
	ApprovedBy []string
	// Rejected is the rejection, if any.
	Rejected *store.Decision
}

// Count tallies the decisions on a deployment to environment e.
func Count(e *spec.Environment, decisions []*store.Decision) Tally {
	var t Tally
	if e != nil && e.Approvals != nil {
		t.Required, t.Groups = e.Approvals.Required, e.Approvals.Groups
	}
	for _, d := range decisions {
		switch d.Verdict {
		case store.VerdictApprove:
			if !slices.Contains(t.ApprovedBy, d.User) {
				t.ApprovedBy = append(t.ApprovedBy, d.User)
			}
		case store.VerdictReject:
			if t.Rejected == nil {
				t.Rejected = d
			}
		}
	}
	return t
}

// Approved reports whether enough people approved (always, when none
// must).
func (t Tally) Approved() bool { return len(t.ApprovedBy) >= t.Required }

// Waiting says what the deployment waits for: "waiting for approval: 1
// of 2 from releasers (approved by bob)".
func (t Tally) Waiting() string {
	s := fmt.Sprintf("waiting for approval: %d of %d", len(t.ApprovedBy), t.Required)
	if len(t.Groups) > 0 {
		s += " from " + strings.Join(t.Groups, ", ")
	}
	if len(t.ApprovedBy) > 0 {
		s += " (approved by " + strings.Join(t.ApprovedBy, ", ") + ")"
	}
	return s
}

// Freeze is a freeze window open now: one of the environment's in the
// pipeline file, or one an admin set.
type Freeze struct {
	// Since and Until bound the window.
	Since, Until time.Time
	Reason       string
	// SetBy is the admin who set it, and ID its number; both empty for a
	// window of the pipeline file.
	SetBy string
	ID    int64
}

// Frozen returns the freeze window open at now in environment e, of those
// its pipeline file declares and the admins' set (those set on its
// environment), or nil. A window of the file opens each time its cron
// matches and stays open for its duration. Of several open ones, the one
// that closes last.
func Frozen(e *spec.Environment, set []*store.Freeze, now time.Time) *Freeze {
	var open *Freeze
	later := func(f *Freeze) {
		if open == nil || f.Until.After(open.Until) {
			open = f
		}
	}
	for _, f := range set {
		if !f.Since.After(now) && f.Until.After(now) {
			later(&Freeze{Since: f.Since, Until: f.Until, Reason: f.Reason, SetBy: f.CreatedBy, ID: f.ID})
		}
	}
	if e == nil {
		return open
	}
	for _, f := range e.Freeze {
		sched, err := parseCron(f.Cron)
		if err != nil || f.Duration <= 0 {
			continue // the parser refused it: no such pipeline gets here
		}
		// Next returns the first match after its argument: the window
		// opened at t is open now when t is within the duration before now.
		t := sched.Next(now.Add(-f.Duration))
		if t.IsZero() || t.After(now) {
			continue
		}
		until := t.Add(f.Duration)
		// A window that opens again before it closes stays open.
		for n, i := sched.Next(t), 0; !n.IsZero() && !n.After(until) && i < 1000; n, i = sched.Next(n), i+1 {
			until = n.Add(f.Duration)
		}
		later(&Freeze{Since: t, Until: until, Reason: f.Reason})
	}
	return open
}

func parseCron(s string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed cron expression %q", s)
		}
	}()
	return cron.ParseStandard(s)
}

// Why says what a freeze holds back, for a message.
func (f *Freeze) Why(env string) string {
	s := fmt.Sprintf("%s is frozen until %s", env, f.Until.UTC().Format(time.RFC3339))
	switch {
	case f.SetBy != "" && f.Reason != "":
		s += fmt.Sprintf(" (%s; freeze %d, set by %s)", f.Reason, f.ID, f.SetBy)
	case f.SetBy != "":
		s += fmt.Sprintf(" (freeze %d, set by %s)", f.ID, f.SetBy)
	case f.Reason != "":
		s += " (" + f.Reason + ")"
	}
	return s
}

// Overridden reports whether an admin let the deployment through freeze
// windows.
func Overridden(decisions []*store.Decision) bool {
	for _, d := range decisions {
		if d.Verdict == store.VerdictOverrideFreeze {
			return true
		}
	}
	return false
}
