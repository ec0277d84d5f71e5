package deploy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

const guardedPipeline = `
environments:
  open: {steps: [x]}
  production:
    groups: [deployers]
    approvals: {required: 2, groups: [releasers]}
    steps: [x]
  lenient:
    groups: [deployers]
    approvals: {required: 1, author-may-approve: true}
    steps: [x]
  weekend:
    freeze:
      - {cron: "0 16 * * 5", duration: 64h, reason: no deploys over the weekend}
    steps: [x]
`

func TestMayDeploy(t *testing.T) {
	t.Parallel()
	p := parse(t, guardedPipeline)
	for _, c := range []struct {
		env       string
		who       deploy.Person
		forbidden string
	}{
		{"open", deploy.Person{Name: "ann"}, ""},
		{"production", deploy.Person{Name: "ann", Groups: []string{"deployers"}}, ""},
		{"production", deploy.Person{Name: "root", Admin: true}, ""},
		{"production", deploy.Person{Name: "eve", Groups: []string{"qa"}},
			"eve may not deploy to production: only members of deployers (and admins) may (groups: in the pipeline file), and eve is in groups qa"},
		{"production", deploy.Person{Name: "eve"}, "eve is in no group"},
	} {
		err := deploy.MayDeploy(plan.Environment(p, c.env), c.who)
		switch {
		case c.forbidden == "" && err != nil:
			t.Errorf("MayDeploy(%s, %+v) = %v, want nil", c.env, c.who, err)
		case c.forbidden != "" && (!errors.Is(err, deploy.ErrForbidden) || !strings.Contains(err.Error(), c.forbidden)):
			t.Errorf("MayDeploy(%s, %+v) = %v, want ErrForbidden saying %q", c.env, c.who, err, c.forbidden)
		}
	}
}

func TestMayDecide(t *testing.T) {
	t.Parallel()
	p := parse(t, guardedPipeline)
	pending := &store.Deployment{ID: 7, Environment: "production", Version: "main-3", RequestedBy: "dora", State: store.DeployPending}
	authors := []string{"Ann Author <ann@example.com>", "Carl <carl.c@example.com>"}
	rel := []string{"releasers"}
	bob := deploy.Person{Name: "bob", Groups: rel}
	for _, c := range []struct {
		name  string
		env   string
		d     *store.Deployment
		decs  []*store.Decision
		who   deploy.Person
		want  error
		words string
	}{
		{"a releaser", "production", pending, nil, bob, nil, ""},
		{"an author by name", "production", pending, nil, deploy.Person{Name: "ann author", Groups: rel}, deploy.ErrForbidden,
			"ann author authored a commit of release main-3 (Ann Author <ann@example.com>), and production does not let its authors approve it (author-may-approve: false)"},
		{"an author by email", "production", pending, nil, deploy.Person{Name: "carl.c", Groups: rel}, deploy.ErrForbidden, "authored a commit"},
		{"the requester", "production", pending, nil, deploy.Person{Name: "dora", Groups: rel}, deploy.ErrForbidden,
			"dora requested deployment 7, and production does not let the requester approve it"},
		{"an admin who authored", "production", pending, nil, deploy.Person{Name: "ann", Admin: true, Groups: rel}, deploy.ErrForbidden, "authored a commit"},
		{"a non-member", "production", pending, nil, deploy.Person{Name: "eve", Groups: []string{"deployers"}}, deploy.ErrForbidden,
			"eve may not approve deployments to production: only members of releasers may (approvals.groups), and eve is in groups deployers"},
		{"twice", "production", pending, []*store.Decision{{User: "bob", Verdict: store.VerdictApprove}}, bob, deploy.ErrRefused,
			"bob has decided on deployment 7 already (approve)"},
		{"no approvals there", "open", &store.Deployment{ID: 7, Environment: "open", State: store.DeployPending}, nil, bob, deploy.ErrRefused,
			"open asks for no approvals"},
		{"not pending", "production", &store.Deployment{ID: 7, Environment: "production", State: store.DeployRunning}, nil, bob, deploy.ErrRefused,
			"deployment 7 is running: there is nothing left to approve or reject"},
		{"authors may, where allowed", "lenient", &store.Deployment{ID: 8, Environment: "lenient", RequestedBy: "ann", State: store.DeployPending},
			nil, deploy.Person{Name: "ann", Groups: []string{"deployers"}}, nil, ""},
		{"approvers default to deployers", "lenient", &store.Deployment{ID: 8, Environment: "lenient", State: store.DeployPending},
			nil, deploy.Person{Name: "eve"}, deploy.ErrForbidden, "only those who may deploy there may"},
	} {
		err := deploy.MayDecide(deploy.Ballot{Environment: plan.Environment(p, c.env), Deployment: c.d, Authors: authors, Decisions: c.decs}, c.who)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: MayDecide() = %v, want nil", c.name, err)
		case c.want != nil && (!errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words)):
			t.Errorf("%s: MayDecide() = %v, want %v saying %q", c.name, err, c.want, c.words)
		}
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	p := parse(t, guardedPipeline)
	e := plan.Environment(p, "production")
	tally := deploy.Count(e, []*store.Decision{{User: "bob", Verdict: store.VerdictApprove}, {User: "root", Verdict: store.VerdictOverrideFreeze}})
	if tally.Approved() || tally.Waiting() != "waiting for approval: 1 of 2 from releasers (approved by bob)" {
		t.Errorf("Count(bob) = approved %v, %q; want not approved, 1 of 2 by bob", tally.Approved(), tally.Waiting())
	}
	tally = deploy.Count(e, []*store.Decision{{User: "bob", Verdict: store.VerdictApprove}, {User: "cat", Verdict: store.VerdictApprove}})
	if !tally.Approved() {
		t.Errorf("Count(bob, cat).Approved() = false, want true")
	}
	if tally := deploy.Count(plan.Environment(p, "open"), nil); !tally.Approved() || tally.Required != 0 {
		t.Errorf("Count(no approvals asked) = %+v, want approved", tally)
	}
}

func TestFrozen(t *testing.T) {
	t.Parallel()
	p := parse(t, guardedPipeline)
	e := plan.Environment(p, "weekend")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// 2026-12-04 is a Friday.
	for _, c := range []struct {
		now    string
		frozen bool
		until  string
	}{
		{"2026-12-04 15:59", false, ""},
		{"2026-12-04 16:00", true, "2026-12-07 08:00"},
		{"2026-12-06 12:00", true, "2026-12-07 08:00"},
		{"2026-12-07 08:00", false, ""},
		{"2026-12-09 12:00", false, ""},
	} {
		f := deploy.Frozen(e, nil, at(c.now))
		switch {
		case !c.frozen && f != nil:
			t.Errorf("Frozen(%s) = until %v, want not frozen", c.now, f.Until)
		case c.frozen && (f == nil || !f.Until.Equal(at(c.until))):
			t.Errorf("Frozen(%s) = %+v, want frozen until %s", c.now, f, c.until)
		}
	}
	if f := deploy.Frozen(e, nil, at("2026-12-05 10:00")); f == nil || !strings.Contains(f.Why("weekend"), "(no deploys over the weekend)") {
		t.Errorf("Frozen().Why() = %v, want the reason", f)
	}
	if f := deploy.Frozen(plan.Environment(p, "open"), nil, time.Now()); f != nil {
		t.Errorf("Frozen(no windows) = %+v, want nil", f)
	}
}

// TestFrozenByAdmins: an admin's freeze holds while it is open, alone or
// with the file's windows; of several open, the one that ends last wins,
// and Why names who set it.
func TestFrozenByAdmins(t *testing.T) {
	t.Parallel()
	p := parse(t, guardedPipeline)
	fri := time.Date(2026, 12, 4, 10, 0, 0, 0, time.Local) // before the weekend window
	set := []*store.Freeze{
		{ID: 3, Since: fri.Add(-time.Hour), Until: fri.Add(2 * time.Hour), Reason: "failover", CreatedBy: "root"},
		{ID: 4, Since: fri.Add(24 * time.Hour), Until: fri.Add(25 * time.Hour), Reason: "later", CreatedBy: "root"},
	}
	f := deploy.Frozen(plan.Environment(p, "open"), set, fri)
	if f == nil || f.ID != 3 || !f.Until.Equal(fri.Add(2*time.Hour)) {
		t.Fatalf("Frozen(admin freeze open) = %+v, want freeze 3", f)
	}
	if got, want := f.Why("open"), "(failover; freeze 3, set by root)"; !strings.Contains(got, want) {
		t.Errorf("Why() = %q, want it to say %q", got, want)
	}
	if f := deploy.Frozen(nil, set, fri.Add(3*time.Hour)); f != nil {
		t.Errorf("Frozen(between freezes, no environment in the file) = %+v, want nil", f)
	}
	// On Saturday the file's weekend window (until Monday 08:00) outlasts freeze 4.
	sat := fri.Add(24*time.Hour + 30*time.Minute)
	if f := deploy.Frozen(plan.Environment(p, "weekend"), set, sat); f == nil || f.SetBy != "" || f.Reason != "no deploys over the weekend" {
		t.Errorf("Frozen(both open) = %+v, want the file's window, which ends last", f)
	}
}
