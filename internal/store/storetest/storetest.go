// Package storetest is the conformance suite every store.Store passes: the
// same tests run on SQLite and on PostgreSQL. It uses nothing but
// the store.Store interface, and asserts the contract store.go documents
// per method, including the invariants that must hold under concurrency
// (build numbers without gaps or duplicates, one build per delivery, each
// queued job leased exactly once, no writes under a stale lease).
//
// A driver's own test calls Run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Where store.go leaves a case open, the suite pins the choice the drivers
// share, and says so at the test (look for "Not in store.go").
//
// Times the suite writes have microsecond precision, which is what
// PostgreSQL keeps; times a store sets itself (CreatedAt) must read back
// exactly as the store set them.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Run runs the suite. open must return a new, empty store for each call
// and arrange to close it when t ends (t.Cleanup). Every subtest opens its
// own store and runs in parallel with the others.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Repos", testRepos},
		{"UpdateRepo", testUpdateRepo},
		{"DeleteRepoCascades", testDeleteRepoCascades},
		{"CreateBuildNumbers", testCreateBuildNumbers},
		{"CreateBuildNumbersConcurrent", testCreateBuildNumbersConcurrent},
		{"CreateBuildMissingRepo", testCreateBuildMissingRepo},
		{"DeliveryDedupe", testDeliveryDedupe},
		{"DeliveryDedupeConcurrent", testDeliveryDedupeConcurrent},
		{"BuildRoundTrip", testBuildRoundTrip},
		{"Builds", testBuilds},
		{"BuildsDefaultLimit", testBuildsDefaultLimit},
		{"BuildsBlocked", testBuildsBlocked},
		{"BuildsUnfinished", testBuildsUnfinished},
		{"BuildIDs", testBuildIDs},
		{"Update", testUpdate},
		{"UpdateTruncatesSteps", testUpdateTruncatesSteps},
		{"UpdateError", testUpdateError},
		{"UpdateMissing", testUpdateMissing},
		{"UpdateMustNotChangeJobs", testUpdateMustNotChangeJobs},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Lease", testLease},
		{"LeaseLabels", testLeaseLabels},
		{"LeaseOldestFirst", testLeaseOldestFirst},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"LeaseVersusCancel", testLeaseVersusCancel},
		{"Renew", testRenew},
		{"RenewStale", testRenewStale},
		{"ExpiredLeases", testExpiredLeases},
		{"AppendLogs", testAppendLogs},
		{"AppendLogsStale", testAppendLogsStale},
		{"LogsMiB", testLogsMiB},
		{"Tokens", testTokens},
		{"AgentTokens", testAgentTokens},
		{"Agents", testAgents},
		{"RunningJobs", testRunningJobs},
		{"Locks", testLocks},
		{"LeaseLocks", testLeaseLocks},
		{"LeaseLocksFIFO", testLeaseLocksFIFO},
		{"LeaseMixedQueue", testLeaseMixedQueue},
		{"LeaseLocksConcurrent", testLeaseLocksConcurrent},
		{"CountBuilds", testCountBuilds},
		{"Users", testUsers},
		{"UserTokens", testUserTokens},
		{"Groups", testGroups},
		{"Grants", testGrants},
		{"Sessions", testSessions},
		{"SessionsExpire", testSessionsExpire},
		{"LogsBefore", testLogsBefore},
	}
	tests = append(tests, auditTests...)
	tests = append(tests, secretTests...)
	tests = append(tests, outboxTests...)
	tests = append(tests, releaseTests...)
	tests = append(tests, decisionTests...)
	tests = append(tests, freezeTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// base is a time with microsecond precision in a zone other than UTC: a
// store may return times in any location, but they must be Equal.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.FixedZone("CET", 3600))

func at(d time.Duration) time.Time { return base.Add(d) }

// opts compare stored objects: times by Equal (cmp uses the Equal method),
// and nil and empty slices alike.
var opts = []cmp.Option{cmpopts.EquateEmpty()}

func newRepo(t *testing.T, s store.Store, name string) *store.Repo {
	t.Helper()
	r := &store.Repo{Name: name, CloneURL: "https://example.com/" + name + ".git", Forge: "github", WebhookSecret: "s3cret"}
	if err := s.CreateRepo(t.Context(), r); err != nil {
		t.Fatalf("CreateRepo(%q) = %v", name, err)
	}
	return r
}

// newBuild creates a queued build of r with jobs, after applying mods.
func newBuild(t *testing.T, s store.Store, r *store.Repo, jobs []*store.Job, mods ...func(*store.Build)) *store.Build {
	t.Helper()
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
		Commit: "0123456789abcdef0123456789abcdef01234567", Pipeline: []byte("jobs: {}\n"), Jobs: jobs}
	for _, m := range mods {
		m(b)
	}
	if err := s.CreateBuild(t.Context(), b); err != nil {
		t.Fatalf("CreateBuild(%s) = %v", r.Name, err)
	}
	return b
}

func queued(name string, pos int, runsOn ...string) *store.Job {
	return &store.Job{Name: name, Position: pos, Status: store.StatusQueued, ExitCode: -1, RunsOn: runsOn,
		QueuedAt: at(time.Duration(pos) * time.Millisecond)}
}

func getBuild(t *testing.T, s store.Store, id int64) *store.Build {
	t.Helper()
	b, err := s.Build(t.Context(), id)
	if err != nil {
		t.Fatalf("Build(%d) = %v", id, err)
	}
	return b
}

func jobByID(b *store.Build, id int64) *store.Job {
	for _, j := range b.Jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

// finish ends a job the way the server does: through Update.
func finish(t *testing.T, s store.Store, buildID, jobID int64, status string) {
	t.Helper()
	err := s.Update(t.Context(), buildID, func(b *store.Build) error {
		j := jobByID(b, jobID)
		j.Status, j.FinishedAt, j.LeaseExpires = status, time.Now(), time.Time{}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(%d) to finish job %d = %v", buildID, jobID, err)
	}
}

// near reports whether got is within a second of want: for times a store
// computes from its own clock.
func near(got, want time.Time) bool {
	d := got.Sub(want)
	return d > -time.Second && d < time.Second
}

func testUpdateRepo(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	other := newRepo(t, s, "acme/b")
	b := newBuild(t, s, r, []*store.Job{queued("a", 0)})
	changed := *r
	changed.CloneURL, changed.Forge, changed.WebhookSecret, changed.DefaultBranch, changed.APIURL =
		"https://git.example.com/acme/a.git", "gitlab", "new-secret", "trunk", "https://git.example.com/api/v4"
	if err := s.UpdateRepo(ctx, &changed); err != nil {
		t.Fatalf("UpdateRepo = %v", err)
	}
	got, err := s.Repo(ctx, "acme/a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&changed, got, opts...); diff != "" {
		t.Errorf("Repo after UpdateRepo (-want +got):\n%s", diff)
	}
	if got, _ := s.Repo(ctx, "acme/b"); got == nil || got.CloneURL != other.CloneURL || got.WebhookSecret != other.WebhookSecret {
		t.Errorf("UpdateRepo of acme/a changed acme/b: %+v", got)
	}
	if got := getBuild(t, s, b.ID); got.Repo != "acme/a" {
		t.Errorf("build of the updated repo = %+v, want it kept", got)
	}
	missing := changed
	missing.Name = "acme/none"
	if err := s.UpdateRepo(ctx, &missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRepo(acme/none) = %v, want ErrNotFound", err)
	}
}

func testRepos(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	b := newRepo(t, s, "acme/b")
	if b.ID == 0 || !near(b.CreatedAt, before) {
		t.Errorf("CreateRepo set ID %d, CreatedAt %v; want an ID and about %v", b.ID, b.CreatedAt, before)
	}
	// Not spelled out in store.go beyond its comment: DefaultBranch is
	// "main" unless set, and CreateRepo stores and sets it so.
	if b.DefaultBranch != "main" {
		t.Errorf("CreateRepo without DefaultBranch set it to %q, want main", b.DefaultBranch)
	}
	a := &store.Repo{Name: "acme/a", CloneURL: "git@example.com:acme/a.git", Forge: "gitea", WebhookSecret: "x", DefaultBranch: "trunk"}
	if err := s.CreateRepo(ctx, a); err != nil {
		t.Fatalf("CreateRepo(acme/a) = %v", err)
	}
	if a.ID == b.ID {
		t.Errorf("two repos have ID %d", a.ID)
	}

	got, err := s.Repo(ctx, "acme/a")
	if err != nil {
		t.Fatalf("Repo(acme/a) = %v", err)
	}
	if diff := cmp.Diff(a, got, opts...); diff != "" {
		t.Errorf("Repo(acme/a) differs from what was created (-want +got):\n%s", diff)
	}
	all, err := s.Repos(ctx)
	if err != nil {
		t.Fatalf("Repos() = %v", err)
	}
	if diff := cmp.Diff([]*store.Repo{a, b}, all, opts...); diff != "" {
		t.Errorf("Repos() not every repo by name (-want +got):\n%s", diff)
	}

	dup := &store.Repo{Name: "acme/a", CloneURL: "other"}
	if err := s.CreateRepo(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateRepo(acme/a again) = %v, want ErrConflict", err)
	}
	if got, _ := s.Repo(ctx, "acme/a"); got == nil || got.CloneURL != a.CloneURL {
		t.Errorf("Repo(acme/a) after a refused duplicate = %+v, want the first", got)
	}
	if _, err := s.Repo(ctx, "acme/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Repo(acme/none) = %v, want ErrNotFound", err)
	}
	// Not in store.go: deleting a repo that does not exist is ErrNotFound.
	if err := s.DeleteRepo(ctx, "acme/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteRepo(acme/none) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRepo(ctx, "acme/a"); err != nil {
		t.Fatalf("DeleteRepo(acme/a) = %v", err)
	}
	if _, err := s.Repo(ctx, "acme/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Repo(acme/a) after DeleteRepo = %v, want ErrNotFound", err)
	}
	all, err = s.Repos(ctx)
	if err != nil {
		t.Fatalf("Repos() = %v", err)
	}
	if diff := cmp.Diff([]*store.Repo{b}, all, opts...); diff != "" {
		t.Errorf("Repos() after DeleteRepo (-want +got):\n%s", diff)
	}
}

func testDeleteRepoCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	gone, kept := newRepo(t, s, "acme/gone"), newRepo(t, s, "acme/kept")
	var doomed []*store.Build
	for i := range 3 {
		doomed = append(doomed, newBuild(t, s, gone, []*store.Job{queued("test", 0), queued("build", 1)},
			func(b *store.Build) { b.DeliveryID = fmt.Sprint("gone-", i) }))
	}
	survivor := newBuild(t, s, kept, []*store.Job{queued("test", 0)}, func(b *store.Build) {
		b.DeliveryID = "d1"
		b.Jobs[0].QueuedAt = at(time.Hour) // after the doomed ones
	})

	// A job of the doomed repo is running with logs when its repo goes.
	b, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if b.RepoID != gone.ID {
		t.Fatalf("Lease() leased build %d of repo %d, want one of acme/gone", b.ID, b.RepoID)
	}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{{Data: []byte("hello\n")}}); err != nil {
		t.Fatalf("AppendLogs() = %v", err)
	}

	if err := s.DeleteRepo(ctx, gone.Name); err != nil {
		t.Fatalf("DeleteRepo(%s) = %v", gone.Name, err)
	}
	for _, b := range doomed {
		if _, err := s.Build(ctx, b.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Build(%d) of a deleted repo = %v, want ErrNotFound", b.ID, err)
		}
	}
	if logs, err := s.Logs(ctx, j.ID, 0, 0); err != nil || len(logs) != 0 {
		t.Errorf("Logs(%d) of a deleted repo = %d chunks, %v; want none", j.ID, len(logs), err)
	}
	// The agent still holding the lease learns it is gone.
	if err := s.Renew(ctx, j.ID, j.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew() of a job of a deleted repo = %v, want ErrStaleLease", err)
	}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{{Data: []byte("x\n")}}); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("AppendLogs() to a job of a deleted repo = %v, want ErrStaleLease", err)
	}
	builds, err := s.Builds(ctx, store.BuildFilter{})
	if err != nil {
		t.Fatalf("Builds() = %v", err)
	}
	if len(builds) != 1 || builds[0].ID != survivor.ID {
		t.Errorf("Builds() after DeleteRepo = %d builds, want only %d of acme/kept", len(builds), survivor.ID)
	}
	counts, err := s.CountBuilds(ctx)
	if err != nil {
		t.Fatalf("CountBuilds() = %v", err)
	}
	if counts[store.StatusQueued] != 1 {
		t.Errorf("CountBuilds()[queued] after DeleteRepo = %d, want 1", counts[store.StatusQueued])
	}
	if _, _, err := s.Lease(ctx, "agent", nil, time.Hour); err != nil {
		t.Errorf("Lease() after DeleteRepo = %v, want the job of acme/kept", err)
	}
	if _, _, err := s.Lease(ctx, "agent", nil, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lease() of a deleted repo's jobs = %v, want ErrNotFound", err)
	}

	// A new repo of the same name is a new repo: its builds count from 1
	// and a delivery ID of the old one does not clash.
	again := newRepo(t, s, gone.Name)
	b2 := newBuild(t, s, again, nil, func(b *store.Build) { b.DeliveryID = "gone-0" })
	if b2.Number != 1 {
		t.Errorf("first build of a re-created repo has number %d, want 1", b2.Number)
	}
}

func testCreateBuildNumbers(t *testing.T, s store.Store) {
	a, b := newRepo(t, s, "acme/a"), newRepo(t, s, "acme/b")
	var got []string
	buildIDs, jobIDs := map[int64]bool{}, map[int64]bool{}
	for _, r := range []*store.Repo{a, b, a, a, b} {
		before := time.Now()
		bd := newBuild(t, s, r, []*store.Job{queued("test", 0), queued("lint", 1)})
		got = append(got, fmt.Sprintf("%s#%d", r.Name, bd.Number))
		if bd.ID == 0 || buildIDs[bd.ID] {
			t.Errorf("CreateBuild set ID %d, want a new one", bd.ID)
		}
		buildIDs[bd.ID] = true
		if !near(bd.CreatedAt, before) {
			t.Errorf("CreateBuild set CreatedAt %v, want about %v", bd.CreatedAt, before)
		}
		for _, j := range bd.Jobs {
			if j.ID == 0 || jobIDs[j.ID] || j.BuildID != bd.ID || !near(j.CreatedAt, before) {
				t.Errorf("CreateBuild set job %q ID %d, BuildID %d, CreatedAt %v; want a new ID, %d and about %v",
					j.Name, j.ID, j.BuildID, j.CreatedAt, bd.ID, before)
			}
			jobIDs[j.ID] = true
		}
	}
	want := []string{"acme/a#1", "acme/b#1", "acme/a#2", "acme/a#3", "acme/b#2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("build numbers (-want +got):\n%s", diff)
	}
}

func testCreateBuildNumbersConcurrent(t *testing.T, s store.Store) {
	const n = 50
	r := newRepo(t, s, "acme/busy")
	other := newRepo(t, s, "acme/other")
	var wg sync.WaitGroup
	numbers := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "push",
				Jobs: []*store.Job{queued("a", 0), queued("b", 1), queued("c", 2)}}
			errs[i] = s.CreateBuild(t.Context(), b)
			numbers[i] = b.Number
		})
	}
	// Another repo's builds interleave without taking its numbers.
	for range 5 {
		newBuild(t, s, other, nil)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateBuild #%d = %v", i, err)
		}
	}
	slices.Sort(numbers)
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if diff := cmp.Diff(want, numbers); diff != "" {
		t.Errorf("numbers of %d concurrent builds (-want +got):\n%s", n, diff)
	}
	builds, err := s.Builds(t.Context(), store.BuildFilter{Repo: r.Name, Limit: 1000})
	if err != nil {
		t.Fatalf("Builds() = %v", err)
	}
	if len(builds) != n {
		t.Errorf("Builds(%s) = %d builds, want %d", r.Name, len(builds), n)
	}
	for _, b := range builds {
		if len(b.Jobs) != 3 {
			t.Errorf("build %d has %d jobs, want 3", b.Number, len(b.Jobs))
		}
	}
	if b := newBuild(t, s, other, nil); b.Number != 6 {
		t.Errorf("6th build of %s has number %d, want 6", other.Name, b.Number)
	}
}

// Not in store.go: a build of a repo that does not exist is ErrNotFound
// ("no such repo").
func testCreateBuildMissingRepo(t *testing.T, s store.Store) {
	b := &store.Build{RepoID: 424242, Status: store.StatusQueued, Jobs: []*store.Job{queued("test", 0)}}
	if err := s.CreateBuild(t.Context(), b); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateBuild(missing repo) = %v, want ErrNotFound", err)
	}
	if b.ID != 0 || b.Jobs[0].ID != 0 {
		t.Errorf("CreateBuild(missing repo) set IDs %d and %d, want none", b.ID, b.Jobs[0].ID)
	}
}

func testDeliveryDedupe(t *testing.T, s store.Store) {
	ctx := t.Context()
	r, other := newRepo(t, s, "acme/a"), newRepo(t, s, "acme/b")
	first := newBuild(t, s, r, []*store.Job{queued("test", 0)}, func(b *store.Build) { b.DeliveryID = "delivery-1" })

	dup := &store.Build{RepoID: r.ID, Status: store.StatusQueued, DeliveryID: "delivery-1", Branch: "other",
		Jobs: []*store.Job{queued("test", 0), queued("lint", 1)}}
	err := s.CreateBuild(ctx, dup)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateBuild(same delivery) = %v, want ErrConflict", err)
	}
	if dup.ID != first.ID {
		t.Errorf("CreateBuild(same delivery) set ID %d, want the existing build's %d", dup.ID, first.ID)
	}
	for _, j := range dup.Jobs {
		if j.ID != 0 {
			t.Errorf("CreateBuild(same delivery) set job ID %d, want none", j.ID)
		}
	}
	builds, err := s.Builds(ctx, store.BuildFilter{Repo: r.Name})
	if err != nil {
		t.Fatalf("Builds() = %v", err)
	}
	if len(builds) != 1 || builds[0].Branch != "main" || len(builds[0].Jobs) != 1 {
		t.Errorf("Builds(%s) after a duplicate delivery = %d builds, want the first only", r.Name, len(builds))
	}

	// The refused build took no number.
	if b := newBuild(t, s, r, nil); b.Number != 2 {
		t.Errorf("next build after a refused duplicate has number %d, want 2", b.Number)
	}
	// Builds without a delivery ID never clash.
	newBuild(t, s, r, nil)
	// Another repo may have the same delivery ID.
	if b := newBuild(t, s, other, nil, func(b *store.Build) { b.DeliveryID = "delivery-1" }); b.Number != 1 {
		t.Errorf("build of another repo with the same delivery has number %d, want 1", b.Number)
	}
	got := getBuild(t, s, first.ID)
	if got.DeliveryID != "delivery-1" {
		t.Errorf("Build(%d).DeliveryID = %q, want delivery-1", first.ID, got.DeliveryID)
	}
}

func testDeliveryDedupeConcurrent(t *testing.T, s store.Store) {
	const n = 50
	r := newRepo(t, s, "acme/a")
	var wg sync.WaitGroup
	ids := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, DeliveryID: "same",
				Jobs: []*store.Job{queued("test", 0)}}
			errs[i] = s.CreateBuild(t.Context(), b)
			ids[i] = b.ID
		})
	}
	wg.Wait()
	var winner int64
	created := 0
	for i, err := range errs {
		switch {
		case err == nil:
			created++
			winner = ids[i]
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("CreateBuild #%d = %v, want nil or ErrConflict", i, err)
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d concurrent builds with one delivery ID were created, want 1", created, n)
	}
	for i, id := range ids {
		if id != winner {
			t.Errorf("CreateBuild #%d set ID %d, want the created build's %d", i, id, winner)
		}
	}
	builds, err := s.Builds(t.Context(), store.BuildFilter{Limit: 1000})
	if err != nil {
		t.Fatalf("Builds() = %v", err)
	}
	if len(builds) != 1 || builds[0].Number != 1 {
		t.Errorf("Builds() = %d builds, want 1 numbered 1", len(builds))
	}
}

func testBuildRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/app")
	prev := newBuild(t, s, r, nil)
	b := &store.Build{
		RepoID: r.ID, Status: store.StatusRunning, Reason: "why not", Event: "pull_request", Branch: "feature/x",
		Tag: "v1.2.3", Commit: "fedcba9876543210fedcba9876543210fedcba98", BaseBranch: "main", PullRequest: 17,
		// Text fields hold any UTF-8 but NUL, which PostgreSQL text
		// refuses; bytes fields (Pipeline, log data) hold anything.
		Title: "Add ünïcode ✓", Author: "alice", Message: "line 1\n\tline 2 \u2603", DeliveryID: "abc-123",
		Pipeline: []byte("jobs:\n  test:\n    steps: [{run: go test ./...}]\n\xff\xfe"), RetryOf: prev.ID,
		StartedAt: at(time.Second),
		// FinishedAt stays zero: the zero time round-trips as zero.
		Jobs: []*store.Job{
			// Out of Position order: Build returns them in Position order.
			{Name: "deploy", Position: 2, Status: store.StatusPending, ExitCode: -1, RunsOn: []string{"linux", "prod"}},
			{Name: "test", Position: 0, Status: store.StatusSuccess, Reason: "passed in build 1", ExitCode: 0,
				RunsOn: []string{"linux"}, QueuedAt: at(2 * time.Second),
				StartedAt: at(3 * time.Second), FinishedAt: at(4 * time.Second),
				Steps: []*store.Step{ // carried over by a retry
					{Index: 0, Name: "checkout", Status: store.StatusSuccess, ExitCode: 0, Attempts: 1,
						StartedAt: at(3 * time.Second), FinishedAt: at(3*time.Second + time.Millisecond)},
					{Index: 1, Name: "go test", Status: store.StatusSuccess, ExitCode: 0, Attempts: 2,
						StartedAt: at(3 * time.Second), FinishedAt: at(4 * time.Second)},
				}},
			{Name: "build", Position: 1, Status: store.StatusQueued, ExitCode: -1, QueuedAt: at(4 * time.Second)},
		},
	}
	if err := s.CreateBuild(ctx, b); err != nil {
		t.Fatalf("CreateBuild() = %v", err)
	}
	want := *b
	want.Repo = r.Name
	want.Number = 2
	want.Jobs = []*store.Job{b.Jobs[1], b.Jobs[2], b.Jobs[0]}
	got := getBuild(t, s, b.ID)
	if diff := cmp.Diff(&want, got, opts...); diff != "" {
		t.Errorf("Build(%d) differs from what was created (-want +got):\n%s", b.ID, diff)
	}
	if !got.FinishedAt.IsZero() || !got.Jobs[0].LeaseExpires.IsZero() {
		t.Errorf("zero times read back as %v and %v", got.FinishedAt, got.Jobs[0].LeaseExpires)
	}
	if _, err := s.Build(ctx, b.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Build(missing) = %v, want ErrNotFound", err)
	}
}

func testBuilds(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := newRepo(t, s, "acme/a"), newRepo(t, s, "acme/b")
	type spec struct {
		repo           *store.Repo
		branch, status string
	}
	specs := []spec{
		{a, "main", store.StatusSuccess},
		{a, "dev", store.StatusFailure},
		{b, "main", store.StatusSuccess},
		{a, "main", store.StatusRunning},
		{b, "dev", store.StatusQueued},
		{a, "main", store.StatusSuccess},
	}
	var all []*store.Build
	for _, sp := range specs {
		all = append(all, newBuild(t, s, sp.repo, []*store.Job{queued("test", 0), queued("build", 1)},
			func(b *store.Build) { b.Branch, b.Status = sp.branch, sp.status }))
	}
	// Give one job steps: Builds leaves them out.
	err := s.Update(ctx, all[5].ID, func(b *store.Build) error {
		b.Jobs[0].Steps = append(b.Jobs[0].Steps, &store.Step{Index: 0, Name: "s", Status: store.StatusSuccess})
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	ids := func(idx ...int) []int64 {
		var out []int64
		for _, i := range idx {
			out = append(out, all[i].ID)
		}
		return out
	}
	tests := []struct {
		f    store.BuildFilter
		want []int64
	}{
		{store.BuildFilter{}, ids(5, 4, 3, 2, 1, 0)},
		{store.BuildFilter{Repo: "acme/a"}, ids(5, 3, 1, 0)},
		{store.BuildFilter{Repo: "acme/b"}, ids(4, 2)},
		{store.BuildFilter{Repo: "acme/none"}, nil},
		{store.BuildFilter{Branch: "main"}, ids(5, 3, 2, 0)},
		{store.BuildFilter{Status: store.StatusSuccess}, ids(5, 2, 0)},
		{store.BuildFilter{Repo: "acme/a", Branch: "main", Status: store.StatusSuccess}, ids(5, 0)},
		{store.BuildFilter{Repo: "acme/a", Branch: "dev", Status: store.StatusSuccess}, nil},
		{store.BuildFilter{Limit: 2}, ids(5, 4)},
		{store.BuildFilter{Repo: "acme/a", Limit: 3}, ids(5, 3, 1)},
	}
	for _, tt := range tests {
		got, err := s.Builds(ctx, tt.f)
		if err != nil {
			t.Errorf("Builds(%+v) = %v", tt.f, err)
			continue
		}
		var gotIDs []int64
		for _, b := range got {
			gotIDs = append(gotIDs, b.ID)
			if len(b.Pipeline) != 0 {
				t.Errorf("Builds(%+v): build %d has its pipeline, want none", tt.f, b.ID)
			}
			if b.Repo == "" || b.Number == 0 {
				t.Errorf("Builds(%+v): build %d has repo %q number %d, want both", tt.f, b.ID, b.Repo, b.Number)
			}
			if len(b.Jobs) != 2 || b.Jobs[0].Name != "test" || b.Jobs[1].Name != "build" {
				t.Errorf("Builds(%+v): build %d has %d jobs, want test and build in order", tt.f, b.ID, len(b.Jobs))
			}
			for _, j := range b.Jobs {
				if len(j.Steps) != 0 {
					t.Errorf("Builds(%+v): job %d has %d steps, want none", tt.f, j.ID, len(j.Steps))
				}
			}
		}
		if diff := cmp.Diff(tt.want, gotIDs, opts...); diff != "" {
			t.Errorf("Builds(%+v) IDs (-want +got):\n%s", tt.f, diff)
		}
	}

	// A build as Builds returns it is the build as Build returns it, without
	// steps and pipeline.
	one, err := s.Builds(ctx, store.BuildFilter{Limit: 1})
	if err != nil || len(one) != 1 {
		t.Fatalf("Builds(limit 1) = %d, %v", len(one), err)
	}
	full := getBuild(t, s, one[0].ID)
	full.Pipeline = nil
	for _, j := range full.Jobs {
		j.Steps = nil
	}
	if diff := cmp.Diff(full, one[0], opts...); diff != "" {
		t.Errorf("Builds() differs from Build() (-Build +Builds):\n%s", diff)
	}
}

func testBuildsDefaultLimit(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	for range 55 {
		newBuild(t, s, r, nil)
	}
	got, err := s.Builds(t.Context(), store.BuildFilter{})
	if err != nil {
		t.Fatalf("Builds() = %v", err)
	}
	if len(got) != 50 || got[0].Number != 55 || got[49].Number != 6 {
		t.Errorf("Builds() = %d builds, want the newest 50 (55 down to 6)", len(got))
	}
}

func testBuildIDs(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	statuses := []string{store.StatusQueued, store.StatusSuccess, store.StatusRunning, store.StatusQueued, store.StatusFailure}
	var ids []int64
	for _, st := range statuses {
		ids = append(ids, newBuild(t, s, r, nil, func(b *store.Build) { b.Status = st }).ID)
	}
	tests := []struct {
		statuses []string
		want     []int64
	}{
		{[]string{store.StatusQueued, store.StatusRunning}, []int64{ids[0], ids[2], ids[3]}},
		{[]string{store.StatusFailure}, []int64{ids[4]}},
		{[]string{store.StatusCancelled}, nil},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := s.BuildIDs(t.Context(), tt.statuses...)
		if err != nil {
			t.Errorf("BuildIDs(%v) = %v", tt.statuses, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, opts...); diff != "" {
			t.Errorf("BuildIDs(%v) (-want +got):\n%s", tt.statuses, diff)
		}
	}
}

func testUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0), queued("build", 1)})
	other := newBuild(t, s, r, []*store.Job{queued("test", 0)})

	var want *store.Build
	err := s.Update(ctx, b.ID, func(got *store.Build) error {
		if got.ID != b.ID || len(got.Jobs) != 2 || got.Repo != r.Name {
			t.Errorf("Update gave fn build %d of %q with %d jobs, want %d of %q with 2", got.ID, got.Repo, len(got.Jobs), b.ID, r.Name)
		}
		got.Status, got.Reason, got.StartedAt = store.StatusRunning, "started", at(time.Minute)
		got.Title = "new title"
		j := got.Jobs[0]
		j.Status, j.Agent, j.StartedAt, j.ExitCode = store.StatusRunning, "agent-1", at(time.Minute), 3
		j.Steps = append(j.Steps,
			&store.Step{Index: 0, Name: "checkout", Status: store.StatusSuccess, ExitCode: 0, Attempts: 1,
				StartedAt: at(time.Minute), FinishedAt: at(time.Minute + time.Second)},
			&store.Step{Index: 1, Name: "go test", Status: store.StatusRunning, ExitCode: -1, Attempts: 1,
				StartedAt: at(time.Minute + time.Second)})
		want = got
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if diff := cmp.Diff(want, getBuild(t, s, b.ID), opts...); diff != "" {
		t.Errorf("Build() after Update differs from what fn left (-want +got):\n%s", diff)
	}

	// A second Update sees the first's steps, changes one, appends one.
	err = s.Update(ctx, b.ID, func(got *store.Build) error {
		j := got.Jobs[0]
		if len(j.Steps) != 2 {
			t.Fatalf("Update gave fn job with %d steps, want 2", len(j.Steps))
		}
		j.Steps[1].Status, j.Steps[1].ExitCode, j.Steps[1].FinishedAt = store.StatusFailure, 1, at(2*time.Minute)
		j.Steps = append(j.Steps, &store.Step{Index: 2, Name: "upload", Status: store.StatusSkipped, ExitCode: -1})
		j.Status, j.FinishedAt, j.Reason = store.StatusFailure, at(2*time.Minute), "go test failed"
		got.Jobs[1].Status, got.Jobs[1].Reason = store.StatusSkipped, "needs test"
		got.Status, got.FinishedAt = store.StatusFailure, at(2*time.Minute)
		want = got
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if diff := cmp.Diff(want, getBuild(t, s, b.ID), opts...); diff != "" {
		t.Errorf("Build() after a second Update differs from what fn left (-want +got):\n%s", diff)
	}

	// An Update that changes nothing writes nothing visible.
	before := getBuild(t, s, b.ID)
	if err := s.Update(ctx, b.ID, func(*store.Build) error { return nil }); err != nil {
		t.Fatalf("Update(no change) = %v", err)
	}
	if diff := cmp.Diff(before, getBuild(t, s, b.ID), opts...); diff != "" {
		t.Errorf("Update(no change) changed the build (-before +after):\n%s", diff)
	}
	// The other build is untouched.
	if got := getBuild(t, s, other.ID); got.Status != store.StatusQueued || got.Jobs[0].Status != store.StatusQueued {
		t.Errorf("Update of build %d changed build %d: %s/%s", b.ID, other.ID, got.Status, got.Jobs[0].Status)
	}
}

// Not in store.go, which says fn may append steps: a job's stored steps
// are exactly the ones fn leaves, so fn may also drop them. The server
// does when it requeues a job whose agent vanished (build.Requeue).
func testUpdateTruncatesSteps(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
		for i := range 3 {
			b.Jobs[0].Steps = append(b.Jobs[0].Steps, &store.Step{Index: i, Name: fmt.Sprint("step ", i), Status: store.StatusSuccess})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	err = s.Update(t.Context(), b.ID, func(b *store.Build) error {
		b.Jobs[0].Steps = b.Jobs[0].Steps[:1]
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if got := getBuild(t, s, b.ID).Jobs[0].Steps; len(got) != 1 || got[0].Name != "step 0" {
		t.Errorf("steps after truncating to one = %d, want step 0 only", len(got))
	}
	err = s.Update(t.Context(), b.ID, func(b *store.Build) error {
		b.Jobs[0].Steps = nil
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if got := getBuild(t, s, b.ID).Jobs[0].Steps; len(got) != 0 {
		t.Errorf("steps after dropping them all = %d, want none", len(got))
	}
}

func testUpdateError(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	before := getBuild(t, s, b.ID)
	errBoom := errors.New("boom")
	err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
		b.Status, b.Reason = store.StatusFailure, "changed"
		b.Jobs[0].Status = store.StatusCancelled
		b.Jobs[0].Steps = append(b.Jobs[0].Steps, &store.Step{Name: "x"})
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("Update(fn fails) = %v, want fn's error", err)
	}
	if diff := cmp.Diff(before, getBuild(t, s, b.ID), opts...); diff != "" {
		t.Errorf("Update(fn fails) wrote (-before +after):\n%s", diff)
	}
	// The sentinels fn returns stay recognisable.
	err = s.Update(t.Context(), b.ID, func(*store.Build) error { return store.ErrStaleLease })
	if !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Update(fn returns ErrStaleLease) = %v, want ErrStaleLease", err)
	}
}

func testUpdateMissing(t *testing.T, s store.Store) {
	called := false
	err := s.Update(t.Context(), 4242, func(*store.Build) error { called = true; return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	if called {
		t.Errorf("Update(missing) called fn")
	}
}

// Not in store.go, which says fn must not add or remove jobs: when it does,
// Update fails and writes nothing.
func testUpdateMustNotChangeJobs(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0), queued("build", 1)})
	before := getBuild(t, s, b.ID)
	for name, fn := range map[string]func(b *store.Build){
		"add":     func(b *store.Build) { b.Jobs = append(b.Jobs, queued("extra", 2)) },
		"remove":  func(b *store.Build) { b.Jobs = b.Jobs[:1] },
		"replace": func(b *store.Build) { b.Jobs[1] = queued("other", 1) },
	} {
		err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
			b.Reason = "changed"
			fn(b)
			return nil
		})
		if err == nil {
			t.Errorf("Update(%s a job) = nil, want an error", name)
		}
		if diff := cmp.Diff(before, getBuild(t, s, b.ID), opts...); diff != "" {
			t.Errorf("Update(%s a job) wrote (-before +after):\n%s", name, diff)
		}
	}
}

// Updates of one build do not interleave: none is lost.
func testUpdateConcurrent(t *testing.T, s store.Store) {
	const n = 20
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
				b.PullRequest++
				b.Jobs[0].Steps = append(b.Jobs[0].Steps, &store.Step{Index: len(b.Jobs[0].Steps), Name: "step"})
				return nil
			})
			if err != nil {
				t.Errorf("Update() = %v", err)
			}
		})
	}
	wg.Wait()
	got := getBuild(t, s, b.ID)
	if got.PullRequest != n || len(got.Jobs[0].Steps) != n {
		t.Errorf("after %d concurrent increments: %d, and %d steps; want %d", n, got.PullRequest, len(got.Jobs[0].Steps), n)
	}
}

func testLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	pending := &store.Job{Name: "deploy", Position: 1, Status: store.StatusPending, ExitCode: -1}
	b := newBuild(t, s, r, []*store.Job{queued("test", 0), pending})

	before := time.Now()
	lb, j, err := s.Lease(ctx, "agent-1", []string{"linux"}, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if j.ID != b.Jobs[0].ID || j.Status != store.StatusRunning || j.Agent != "agent-1" || j.Attempt != 1 || j.LeaseToken <= 0 {
		t.Errorf("Lease() = job %d %s agent %q attempt %d token %d; want job %d running for agent-1, attempt 1, a token",
			j.ID, j.Status, j.Agent, j.Attempt, j.LeaseToken, b.Jobs[0].ID)
	}
	if !near(j.LeaseExpires, before.Add(time.Hour)) {
		t.Errorf("Lease(ttl 1h) expires %v, want about %v", j.LeaseExpires, before.Add(time.Hour))
	}
	// The build comes with its jobs (the queue needs the others' status
	// for needs.*) and its pipeline (the agent runs it); not its steps.
	if lb.ID != b.ID || lb.Repo != r.Name || lb.Number != 1 || !bytes.Equal(lb.Pipeline, b.Pipeline) || len(lb.Jobs) != 2 {
		t.Errorf("Lease() build = %d %q #%d with %d jobs and pipeline %q; want %d %q #1 with 2 jobs and its pipeline",
			lb.ID, lb.Repo, lb.Number, len(lb.Jobs), lb.Pipeline, b.ID, r.Name)
	}
	if lj := jobByID(lb, j.ID); lj == nil || lj.Status != store.StatusRunning || lj.LeaseToken != j.LeaseToken {
		t.Errorf("Lease() build's copy of the job is not the leased one: %+v", lj)
	}
	stored := jobByID(getBuild(t, s, b.ID), j.ID)
	if diff := cmp.Diff(j, stored, opts...); diff != "" {
		t.Errorf("stored job differs from the leased one (-leased +stored):\n%s", diff)
	}

	// Nothing else is queued: the pending job is not handed out.
	if _, _, err := s.Lease(ctx, "agent-2", []string{"linux"}, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lease() with only running and pending jobs = %v, want ErrNotFound", err)
	}

	// Requeued (the agent vanished), the job is leased again: a higher
	// token, attempt 2.
	err = s.Update(ctx, b.ID, func(b *store.Build) error {
		j := b.Jobs[0]
		j.Status, j.Agent, j.LeaseExpires, j.QueuedAt = store.StatusQueued, "", time.Time{}, time.Now()
		return nil
	})
	if err != nil {
		t.Fatalf("Update(requeue) = %v", err)
	}
	_, j2, err := s.Lease(ctx, "agent-2", nil, time.Minute)
	if err != nil {
		t.Fatalf("Lease() of a requeued job = %v", err)
	}
	if j2.ID != j.ID || j2.Attempt != 2 || j2.LeaseToken <= j.LeaseToken || j2.Agent != "agent-2" {
		t.Errorf("Lease() of a requeued job = job %d attempt %d token %d agent %q; want job %d, attempt 2, token > %d, agent-2",
			j2.ID, j2.Attempt, j2.LeaseToken, j2.Agent, j.ID, j.LeaseToken)
	}

	// Tokens increase across jobs and builds.
	last := j2.LeaseToken
	for i := range 3 {
		newBuild(t, s, r, []*store.Job{queued("test", 0)})
		_, j, err := s.Lease(ctx, "agent-3", nil, time.Minute)
		if err != nil {
			t.Fatalf("Lease() #%d = %v", i, err)
		}
		if j.LeaseToken <= last {
			t.Errorf("Lease() gave token %d after %d, want a higher one", j.LeaseToken, last)
		}
		last = j.LeaseToken
	}
}

func testLeaseLabels(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{
		queued("gpu", 0, "linux", "gpu"),
		queued("mac", 1, "macos"),
		queued("any", 2),
		queued("linux", 3, "linux"),
	})
	ids := map[string]int64{}
	for _, j := range b.Jobs {
		ids[j.Name] = j.ID
	}
	lease := func(labels ...string) string {
		t.Helper()
		_, j, err := s.Lease(ctx, "agent", labels, time.Hour)
		if errors.Is(err, store.ErrNotFound) {
			return "none"
		}
		if err != nil {
			t.Fatalf("Lease(%v) = %v", labels, err)
		}
		return j.Name
	}
	// The oldest job, gpu, needs a label a linux agent lacks: the agent
	// gets the oldest job it fits, and one without RunsOn fits anyone.
	if got := lease("linux", "amd64"); got != "any" {
		t.Errorf("Lease(linux, amd64) = %s, want any", got)
	}
	if got := lease("linux"); got != "linux" {
		t.Errorf("Lease(linux) = %s, want linux", got)
	}
	if got := lease("linux"); got != "none" {
		t.Errorf("Lease(linux) with gpu and macos jobs left = %s, want none", got)
	}
	if got := lease(); got != "none" {
		t.Errorf("Lease() with no labels and only jobs that need some = %s, want none", got)
	}
	if got := lease("gpu", "amd64", "linux"); got != "gpu" {
		t.Errorf("Lease(gpu, amd64, linux) = %s, want gpu", got)
	}
	if got := lease("macos"); got != "mac" {
		t.Errorf("Lease(macos) = %s, want mac", got)
	}
}

func testLeaseOldestFirst(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	// Created in one order, queued in another: QueuedAt decides.
	job := func(name string, queuedAt time.Duration) *store.Job {
		j := queued(name, 0)
		j.QueuedAt = at(queuedAt)
		return j
	}
	newBuild(t, s, r, []*store.Job{job("third", 3*time.Second)})
	newBuild(t, s, r, []*store.Job{job("first", time.Second)})
	newBuild(t, s, r, []*store.Job{job("second", 2*time.Second), job("fourth", 4*time.Second)},
		func(b *store.Build) { b.Jobs[1].Position = 1 })
	var got []string
	for {
		_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Lease() = %v", err)
		}
		got = append(got, j.Name)
	}
	if diff := cmp.Diff([]string{"first", "second", "third", "fourth"}, got); diff != "" {
		t.Errorf("Lease() order (-want +got):\n%s", diff)
	}
}

func testLeaseConcurrent(t *testing.T, s store.Store) {
	const agents, builds, jobsPerBuild = 10, 5, 4
	r := newRepo(t, s, "acme/a")
	want := map[int64]bool{}
	for range builds {
		var jobs []*store.Job
		for i := range jobsPerBuild {
			jobs = append(jobs, queued(fmt.Sprint("job", i), i))
		}
		for _, j := range newBuild(t, s, r, jobs).Jobs {
			want[j.ID] = true
		}
	}
	var (
		mu     sync.Mutex
		got    = map[int64]int{}
		tokens = map[int64]bool{}
		wg     sync.WaitGroup
	)
	for a := range agents {
		wg.Go(func() {
			for {
				_, j, err := s.Lease(t.Context(), fmt.Sprint("agent-", a), []string{"linux"}, time.Hour)
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					t.Errorf("Lease() = %v", err)
					return
				}
				mu.Lock()
				got[j.ID]++
				if tokens[j.LeaseToken] {
					t.Errorf("token %d handed out twice", j.LeaseToken)
				}
				tokens[j.LeaseToken] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != len(want) {
		t.Errorf("%d agents leased %d distinct jobs, want %d", agents, len(got), len(want))
	}
	for id, n := range got {
		if !want[id] || n != 1 {
			t.Errorf("job %d leased %d times, want once", id, n)
		}
	}
}

// A Lease racing an Update that cancels the build: whichever comes first,
// the job ends cancelled and any lease on it is stale. A Lease that
// interleaved with the Update could leave the cancelled job running.
func testLeaseVersusCancel(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	for i := range 20 {
		b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
		var wg sync.WaitGroup
		var leased *store.Job
		var leaseErr error
		wg.Go(func() { _, leased, leaseErr = s.Lease(t.Context(), "agent", nil, time.Hour) })
		wg.Go(func() {
			err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
				for _, j := range b.Jobs {
					j.Status, j.LeaseExpires = store.StatusCancelled, time.Time{}
				}
				b.Status = store.StatusCancelled
				return nil
			})
			if err != nil {
				t.Errorf("Update(cancel) = %v", err)
			}
		})
		wg.Wait()
		if leaseErr != nil && !errors.Is(leaseErr, store.ErrNotFound) {
			t.Fatalf("round %d: Lease() = %v", i, leaseErr)
		}
		if got := getBuild(t, s, b.ID).Jobs[0].Status; got != store.StatusCancelled {
			t.Errorf("round %d: job is %s after cancel, want cancelled", i, got)
		}
		if leased != nil {
			if err := s.Renew(t.Context(), leased.ID, leased.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
				t.Errorf("round %d: Renew() of a cancelled job = %v, want ErrStaleLease", i, err)
			}
		}
	}
}

func testRenew(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	_, j, err := s.Lease(ctx, "agent", nil, time.Minute)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	before := time.Now()
	if err := s.Renew(ctx, j.ID, j.LeaseToken, 2*time.Hour); err != nil {
		t.Fatalf("Renew() = %v", err)
	}
	got := jobByID(getBuild(t, s, b.ID), j.ID)
	if !near(got.LeaseExpires, before.Add(2*time.Hour)) {
		t.Errorf("Renew(2h) left the lease expiring at %v, want about %v", got.LeaseExpires, before.Add(2*time.Hour))
	}
	if got.Status != store.StatusRunning || got.LeaseToken != j.LeaseToken || got.Attempt != 1 {
		t.Errorf("Renew() changed the job: %s token %d attempt %d", got.Status, got.LeaseToken, got.Attempt)
	}
	// A lease that expired but was not taken away yet may still be renewed.
	if err := s.Renew(ctx, j.ID, j.LeaseToken, -time.Minute); err != nil {
		t.Fatalf("Renew(-1m) = %v", err)
	}
	if err := s.Renew(ctx, j.ID, j.LeaseToken, time.Hour); err != nil {
		t.Errorf("Renew() of an expired lease nobody took = %v, want nil", err)
	}
}

func testRenewStale(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0), queued("lint", 1), queued("build", 2)})

	// Finished through Update.
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	finish(t, s, b.ID, j.ID, store.StatusSuccess)
	if err := s.Renew(ctx, j.ID, j.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew() of a finished job = %v, want ErrStaleLease", err)
	}

	// Cancelled through Update.
	_, j, err = s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	finish(t, s, b.ID, j.ID, store.StatusCancelled)
	if err := s.Renew(ctx, j.ID, j.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew() of a cancelled job = %v, want ErrStaleLease", err)
	}

	// Re-leased to another agent: the old token is stale, the new one not.
	_, old, err := s.Lease(ctx, "agent-1", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	err = s.Update(ctx, b.ID, func(b *store.Build) error {
		j := jobByID(b, old.ID)
		j.Status, j.QueuedAt, j.Agent = store.StatusQueued, time.Now(), ""
		return nil
	})
	if err != nil {
		t.Fatalf("Update(requeue) = %v", err)
	}
	_, cur, err := s.Lease(ctx, "agent-2", nil, time.Hour)
	if err != nil || cur.ID != old.ID {
		t.Fatalf("Lease() of the requeued job = %v, %v", cur, err)
	}
	if err := s.Renew(ctx, old.ID, old.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew(old token) of a re-leased job = %v, want ErrStaleLease", err)
	}
	if err := s.Renew(ctx, cur.ID, cur.LeaseToken, time.Hour); err != nil {
		t.Errorf("Renew(new token) = %v", err)
	}
	if err := s.Renew(ctx, cur.ID, 0, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew(token 0) = %v, want ErrStaleLease", err)
	}
	// Not in store.go: a job that does not exist has no lease either.
	if err := s.Renew(ctx, 987654, cur.LeaseToken, time.Hour); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("Renew(missing job) = %v, want ErrStaleLease", err)
	}
}

func testExpiredLeases(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	// Each job needs its own label, to lease exactly that one.
	short := newBuild(t, s, r, []*store.Job{queued("a", 0, "a"), queued("b", 1, "b")})
	long := newBuild(t, s, r, []*store.Job{queued("c", 0, "c")})
	newBuild(t, s, r, []*store.Job{queued("d", 0, "d")}) // stays queued
	expired := func(now time.Time) []int64 {
		t.Helper()
		ids, err := s.ExpiredLeases(ctx, now)
		if err != nil {
			t.Fatalf("ExpiredLeases() = %v", err)
		}
		return ids
	}
	lease := func(label string, ttl time.Duration) *store.Job {
		t.Helper()
		_, j, err := s.Lease(ctx, "agent", []string{label}, ttl)
		if err != nil {
			t.Fatalf("Lease() = %v", err)
		}
		return j
	}
	a, c := lease("a", time.Minute), lease("c", time.Hour)
	lease("b", time.Minute)
	now := time.Now()
	if got := expired(now); len(got) != 0 {
		t.Errorf("ExpiredLeases(now) = %v, want none", got)
	}
	// Both of short's jobs expired: it is listed once.
	if diff := cmp.Diff([]int64{short.ID}, expired(now.Add(10*time.Minute)), opts...); diff != "" {
		t.Errorf("ExpiredLeases(now+10m) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{short.ID, long.ID}, sorted(expired(now.Add(2*time.Hour))), opts...); diff != "" {
		t.Errorf("ExpiredLeases(now+2h) (-want +got):\n%s", diff)
	}
	// A lease that already expired shows at now.
	if err := s.Renew(ctx, c.ID, c.LeaseToken, -time.Second); err != nil {
		t.Fatalf("Renew(-1s) = %v", err)
	}
	if diff := cmp.Diff([]int64{long.ID}, expired(time.Now()), opts...); diff != "" {
		t.Errorf("ExpiredLeases(now) after a lease expired (-want +got):\n%s", diff)
	}
	// Finished jobs hold no lease; one running expired job keeps the build.
	finish(t, s, long.ID, c.ID, store.StatusError)
	finish(t, s, short.ID, a.ID, store.StatusSuccess)
	if diff := cmp.Diff([]int64{short.ID}, expired(now.Add(2*time.Hour)), opts...); diff != "" {
		t.Errorf("ExpiredLeases(now+2h) after finishing (-want +got):\n%s", diff)
	}
}

func sorted(ids []int64) []int64 {
	slices.Sort(ids)
	return ids
}

func testAppendLogs(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	newBuild(t, s, r, []*store.Job{queued("test", 0), queued("lint", 1)})
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	_, other, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}

	var all []*store.LogChunk
	for batch := range 4 {
		var chunks []*store.LogChunk
		for i := range 3 {
			chunks = append(chunks, &store.LogChunk{Step: batch, Data: fmt.Appendf(nil, "batch %d line %d\n", batch, i),
				CreatedAt: at(time.Duration(batch*10+i) * time.Millisecond)})
		}
		if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, chunks); err != nil {
			t.Fatalf("AppendLogs(batch %d) = %v", batch, err)
		}
		all = append(all, chunks...)
		// Another job's logs interleave, with their own numbering.
		if err := s.AppendLogs(ctx, other.ID, other.LeaseToken, []*store.LogChunk{{Data: []byte("other\n")}}); err != nil {
			t.Fatalf("AppendLogs(other) = %v", err)
		}
	}
	for i, c := range all {
		if c.Seq != int64(i+1) || c.JobID != j.ID {
			t.Errorf("AppendLogs set chunk %d to job %d seq %d, want job %d seq %d", i, c.JobID, c.Seq, j.ID, i+1)
		}
	}
	got, err := s.Logs(ctx, j.ID, 0, 1000)
	if err != nil {
		t.Fatalf("Logs() = %v", err)
	}
	if diff := cmp.Diff(all, got, opts...); diff != "" {
		t.Errorf("Logs() (-appended +got):\n%s", diff)
	}

	// Paging.
	var paged []*store.LogChunk
	var after int64
	for {
		page, err := s.Logs(ctx, j.ID, after, 5)
		if err != nil {
			t.Fatalf("Logs(after %d, 5) = %v", after, err)
		}
		if len(page) > 5 {
			t.Fatalf("Logs(after %d, 5) = %d chunks", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1].Seq
	}
	if diff := cmp.Diff(all, paged, opts...); diff != "" {
		t.Errorf("Logs() by pages of 5 (-appended +got):\n%s", diff)
	}
	if page, err := s.Logs(ctx, j.ID, 10, 1); err != nil || len(page) != 1 || page[0].Seq != 11 {
		t.Errorf("Logs(after 10, 1) = %v, %v; want chunk 11", page, err)
	}
	// Not in store.go: a limit of 0 means no limit.
	if page, err := s.Logs(ctx, j.ID, 2, 0); err != nil || len(page) != len(all)-2 {
		t.Errorf("Logs(after 2, limit 0) = %d chunks, %v; want %d", len(page), err, len(all)-2)
	}
	if page, err := s.Logs(ctx, j.ID, int64(len(all)), 10); err != nil || len(page) != 0 {
		t.Errorf("Logs(after the last) = %d chunks, %v; want none", len(page), err)
	}
	if page, err := s.Logs(ctx, 987654, 0, 10); err != nil || len(page) != 0 {
		t.Errorf("Logs(missing job) = %d chunks, %v; want none", len(page), err)
	}
	otherLogs, err := s.Logs(ctx, other.ID, 0, 100)
	if err != nil {
		t.Fatalf("Logs(other) = %v", err)
	}
	for i, c := range otherLogs {
		if c.Seq != int64(i+1) || string(c.Data) != "other\n" {
			t.Errorf("other job's chunk %d = seq %d %q", i, c.Seq, c.Data)
		}
	}
	// A chunk without CreatedAt gets one.
	c := &store.LogChunk{Data: []byte("late\n")}
	before := time.Now()
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{c}); err != nil {
		t.Fatalf("AppendLogs() = %v", err)
	}
	if page, err := s.Logs(ctx, j.ID, int64(len(all)), 10); err != nil || len(page) != 1 || !near(page[0].CreatedAt, before) {
		t.Errorf("Logs() of a chunk appended without CreatedAt = %v, %v; want one stamped about %v", page, err, before)
	}
	// An empty append under a valid lease is fine.
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, nil); err != nil {
		t.Errorf("AppendLogs(nothing) = %v", err)
	}
}

func testAppendLogsStale(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{queued("test", 0)})
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{{Data: []byte("one\n")}}); err != nil {
		t.Fatalf("AppendLogs() = %v", err)
	}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken+1, []*store.LogChunk{{Data: []byte("wrong token\n")}}); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("AppendLogs(wrong token) = %v, want ErrStaleLease", err)
	}
	finish(t, s, b.ID, j.ID, store.StatusCancelled)
	stale := &store.LogChunk{Data: []byte("after cancel\n")}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{stale}); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("AppendLogs() after cancel = %v, want ErrStaleLease", err)
	}
	if stale.Seq != 0 {
		t.Errorf("refused chunk got seq %d, want none", stale.Seq)
	}
	if err := s.AppendLogs(ctx, 987654, j.LeaseToken, []*store.LogChunk{{Data: []byte("x")}}); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("AppendLogs(missing job) = %v, want ErrStaleLease", err)
	}
	got, err := s.Logs(ctx, j.ID, 0, 0)
	if err != nil {
		t.Fatalf("Logs() = %v", err)
	}
	if len(got) != 1 || string(got[0].Data) != "one\n" {
		t.Errorf("Logs() after refused appends = %d chunks, want only the first", len(got))
	}
}

func testLogsMiB(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	newBuild(t, s, r, []*store.Job{queued("test", 0)})
	_, j, err := s.Lease(ctx, "agent", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	// Arbitrary bytes: NULs, invalid UTF-8, CRs.
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.UintN(256))
	}
	// In chunks of 64 KiB over a few appends, then one of the whole MiB.
	const chunk = 64 << 10
	for off := 0; off < len(data); off += 4 * chunk {
		var chunks []*store.LogChunk
		for o := off; o < off+4*chunk && o < len(data); o += chunk {
			chunks = append(chunks, &store.LogChunk{Data: data[o : o+chunk]})
		}
		if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, chunks); err != nil {
			t.Fatalf("AppendLogs() = %v", err)
		}
	}
	if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, []*store.LogChunk{{Data: data}}); err != nil {
		t.Fatalf("AppendLogs(1 MiB) = %v", err)
	}
	got, err := s.Logs(ctx, j.ID, 0, 0)
	if err != nil {
		t.Fatalf("Logs() = %v", err)
	}
	n := len(data) / chunk
	if len(got) != n+1 {
		t.Fatalf("Logs() = %d chunks, want %d", len(got), n+1)
	}
	var joined []byte
	for _, c := range got[:n] {
		joined = append(joined, c.Data...)
	}
	if !bytes.Equal(joined, data) {
		t.Errorf("1 MiB in 64 KiB chunks did not round-trip byte for byte")
	}
	if !bytes.Equal(got[n].Data, data) {
		t.Errorf("a 1 MiB chunk did not round-trip byte for byte")
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.CountTokens(ctx); err != nil || n != 0 {
		t.Errorf("CountTokens() of an empty store = %d, %v; want 0", n, err)
	}
	before := time.Now()
	admin := &store.Token{Name: "admin", Hash: []byte{0, 1, 2, 0xff}, Admin: true, Kind: store.TokenAPI}
	if err := s.CreateToken(ctx, admin); err != nil {
		t.Fatalf("CreateToken() = %v", err)
	}
	if admin.ID == 0 || !near(admin.CreatedAt, before) {
		t.Errorf("CreateToken() set ID %d CreatedAt %v; want an ID and about %v", admin.ID, admin.CreatedAt, before)
	}
	ci := &store.Token{Name: "ci", Hash: []byte("another hash")}
	if err := s.CreateToken(ctx, ci); err != nil {
		t.Fatalf("CreateToken() = %v", err)
	}
	if ci.Kind != store.TokenAPI {
		t.Errorf("CreateToken(no kind) set Kind %q, want %q", ci.Kind, store.TokenAPI)
	}
	for _, want := range []*store.Token{admin, ci} {
		got, err := s.TokenByHash(ctx, want.Hash)
		if err != nil {
			t.Fatalf("TokenByHash(%q) = %v", want.Hash, err)
		}
		if diff := cmp.Diff(want, got, opts...); diff != "" {
			t.Errorf("TokenByHash(%q) (-want +got):\n%s", want.Hash, diff)
		}
	}
	if err := s.CreateToken(ctx, &store.Token{Name: "copy", Hash: []byte{0, 1, 2, 0xff}}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateToken(same hash) = %v, want ErrConflict", err)
	}
	if _, err := s.TokenByHash(ctx, []byte{0, 1, 2}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenByHash(a prefix) = %v, want ErrNotFound", err)
	}
	if n, err := s.CountTokens(ctx); err != nil || n != 2 {
		t.Errorf("CountTokens() = %d, %v; want 2", n, err)
	}
}

func testCountBuilds(t *testing.T, s store.Store) {
	ctx := t.Context()
	counts, err := s.CountBuilds(ctx)
	if err != nil || len(counts) != 0 {
		t.Errorf("CountBuilds() of an empty store = %v, %v; want nothing", counts, err)
	}
	a, b := newRepo(t, s, "acme/a"), newRepo(t, s, "acme/b")
	for _, st := range []string{store.StatusQueued, store.StatusQueued, store.StatusSuccess, store.StatusFailure} {
		newBuild(t, s, a, nil, func(b *store.Build) { b.Status = st })
	}
	running := newBuild(t, s, b, nil, func(b *store.Build) { b.Status = store.StatusQueued })
	err = s.Update(ctx, running.ID, func(b *store.Build) error { b.Status = store.StatusRunning; return nil })
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	counts, err = s.CountBuilds(ctx)
	if err != nil {
		t.Fatalf("CountBuilds() = %v", err)
	}
	want := map[string]int{store.StatusQueued: 2, store.StatusSuccess: 1, store.StatusFailure: 1, store.StatusRunning: 1}
	// A status no build is in may be absent or zero.
	if diff := cmp.Diff(want, counts, cmpopts.IgnoreMapEntries(func(_ string, n int) bool { return n == 0 })); diff != "" {
		t.Errorf("CountBuilds() (-want +got):\n%s", diff)
	}
}

func testAgentTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	api := &store.Token{Name: "admin", Hash: []byte("api"), Admin: true}
	gpu := &store.Token{Name: "gpu hosts", Hash: []byte("gpu"), Kind: store.TokenAgent, Labels: []string{"linux", "gpu"}}
	anyHost := &store.Token{Name: "any host", Hash: []byte("any"), Kind: store.TokenAgent}
	for _, tok := range []*store.Token{api, gpu, anyHost} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatalf("CreateToken(%s) = %v", tok.Name, err)
		}
	}
	got, err := s.Tokens(ctx, store.TokenAgent)
	if err != nil {
		t.Fatalf("Tokens(agent) = %v", err)
	}
	if diff := cmp.Diff([]*store.Token{gpu, anyHost}, got, opts...); diff != "" {
		t.Errorf("Tokens(agent) (-want +got):\n%s", diff)
	}

	before := time.Now()
	revoked, err := s.RevokeToken(ctx, gpu.ID)
	if err != nil {
		t.Fatalf("RevokeToken() = %v", err)
	}
	if !near(revoked.RevokedAt, before) || revoked.Name != gpu.Name {
		t.Errorf("RevokeToken() = %q revoked at %v, want %q revoked about %v", revoked.Name, revoked.RevokedAt, gpu.Name, before)
	}
	got1, err := s.TokenByHash(ctx, gpu.Hash)
	if err != nil || !got1.RevokedAt.Equal(revoked.RevokedAt) {
		t.Errorf("TokenByHash(revoked) = %+v, %v; want it with RevokedAt %v", got1, err, revoked.RevokedAt)
	}
	again, err := s.RevokeToken(ctx, gpu.ID)
	if err != nil || !again.RevokedAt.Equal(revoked.RevokedAt) {
		t.Errorf("RevokeToken() twice = %v, %v; want the first RevokedAt %v", again.RevokedAt, err, revoked.RevokedAt)
	}
	if _, err := s.RevokeToken(ctx, anyHost.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken(no such token) = %v, want ErrNotFound", err)
	}
	if got, err := s.TokenByHash(ctx, anyHost.Hash); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("TokenByHash(another token) = %+v, %v; want it not revoked", got, err)
	}
}

func testAgents(t *testing.T, s store.Store) {
	ctx := t.Context()
	if as, err := s.Agents(ctx); err != nil || len(as) != 0 {
		t.Fatalf("Agents() of an empty store = %v, %v; want none", as, err)
	}
	before := time.Now()
	b := &store.Agent{Name: "build-2", TokenID: 7, Labels: []string{"linux", "docker"}, Capacity: 4, Version: "v1"}
	a := &store.Agent{Name: "build-1", TokenID: 7, Capacity: 1, Version: "v1"}
	for _, ag := range []*store.Agent{b, a} {
		if err := s.SaveAgent(ctx, ag); err != nil {
			t.Fatalf("SaveAgent(%s) = %v", ag.Name, err)
		}
		if !near(ag.FirstSeen, before) || !ag.LastSeen.Equal(ag.FirstSeen) {
			t.Errorf("SaveAgent(%s) first seen %v, last seen %v; want both about %v", ag.Name, ag.FirstSeen, ag.LastSeen, before)
		}
	}
	first := b.FirstSeen
	time.Sleep(2 * time.Millisecond)
	b2 := &store.Agent{Name: "build-2", TokenID: 8, Labels: []string{"linux"}, Capacity: 2, Version: "v2", Draining: true}
	if err := s.SaveAgent(ctx, b2); err != nil {
		t.Fatalf("SaveAgent(again) = %v", err)
	}
	if !b2.FirstSeen.Equal(first) || !b2.LastSeen.After(first) {
		t.Errorf("SaveAgent(again) first seen %v, last seen %v; want first seen kept (%v) and last seen later", b2.FirstSeen, b2.LastSeen, first)
	}
	got, err := s.Agents(ctx)
	if err != nil {
		t.Fatalf("Agents() = %v", err)
	}
	if diff := cmp.Diff([]*store.Agent{a, b2}, got, opts...); diff != "" {
		t.Errorf("Agents() (-want +got):\n%s", diff)
	}
}

func testRunningJobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	newBuild(t, s, r, []*store.Job{queued("one", 0), queued("two", 1), queued("three", 2)})
	if js, err := s.RunningJobs(ctx); err != nil || len(js) != 0 {
		t.Fatalf("RunningJobs() with none leased = %v, %v; want none", js, err)
	}
	_, j1, err := s.Lease(ctx, "agent-1", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	_, j2, err := s.Lease(ctx, "agent-2", nil, time.Hour)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	got, err := s.RunningJobs(ctx)
	if err != nil {
		t.Fatalf("RunningJobs() = %v", err)
	}
	if diff := cmp.Diff([]*store.Job{j1, j2}, got, opts...); diff != "" {
		t.Errorf("RunningJobs() (-want +got):\n%s", diff)
	}
}

func locked(j *store.Job, locks ...string) *store.Job {
	j.Locks = locks
	return j
}

func testLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ls, err := s.Locks(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("Locks() of an empty store = %v, %v; want none", ls, err)
	}
	before := time.Now()
	staging := &store.Lock{Name: "staging", Capacity: 1}
	devices := &store.Lock{Name: "devices", Capacity: 4}
	for _, l := range []*store.Lock{staging, devices} {
		if err := s.CreateLock(ctx, l); err != nil {
			t.Fatalf("CreateLock(%s) = %v", l.Name, err)
		}
		if !near(l.CreatedAt, before) {
			t.Errorf("CreateLock(%s) CreatedAt = %v, want about %v", l.Name, l.CreatedAt, before)
		}
	}
	if err := s.CreateLock(ctx, &store.Lock{Name: "staging", Capacity: 2}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateLock(a taken name) = %v, want ErrConflict", err)
	}
	got, err := s.Locks(ctx)
	if err != nil {
		t.Fatalf("Locks() = %v", err)
	}
	if diff := cmp.Diff([]*store.Lock{devices, staging}, got, opts...); diff != "" {
		t.Errorf("Locks() (-want +got):\n%s", diff)
	}
	grown := &store.Lock{Name: "devices", Capacity: 6}
	if err := s.SetLock(ctx, grown); err != nil || !grown.CreatedAt.Equal(devices.CreatedAt) {
		t.Errorf("SetLock(devices, 6) = %v, created %v; want it to keep %v", err, grown.CreatedAt, devices.CreatedAt)
	}
	added := &store.Lock{Name: "added", Capacity: 2}
	if err := s.SetLock(ctx, added); err != nil || !near(added.CreatedAt, before) {
		t.Errorf("SetLock(a new lock) = %v, created %v; want about %v", err, added.CreatedAt, before)
	}
	devices.Capacity = 6
	if got, err := s.Locks(ctx); err != nil || len(got) != 3 || got[1].Capacity != 6 {
		t.Errorf("Locks() after SetLock = %+v, %v; want added, devices with 6 units, staging", got, err)
	}
	if err := s.DeleteLock(ctx, "staging"); err != nil {
		t.Fatalf("DeleteLock() = %v", err)
	}
	if err := s.DeleteLock(ctx, "staging"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteLock(deleted) = %v, want ErrNotFound", err)
	}
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, []*store.Job{locked(queued("deploy", 0), "devices", "staging")})
	if got := getBuild(t, s, b.ID).Jobs[0].Locks; !slices.Equal(got, []string{"devices", "staging"}) {
		t.Errorf("stored job locks = %q, want [devices staging]", got)
	}
}

// leaseName leases a job for an agent with labels and returns its name, or
// "" when none fits.
func leaseName(t *testing.T, s store.Store, labels ...string) (string, *store.Job) {
	t.Helper()
	_, j, err := s.Lease(t.Context(), "agent", labels, time.Hour)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	return j.Name, j
}

func testLeaseLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	if err := s.CreateLock(ctx, &store.Lock{Name: "staging", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	b := newBuild(t, s, r, []*store.Job{
		locked(queued("first", 0), "staging"),
		locked(queued("second", 1), "staging"),
		queued("free", 2),
		locked(queued("nowhere", 3), "no-such-lock"),
	})
	name, first := leaseName(t, s)
	if name != "first" {
		t.Fatalf("Lease() = %q, want first (the oldest, and staging is free)", name)
	}
	if name, _ := leaseName(t, s); name != "free" {
		t.Errorf("Lease() while first holds staging = %q, want free (second waits for staging)", name)
	}
	if name, _ := leaseName(t, s); name != "" {
		t.Errorf("Lease() with staging held and a lock that does not exist = %q, want nothing", name)
	}
	finish(t, s, b.ID, first.ID, store.StatusSuccess)
	if name, _ := leaseName(t, s); name != "second" {
		t.Errorf("Lease() after first released staging = %q, want second", name)
	}
	if err := s.CreateLock(ctx, &store.Lock{Name: "no-such-lock", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	if name, _ := leaseName(t, s); name != "nowhere" {
		t.Errorf("Lease() once its lock exists = %q, want nowhere", name)
	}
}

// A later job never overtakes an earlier one for the same lock, not even
// when the earlier one waits for an agent with other labels.
func testLeaseLocksFIFO(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	if err := s.CreateLock(ctx, &store.Lock{Name: "db", Capacity: 2}); err != nil {
		t.Fatal(err)
	}
	newBuild(t, s, r, []*store.Job{
		locked(queued("gpu-1", 0, "gpu"), "db"),
		locked(queued("gpu-2", 1, "gpu"), "db"),
		locked(queued("cpu", 2), "db"),
		queued("plain", 3),
	})
	if name, _ := leaseName(t, s, "linux"); name != "plain" {
		t.Errorf("Lease(linux) = %q, want plain: cpu must not overtake the gpu jobs ahead of it for db", name)
	}
	if name, _ := leaseName(t, s, "gpu"); name != "gpu-1" {
		t.Errorf("Lease(gpu) = %q, want gpu-1", name)
	}
	if name, _ := leaseName(t, s, "gpu"); name != "gpu-2" {
		t.Errorf("Lease(gpu) = %q, want gpu-2 (db has 2 units)", name)
	}
	if name, _ := leaseName(t, s, "gpu"); name != "" {
		t.Errorf("Lease() with both units of db held = %q, want nothing", name)
	}
}

// Jobs with locks and jobs without, in one queue and across builds: each
// Lease takes the oldest job that may run, a job with locks is never
// overtaken by a later one while its lock is free, a job without locks
// goes ahead of one whose lock is held, and every lease returns its own
// build, with that build's jobs and pipeline, under a higher token.
func testLeaseMixedQueue(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	if err := s.CreateLock(ctx, &store.Lock{Name: "db", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	// Queue order: free-1, db-1, free-2 (gpu only), db-2, free-3, each in
	// a build of its own with a pipeline naming it, and free-3's build has
	// a pending second job.
	mk := func(j *store.Job, more ...*store.Job) *store.Build {
		return newBuild(t, s, r, append([]*store.Job{j}, more...), func(b *store.Build) {
			b.Pipeline = []byte("# " + j.Name + "\n")
		})
	}
	builds := map[string]*store.Build{
		"free-1": mk(queued("free-1", 0)),
		"db-1":   mk(locked(queued("db-1", 1), "db")),
		"free-2": mk(queued("free-2", 2, "gpu")),
		"db-2":   mk(locked(queued("db-2", 3), "db")),
		"free-3": mk(queued("free-3", 4), &store.Job{Name: "later", Position: 1, Status: store.StatusPending, ExitCode: -1}),
	}
	var last int64
	lease := func(want string, labels ...string) *store.Job {
		t.Helper()
		b, j, err := s.Lease(ctx, "agent", labels, time.Hour)
		if want == "" {
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Lease(%q) = %v, want ErrNotFound", labels, err)
			}
			return nil
		}
		if err != nil {
			t.Fatalf("Lease(%q) = %v, want %s", labels, err, want)
		}
		if j.Name != want {
			t.Fatalf("Lease(%q) = %s, want %s", labels, j.Name, want)
		}
		wb := builds[want]
		if b.ID != wb.ID || string(b.Pipeline) != "# "+want+"\n" || len(b.Jobs) != len(wb.Jobs) || jobByID(b, j.ID) != j {
			t.Errorf("Lease() of %s = build %d, pipeline %q, %d jobs; want build %d with its pipeline and %d jobs, the leased one among them",
				want, b.ID, b.Pipeline, len(b.Jobs), wb.ID, len(wb.Jobs))
		}
		if j.Status != store.StatusRunning || j.LeaseToken <= last {
			t.Errorf("Lease() of %s = %s with token %d, want running with a token above %d", want, j.Status, j.LeaseToken, last)
		}
		if diff := cmp.Diff(j, jobByID(getBuild(t, s, b.ID), j.ID), opts...); diff != "" {
			t.Errorf("stored %s differs from the leased one (-leased +stored):\n%s", want, diff)
		}
		last = j.LeaseToken
		return j
	}
	lease("free-1", "linux")
	db1 := lease("db-1", "linux") // db is free: the job with locks is next in line
	lease("free-3", "linux")      // free-2 is for gpu; db-2 waits for db
	lease("", "linux")
	lease("free-2", "gpu", "linux")
	finish(t, s, builds["db-1"].ID, db1.ID, store.StatusSuccess)
	lease("db-2", "linux")
	lease("", "linux", "gpu")
}

// Many agents leasing jobs that share a lock never hold more units than
// it has.
func testLeaseLocksConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	if err := s.CreateLock(ctx, &store.Lock{Name: "pool", Capacity: 3}); err != nil {
		t.Fatal(err)
	}
	var jobs []*store.Job
	for i := range 20 {
		jobs = append(jobs, locked(queued(fmt.Sprintf("j%02d", i), i), "pool"))
	}
	newBuild(t, s, r, jobs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	leased := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, _, err := s.Lease(ctx, "agent", nil, time.Hour)
				if err == nil {
					mu.Lock()
					leased++
					mu.Unlock()
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Lease() = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if leased != 3 {
		t.Errorf("%d jobs leased at once on a lock of 3 units, want 3", leased)
	}
}

func testBuildsBlocked(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	pending := func(name string, pos int) *store.Job {
		return &store.Job{Name: name, Position: pos, Status: store.StatusPending, ExitCode: -1}
	}
	blocked := newBuild(t, s, r, []*store.Job{pending("a", 0), pending("b", 1)})
	newBuild(t, s, r, []*store.Job{queued("a", 0), pending("b", 1)})
	newBuild(t, s, r, []*store.Job{pending("a", 0)}, func(b *store.Build) { b.Status = store.StatusRunning })
	got, err := s.Builds(t.Context(), store.BuildFilter{Repo: "acme/a", Blocked: true})
	if err != nil {
		t.Fatalf("Builds(blocked) = %v", err)
	}
	if len(got) != 1 || got[0].ID != blocked.ID {
		var ids []int64
		for _, b := range got {
			ids = append(ids, b.ID)
		}
		t.Errorf("Builds(blocked) = %v, want [%d]: the queued build whose jobs all wait", ids, blocked.ID)
	}
}

func testBuildsUnfinished(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/a")
	other := newRepo(t, s, "acme/b")
	var want []int64
	for _, st := range []string{store.StatusQueued, store.StatusSuccess, store.StatusRunning, store.StatusFailure,
		store.StatusCancelled, store.StatusError, store.StatusSkipped, store.StatusQueued} {
		b := newBuild(t, s, r, []*store.Job{queued("a", 0)}, func(b *store.Build) { b.Status = st })
		if !store.Finished(st) {
			want = append([]int64{b.ID}, want...)
		}
	}
	newBuild(t, s, other, []*store.Job{queued("a", 0)})
	newBuild(t, s, r, []*store.Job{queued("a", 0)}, func(b *store.Build) { b.Branch = "other" })
	got, err := s.Builds(t.Context(), store.BuildFilter{Repo: "acme/a", Branch: "main", Unfinished: true})
	if err != nil {
		t.Fatalf("Builds(unfinished) = %v", err)
	}
	var ids []int64
	for _, b := range got {
		ids = append(ids, b.ID)
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("Builds(unfinished) = %v, want %v: the queued and running builds of the branch, newest first", ids, want)
	}
}
