package deploy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// TestTransitions walks every state with every event: exactly the arrows
// of the machine's diagram exist, and final states have none.
func TestTransitions(t *testing.T) {
	t.Parallel()
	want := map[string]map[deploy.Event]string{
		store.DeployPending: {deploy.Start: store.DeployRunning, deploy.Fail: store.DeployFailed, deploy.Cancel: store.DeployCancelled},
		store.DeployRunning: {deploy.Succeed: store.DeploySucceeded, deploy.Fail: store.DeployFailed, deploy.Cancel: store.DeployCancelled},
	}
	states := []string{store.DeployPending, store.DeployRunning, store.DeploySucceeded, store.DeployFailed, store.DeployCancelled, "bogus"}
	events := []deploy.Event{deploy.Start, deploy.Succeed, deploy.Fail, deploy.Cancel, "bogus"}
	for _, from := range states {
		for _, ev := range events {
			got, err := deploy.Transition(from, ev)
			to, ok := want[from][ev]
			switch {
			case ok && (err != nil || got != to):
				t.Errorf("Transition(%s, %s) = %q, %v; want %s", from, ev, got, err, to)
			case !ok && !errors.Is(err, deploy.ErrTransition):
				t.Errorf("Transition(%s, %s) = %q, %v; want ErrTransition", from, ev, got, err)
			}
		}
	}
	// A running deployment has no way back to pending, and none to
	// running again: nothing restarts or replaces it.
	for _, ev := range events {
		if got, _ := deploy.Transition(store.DeployRunning, ev); got == store.DeployPending || got == store.DeployRunning {
			t.Errorf("Transition(running, %s) = %s", ev, got)
		}
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		b      *store.Build
		ev     deploy.Event
		reason string
	}{
		{&store.Build{ID: 1, Status: store.StatusSuccess, Jobs: []*store.Job{{Name: "deploy:staging", Status: store.StatusSuccess}}}, deploy.Succeed, ""},
		{&store.Build{ID: 2, Status: store.StatusFailure, Jobs: []*store.Job{{Name: "deploy:staging", Status: store.StatusFailure,
			Reason: "artifact dist/app: SHA-256 mismatch"}}}, deploy.Fail, "deploy:staging: artifact dist/app: SHA-256 mismatch"},
		{&store.Build{ID: 3, Status: store.StatusError, Reason: "agent lost"}, deploy.Fail, "agent lost"},
		{&store.Build{ID: 4, Status: store.StatusError}, deploy.Fail, "build 4 ended error"},
		{&store.Build{ID: 5, Status: store.StatusCancelled, Jobs: []*store.Job{{Name: "deploy:prod", Status: store.StatusCancelled,
			Reason: "cancelled by ann"}}}, deploy.Cancel, "deploy:prod: cancelled by ann"},
		{&store.Build{ID: 6, Status: store.StatusCancelled}, deploy.Cancel, "build 6 was cancelled"},
	} {
		ev, reason := deploy.Outcome(c.b)
		if ev != c.ev || reason != c.reason {
			t.Errorf("Outcome(build %d %s) = %s, %q; want %s, %q", c.b.ID, c.b.Status, ev, reason, c.ev, c.reason)
		}
	}
}

func dep(id int64, state, version string) *store.Deployment {
	return &store.Deployment{ID: id, State: state, Version: version, ReleaseID: id}
}

func TestNext(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		open    []*store.Deployment
		ready   deploy.Ready
		start   int64
		waiting map[int64]string
	}{
		{name: "nothing open", waiting: map[int64]string{}},
		{
			name:  "the oldest pending starts, in any order given",
			open:  []*store.Deployment{dep(9, store.DeployPending, "v9"), dep(4, store.DeployPending, "v4"), dep(7, store.DeployPending, "v7")},
			start: 4,
			waiting: map[int64]string{
				7: "waiting behind deployment 4 (v4)",
				9: "waiting behind deployment 7 (v7)",
			},
		},
		{
			name:    "none starts while one runs; a newer one waits",
			open:    []*store.Deployment{dep(5, store.DeployPending, "v5"), dep(3, store.DeployRunning, "v3"), dep(6, store.DeployPending, "v6")},
			waiting: map[int64]string{5: "waiting for deployment 3 (v3) to finish", 6: "waiting behind deployment 5 (v5)"},
		},
		{
			name:    "running alone",
			open:    []*store.Deployment{dep(3, store.DeployRunning, "v3")},
			waiting: map[int64]string{},
		},
		{
			name: "a deployment held by ready holds those behind it",
			open: []*store.Deployment{dep(2, store.DeployPending, "v2"), dep(8, store.DeployPending, "v8")},
			ready: func(d *store.Deployment) (bool, string) {
				return false, "waiting for 1 approval"
			},
			waiting: map[int64]string{2: "waiting for 1 approval", 8: "waiting behind deployment 2 (v2)"},
		},
	} {
		start, waiting := deploy.Next(c.open, c.ready)
		var got int64
		if start != nil {
			got = start.ID
		}
		if got != c.start {
			t.Errorf("%s: Next() starts %d, want %d", c.name, got, c.start)
		}
		if diff := cmp.Diff(c.waiting, waiting); diff != "" {
			t.Errorf("%s: Next() waiting (-want +got):\n%s", c.name, diff)
		}
	}
}

const pipeline = `
jobs:
  build: {steps: [make], artifacts: [dist/*]}
environments:
  staging:
    deploy: {branch: main}
    steps: [./deploy staging]
  qa:
    deploy: {branch: "release/*"}
    steps: [./deploy qa]
  production:
    promote-from: staging
    steps: [./deploy production]
  guarded:
    promote-from: staging
    approvals: {required: 1, groups: [releasers]}
    steps: [./deploy guarded]
  frozen:
    freeze: [{cron: "0 16 * * 5", duration: 64h}]
    steps: [./deploy frozen]
  fleet:
    rollout: {hosts: web}
`

func parse(t *testing.T, src string) *spec.Pipeline {
	t.Helper()
	p, err := spec.Parse(".gantry.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	p := parse(t, pipeline)
	in := func(envs ...string) func(string) bool {
		return func(e string) bool {
			for _, x := range envs {
				if x == e {
					return true
				}
			}
			return false
		}
	}
	for _, c := range []struct {
		env, kind   string
		succeededIn func(string) bool
		refused     string // "" when admitted
	}{
		{"staging", deploy.KindAuto, nil, ""},
		{"staging", deploy.KindDeploy, in(), ""},
		{"production", deploy.KindPromote, in("staging"), ""},
		{"production", deploy.KindDeploy, in("staging", "qa"), ""},
		{"production", deploy.KindPromote, in("qa"), "release v7 has not succeeded in staging, and production takes only releases that did (promote-from: staging)"},
		{"production", deploy.KindDeploy, nil, "release v7 has not succeeded in staging"},
		{"production", deploy.KindRollback, in(), ""},
		{"nowhere", deploy.KindDeploy, in(), `release v7: the default branch's pipeline has no environment "nowhere" (it has: staging, qa, production, guarded, frozen, fleet)`},
		{"guarded", deploy.KindPromote, in("staging"), ""}, // approvals hold it later, in line
		{"guarded", deploy.KindPromote, in(), "release v7 has not succeeded in staging"},
		{"frozen", deploy.KindDeploy, in(), ""}, // the window is checked against the clock, by delivery
		{"fleet", deploy.KindRollback, in(), "asks for a rollout"},
	} {
		err := deploy.Admit(deploy.Request{Pipeline: p, Environment: c.env, Version: "v7", Kind: c.kind, SucceededIn: c.succeededIn})
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("Admit(%s to %s) = %v, want nil", c.kind, c.env, err)
		case c.refused != "" && (!errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("Admit(%s to %s) = %v, want ErrRefused saying %q", c.kind, c.env, err, c.refused)
		}
	}
}

func TestCheckPromotion(t *testing.T) {
	t.Parallel()
	p := parse(t, pipeline)
	for _, c := range []struct {
		from, to string
		refused  string
	}{
		{"staging", "production", ""},
		{"qa", "production", "production is promoted to from staging, not from qa"},
		{"staging", "qa", "qa takes releases from branch release/*, not from staging: use gantry deploy"},
		{"staging", "frozen", "frozen has no promote-from: use gantry deploy"},
		{"staging", "nowhere", ""}, // Admit names what there is
	} {
		err := deploy.CheckPromotion(p, c.from, c.to)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("CheckPromotion(%s -> %s) = %v, want nil", c.from, c.to, err)
		case c.refused != "" && (!errors.Is(err, deploy.ErrRefused) || err.Error() != c.refused):
			t.Errorf("CheckPromotion(%s -> %s) = %v, want ErrRefused %q", c.from, c.to, err, c.refused)
		}
	}
}

func TestRollbackTarget(t *testing.T) {
	t.Parallel()
	d := func(release int64, kind string, of int64) *store.Deployment {
		return &store.Deployment{ReleaseID: release, Kind: kind, RollbackOf: of, State: store.DeploySucceeded}
	}
	for _, c := range []struct {
		name            string
		history         []*store.Deployment // newest first
		current, target int64
		ok              bool
	}{
		{name: "nothing deployed"},
		{name: "only one release ever", history: []*store.Deployment{d(1, "auto", 0)}, current: 1},
		{name: "the same release twice", history: []*store.Deployment{d(1, "deploy", 0), d(1, "auto", 0)}, current: 1},
		{name: "the one before", history: []*store.Deployment{d(3, "auto", 0), d(2, "auto", 0), d(1, "auto", 0)}, current: 3, target: 2, ok: true},
		{name: "a redeploy of the current release is passed over",
			history: []*store.Deployment{d(3, "deploy", 0), d(3, "auto", 0), d(2, "auto", 0)}, current: 3, target: 2, ok: true},
		{name: "twice goes two back, not forth again",
			history: []*store.Deployment{d(2, "rollback", 3), d(3, "auto", 0), d(2, "auto", 0), d(1, "auto", 0)}, current: 2, target: 1, ok: true},
		{name: "a release deployed again after a rollback counts again",
			history: []*store.Deployment{d(3, "deploy", 0), d(2, "rollback", 3), d(3, "auto", 0), d(2, "auto", 0)}, current: 3, target: 2, ok: true},
		{name: "rolled back as far as it goes",
			history: []*store.Deployment{d(1, "rollback", 2), d(2, "rollback", 3), d(3, "auto", 0), d(2, "auto", 0), d(1, "auto", 0)}, current: 1},
	} {
		current, target, ok := deploy.RollbackTarget(c.history)
		if current != c.current || target != c.target || ok != c.ok {
			t.Errorf("%s: RollbackTarget() = %d, %d, %v; want %d, %d, %v", c.name, current, target, ok, c.current, c.target, c.ok)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		b    *store.Build
		want string
	}{
		{&store.Build{Branch: "main", Number: 12}, "main-12"},
		{&store.Build{Branch: "release/2.x", Number: 3}, "release/2.x-3"},
		{&store.Build{Tag: "v1.4.0", Number: 40}, "v1.4.0"},
	} {
		if got := deploy.Version(c.b); got != c.want {
			t.Errorf("Version(%+v) = %q, want %q", c.b, got, c.want)
		}
	}
}

func TestReleases(t *testing.T) {
	t.Parallel()
	p := parse(t, pipeline)
	none := parse(t, "jobs: {build: {steps: [make]}}\n")
	green := func(event, branch, tag string) *store.Build {
		return &store.Build{Status: store.StatusSuccess, Event: event, Branch: branch, Tag: tag}
	}
	for _, c := range []struct {
		name  string
		p     *spec.Pipeline
		b     *store.Build
		makes bool
		auto  []string
	}{
		{"a push to main", p, green("push", "main", ""), true, []string{"staging"}},
		{"a manual build of main", p, green("manual", "main", ""), true, []string{"staging"}},
		{"a glob", p, green("push", "release/2", ""), true, []string{"qa"}},
		{"a branch that feeds nothing", p, green("push", "feature", ""), false, nil},
		{"a tag", p, green("tag", "", "v1.0.0"), true, nil},
		{"a pull request from main", p, green("pull_request", "main", ""), false, nil},
		{"a schedule", p, green("schedule", "main", ""), false, nil},
		{"a deployment", p, green("deploy", "main", ""), false, nil},
		{"a red build", p, &store.Build{Status: store.StatusFailure, Event: "push", Branch: "main"}, false, nil},
		{"no environments", none, green("push", "main", ""), false, nil},
		{"a tag without environments", none, green("tag", "", "v1"), false, nil},
	} {
		makes, auto := deploy.Releases(c.p, c.b)
		if makes != c.makes || !cmp.Equal(auto, c.auto) {
			t.Errorf("%s: Releases() = %v, %v; want %v, %v", c.name, makes, auto, c.makes, c.auto)
		}
	}
}
