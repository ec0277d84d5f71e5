package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gantry-ci/gantry/internal/store"
)

// releaseTests are the tests of the Releases part of the store.
var releaseTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Artifacts", testArtifacts},
	{"ArtifactsStale", testArtifactsStale},
	{"ExpireArtifacts", testExpireArtifacts},
	{"Releases", testReleases},
	{"ReleaseConflict", testReleaseConflict},
	{"Deployments", testDeployments},
	{"StartDeploymentOneAtATime", testStartDeploymentOneAtATime},
	{"StartDeploymentConcurrent", testStartDeploymentConcurrent},
	{"DeleteRepoWithReleases", testDeleteRepoWithReleases},
	{"ReleaseIssues", testReleaseIssues},
	{"ForgeDeployments", testForgeDeployments},
}

func sha(n int) string { return fmt.Sprintf("%064x", n) }

// leased creates a build of r with one job per name, all queued, and
// leases every job; it returns the build and its jobs by name.
func leased(t *testing.T, s store.Store, r *store.Repo, names ...string) (*store.Build, map[string]*store.Job) {
	t.Helper()
	var jobs []*store.Job
	for i, n := range names {
		jobs = append(jobs, queued(n, i, "builds-"+r.Name))
	}
	b := newBuild(t, s, r, jobs)
	out := map[string]*store.Job{}
	for range names {
		_, j, err := s.Lease(t.Context(), "agent", []string{"builds-" + r.Name}, time.Hour)
		if err != nil {
			t.Fatalf("Lease() = %v", err)
		}
		out[j.Name] = j
	}
	return b, out
}

func addArtifact(t *testing.T, s store.Store, b *store.Build, j *store.Job, path string, n int) *store.Artifact {
	t.Helper()
	a := &store.Artifact{BuildID: b.ID, JobID: j.ID, Path: path, Size: int64(n * 10), Mode: 0o644 | uint32(n%2)*0o111, SHA256: sha(n)}
	if err := s.AddArtifact(t.Context(), a, j.LeaseToken); err != nil {
		t.Fatalf("AddArtifact(%s) = %v", path, err)
	}
	return a
}

func testArtifacts(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b, jobs := leased(t, s, r, "build", "docs")
	before := time.Now()
	app := addArtifact(t, s, b, jobs["build"], "dist/app", 1)
	if app.ID == 0 || app.Job != "build" || !near(app.CreatedAt, before) {
		t.Errorf("AddArtifact() set ID %d, Job %q, CreatedAt %v; want an ID, build, about %v", app.ID, app.Job, app.CreatedAt, before)
	}
	manual := addArtifact(t, s, b, jobs["docs"], "dist/manual.pdf", 2)
	// The same job again at the same path (a second attempt) replaces it.
	again := addArtifact(t, s, b, jobs["build"], "dist/app", 3)
	if again.ID != app.ID {
		t.Errorf("AddArtifact(same job, same path) made artifact %d, want %d replaced", again.ID, app.ID)
	}
	// Another job at a path taken is refused, and changes nothing.
	clash := &store.Artifact{BuildID: b.ID, JobID: jobs["docs"].ID, Path: "dist/app", Size: 1, SHA256: sha(4)}
	if err := s.AddArtifact(ctx, clash, jobs["docs"].LeaseToken); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AddArtifact(another job's path) = %v, want ErrConflict", err)
	}
	got, err := s.Artifacts(ctx, b.ID)
	if err != nil {
		t.Fatalf("Artifacts() = %v", err)
	}
	if diff := cmp.Diff([]*store.Artifact{again, manual}, got, opts...); diff != "" {
		t.Errorf("Artifacts() (-want +got):\n%s", diff)
	}
	if got, err := s.Artifacts(ctx, b.ID+1000); err != nil || len(got) != 0 {
		t.Errorf("Artifacts(no such build) = %v, %v; want none", got, err)
	}
	for n, want := range map[int]bool{3: true, 2: true, 1: false, 9: false} {
		if got, err := s.ArtifactInUse(ctx, sha(n)); err != nil || got != want {
			t.Errorf("ArtifactInUse(%s) = %v, %v; want %v", sha(n), got, err, want)
		}
	}
}

func testArtifactsStale(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b, jobs := leased(t, s, r, "build")
	j := jobs["build"]
	for name, a := range map[string]struct {
		art   *store.Artifact
		token int64
	}{
		"wrong token": {&store.Artifact{BuildID: b.ID, JobID: j.ID, Path: "a", SHA256: sha(1)}, j.LeaseToken + 1},
		"wrong build": {&store.Artifact{BuildID: b.ID + 1, JobID: j.ID, Path: "a", SHA256: sha(1)}, j.LeaseToken},
		"no such job": {&store.Artifact{BuildID: b.ID, JobID: j.ID + 1000, Path: "a", SHA256: sha(1)}, j.LeaseToken},
	} {
		if err := s.AddArtifact(ctx, a.art, a.token); !errors.Is(err, store.ErrStaleLease) {
			t.Errorf("AddArtifact(%s) = %v, want ErrStaleLease", name, err)
		}
	}
	finish(t, s, b.ID, j.ID, store.StatusCancelled)
	late := &store.Artifact{BuildID: b.ID, JobID: j.ID, Path: "a", SHA256: sha(1)}
	if err := s.AddArtifact(ctx, late, j.LeaseToken); !errors.Is(err, store.ErrStaleLease) {
		t.Errorf("AddArtifact() after cancel = %v, want ErrStaleLease", err)
	}
	if got, err := s.Artifacts(ctx, b.ID); err != nil || len(got) != 0 {
		t.Errorf("Artifacts() after refused adds = %v, %v; want none", got, err)
	}
}

// green finishes every job of b as success, and b with them.
func green(t *testing.T, s store.Store, b *store.Build) {
	t.Helper()
	err := s.Update(t.Context(), b.ID, func(b *store.Build) error {
		for _, j := range b.Jobs {
			j.Status, j.FinishedAt, j.LeaseExpires = store.StatusSuccess, time.Now(), time.Time{}
		}
		b.Status, b.FinishedAt = store.StatusSuccess, time.Now()
		return nil
	})
	if err != nil {
		t.Fatalf("Update(%d) = %v", b.ID, err)
	}
}

func newRelease(t *testing.T, s store.Store, r *store.Repo, b *store.Build, version string, envs []string, deploys ...*store.Deployment) *store.Release {
	t.Helper()
	rel := &store.Release{RepoID: r.ID, Version: version, BuildID: b.ID, Commit: b.Commit, Branch: b.Branch,
		Authors: []string{"Ann <ann@example.com>", "Bob <bob@example.com>"}}
	if err := s.CreateRelease(t.Context(), rel, envs, deploys); err != nil {
		t.Fatalf("CreateRelease(%s) = %v", version, err)
	}
	return rel
}

func testExpireArtifacts(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	kept, jobs := leased(t, s, r, "build")
	released := addArtifact(t, s, kept, jobs["build"], "dist/app", 1)
	green(t, s, kept)
	newRelease(t, s, r, kept, "main-1", nil)
	doomed, jobs := leased(t, s, r, "build")
	addArtifact(t, s, doomed, jobs["build"], "dist/app", 2)
	// The same bytes as the released artifact, in a build without release.
	addArtifact(t, s, doomed, jobs["build"], "dist/copy", 1)

	if n, err := s.ExpireArtifacts(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("ExpireArtifacts(an hour ago) = %d, %v; want 0: none is that old", n, err)
	}
	n, err := s.ExpireArtifacts(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("ExpireArtifacts(in an hour) = %d, %v; want the 2 no release refers to", n, err)
	}
	if got, err := s.Artifacts(ctx, doomed.ID); err != nil || len(got) != 0 {
		t.Errorf("Artifacts(build without release) after expiry = %v, %v; want none", got, err)
	}
	got, err := s.Artifacts(ctx, kept.ID)
	if err != nil {
		t.Fatalf("Artifacts() = %v", err)
	}
	if diff := cmp.Diff([]*store.Artifact{released}, got, opts...); diff != "" {
		t.Errorf("Artifacts(released build) after expiry (-want +got):\n%s", diff)
	}
	if rel, err := s.Release(ctx, "acme/a", "main-1"); err != nil || len(rel.Artifacts) != 1 {
		t.Errorf("Release() after expiry = %+v, %v; want its one artifact", rel, err)
	}
	for n, want := range map[int]bool{1: true, 2: false} {
		if got, err := s.ArtifactInUse(ctx, sha(n)); err != nil || got != want {
			t.Errorf("ArtifactInUse(%d) after expiry = %v, %v; want %v", n, got, err, want)
		}
	}
}

func testReleases(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	other := newRepo(t, s, "acme/other")
	b1, jobs := leased(t, s, r, "build", "docs")
	bin := addArtifact(t, s, b1, jobs["build"], "dist/app", 1)
	doc := addArtifact(t, s, b1, jobs["docs"], "dist/app.pdf", 2)
	green(t, s, b1)
	before := time.Now()
	rel1 := newRelease(t, s, r, b1, "main-1", []string{"staging", "production"})
	if rel1.ID == 0 || rel1.Repo != "acme/a" || rel1.BuildNumber != b1.Number || !near(rel1.CreatedAt, before) {
		t.Errorf("CreateRelease() set ID %d, Repo %q, BuildNumber %d, CreatedAt %v", rel1.ID, rel1.Repo, rel1.BuildNumber, rel1.CreatedAt)
	}
	if diff := cmp.Diff([]*store.Artifact{bin, doc}, rel1.Artifacts, opts...); diff != "" {
		t.Errorf("CreateRelease() artifacts (-want +got):\n%s", diff)
	}
	b2 := newBuild(t, s, r, nil, func(b *store.Build) { b.Branch, b.Tag = "", "v1.0.0" })
	rel2 := newRelease(t, s, r, b2, "v1.0.0", []string{"production", "qa"})
	b3 := newBuild(t, s, r, nil, func(b *store.Build) { b.Branch = "release/2" })
	rel3 := newRelease(t, s, r, b3, "release/2-3", nil)
	ob := newBuild(t, s, other, nil)
	newRelease(t, s, other, ob, "main-1", []string{"staging"})

	for _, want := range []*store.Release{rel1, rel2, rel3} {
		got, err := s.Release(ctx, "acme/a", want.Version)
		if err != nil {
			t.Fatalf("Release(%s) = %v", want.Version, err)
		}
		if diff := cmp.Diff(want, got, opts...); diff != "" {
			t.Errorf("Release(%s) (-want +got):\n%s", want.Version, diff)
		}
		if got, err := s.ReleaseByID(ctx, want.ID); err != nil || got.Version != want.Version {
			t.Errorf("ReleaseByID(%d) = %+v, %v", want.ID, got, err)
		}
		if got, err := s.ReleaseOfBuild(ctx, want.BuildID); err != nil || got.ID != want.ID {
			t.Errorf("ReleaseOfBuild(%d) = %+v, %v", want.BuildID, got, err)
		}
	}
	if _, err := s.Release(ctx, "acme/a", "main-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Release(main-9) = %v, want ErrNotFound", err)
	}
	if _, err := s.ReleaseOfBuild(ctx, ob.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReleaseOfBuild(no such build) = %v, want ErrNotFound", err)
	}
	list, err := s.ListReleases(ctx, store.ReleaseFilter{Repo: "acme/a"})
	if err != nil {
		t.Fatalf("ListReleases() = %v", err)
	}
	if diff := cmp.Diff([]*store.Release{rel3, rel2, rel1}, list, opts...); diff != "" {
		t.Errorf("ListReleases(acme/a) newest first (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		f    store.ReleaseFilter
		want []string
	}{
		{store.ReleaseFilter{Repo: "acme/a", Branch: "main"}, []string{"main-1"}},
		{store.ReleaseFilter{Repo: "acme/a", Limit: 2}, []string{"release/2-3", "v1.0.0"}},
		{store.ReleaseFilter{}, []string{"main-1", "release/2-3", "v1.0.0", "main-1"}},
		{store.ReleaseFilter{Repo: "acme/none"}, nil},
	} {
		got, err := s.ListReleases(ctx, c.f)
		if err != nil {
			t.Fatalf("ListReleases(%+v) = %v", c.f, err)
		}
		var versions []string
		for _, r := range got {
			versions = append(versions, r.Version)
		}
		if diff := cmp.Diff(c.want, versions, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ListReleases(%+v) (-want +got):\n%s", c.f, diff)
		}
	}
	envs, err := s.Environments(ctx, "acme/a")
	if diff := cmp.Diff([]string{"staging", "production", "qa"}, envs); err != nil || diff != "" {
		t.Errorf("Environments(acme/a) = %v (-want +got):\n%s", err, diff)
	}
	if _, err := s.Environments(ctx, "acme/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Environments(no such repo) = %v, want ErrNotFound", err)
	}
	// A release of another repo's build is refused.
	stray := &store.Release{RepoID: r.ID, Version: "stray", BuildID: ob.ID}
	if err := s.CreateRelease(ctx, stray, nil, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateRelease(another repo's build) = %v, want ErrNotFound", err)
	}
}

func testReleaseConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b1 := newBuild(t, s, r, nil)
	rel := newRelease(t, s, r, b1, "v1", []string{"staging"})
	b2 := newBuild(t, s, r, nil)
	for name, dup := range map[string]*store.Release{
		"same version": {RepoID: r.ID, Version: "v1", BuildID: b2.ID},
		"same build":   {RepoID: r.ID, Version: "v2", BuildID: b1.ID},
	} {
		d := &store.Deployment{Environment: "qa", Kind: "auto", State: store.DeployPending}
		if err := s.CreateRelease(ctx, dup, []string{"qa"}, []*store.Deployment{d}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateRelease(%s) = %v, want ErrConflict", name, err)
		}
	}
	// Nothing of the refused releases was stored: no environment, no
	// deployment.
	if envs, err := s.Environments(ctx, "acme/a"); err != nil || !cmp.Equal(envs, []string{"staging"}) {
		t.Errorf("Environments() after refused releases = %v, %v; want [staging]", envs, err)
	}
	if ds, err := s.Deployments(ctx, store.DeploymentFilter{Repo: "acme/a"}); err != nil || len(ds) != 0 {
		t.Errorf("Deployments() after refused releases = %v, %v; want none", ds, err)
	}
	if list, err := s.ListReleases(ctx, store.ReleaseFilter{}); err != nil || len(list) != 1 || list[0].ID != rel.ID {
		t.Errorf("ListReleases() = %v, %v; want only v1", list, err)
	}
}

// deployBuild is the build that runs a deployment of rel to env.
func deployBuild(r *store.Repo, rel *store.Release, env string) *store.Build {
	return &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "deploy", Branch: rel.Branch, Commit: rel.Commit,
		Environment: env, Release: rel.Version, Pipeline: []byte("environments: {}\n"),
		Jobs: []*store.Job{{Name: "deploy:" + env, Status: store.StatusQueued, ExitCode: -1, QueuedAt: at(0)}}}
}

func testDeployments(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	rel1 := newRelease(t, s, r, newBuild(t, s, r, nil), "main-1", []string{"staging"})
	auto := &store.Deployment{Environment: "staging", Kind: "auto", State: store.DeployPending}
	rel2 := newRelease(t, s, r, newBuild(t, s, r, nil), "main-2", []string{"staging"}, auto)
	if auto.ID == 0 || auto.ReleaseID != rel2.ID || auto.RepoID != r.ID || auto.Version != "main-2" {
		t.Errorf("CreateRelease() deployment = %+v, want an ID, release main-2 of acme/a", auto)
	}
	before := time.Now()
	manual := &store.Deployment{RepoID: r.ID, Environment: "production", ReleaseID: rel1.ID, Kind: "promote",
		RequestedBy: "ann", State: store.DeployPending}
	if err := s.CreateDeployment(ctx, manual); err != nil {
		t.Fatalf("CreateDeployment() = %v", err)
	}
	want := &store.Deployment{ID: manual.ID, RepoID: r.ID, Repo: "acme/a", Environment: "production", ReleaseID: rel1.ID,
		Version: "main-1", Kind: "promote", RequestedBy: "ann", State: store.DeployPending, CreatedAt: manual.CreatedAt}
	if diff := cmp.Diff(want, manual, opts...); diff != "" || !near(manual.CreatedAt, before) {
		t.Errorf("CreateDeployment() (-want +got):\n%s(created at %v)", diff, manual.CreatedAt)
	}
	if envs, _ := s.Environments(ctx, "acme/a"); !cmp.Equal(envs, []string{"staging", "production"}) {
		t.Errorf("Environments() = %v, want the new one made", envs)
	}
	other := newRepo(t, s, "acme/other")
	if err := s.CreateDeployment(ctx, &store.Deployment{RepoID: other.ID, Environment: "x", ReleaseID: rel1.ID,
		Kind: "deploy", State: store.DeployPending}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateDeployment(another repo's release) = %v, want ErrNotFound", err)
	}
	if err := s.CreateDeployment(ctx, &store.Deployment{RepoID: r.ID, Environment: "x", ReleaseID: rel2.ID + 100,
		Kind: "deploy", State: store.DeployPending}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateDeployment(no such release) = %v, want ErrNotFound", err)
	}

	// Start: the build is stored with its environment and release.
	b := deployBuild(r, rel2, "staging")
	if err := s.StartDeployment(ctx, auto.ID, b); err != nil {
		t.Fatalf("StartDeployment() = %v", err)
	}
	if b.ID == 0 || b.Number == 0 || b.Jobs[0].ID == 0 {
		t.Errorf("StartDeployment() left build %d #%d, job %d; want them set", b.ID, b.Number, b.Jobs[0].ID)
	}
	stored, err := s.Build(ctx, b.ID)
	if err != nil || stored.Environment != "staging" || stored.Release != "main-2" || stored.Event != "deploy" {
		t.Errorf("Build(deploy build) = %+v, %v; want environment staging, release main-2", stored, err)
	}
	if listed, _ := s.Builds(ctx, store.BuildFilter{Repo: "acme/a"}); len(listed) == 0 || listed[0].Environment != "staging" {
		t.Errorf("Builds() newest = %+v, want the deploy build with its environment", listed)
	}
	got, err := s.DeploymentOfBuild(ctx, b.ID)
	if err != nil || got.ID != auto.ID || got.State != store.DeployRunning || got.BuildID != b.ID || !near(got.StartedAt, before) {
		t.Errorf("DeploymentOfBuild() = %+v, %v; want deployment %d running with build %d", got, err, auto.ID, b.ID)
	}
	if err := s.StartDeployment(ctx, auto.ID, deployBuild(r, rel2, "staging")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("StartDeployment(running) = %v, want ErrConflict", err)
	}
	if _, err := s.DeploymentOfBuild(ctx, b.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeploymentOfBuild(no such build) = %v, want ErrNotFound", err)
	}

	// End, once.
	ended, err := s.EndDeployment(ctx, auto.ID, store.DeployRunning, store.DeploySucceeded, "")
	if err != nil || ended.State != store.DeploySucceeded || !near(ended.FinishedAt, time.Now()) {
		t.Errorf("EndDeployment() = %+v, %v; want succeeded, finished now", ended, err)
	}
	if _, err := s.EndDeployment(ctx, auto.ID, store.DeployRunning, store.DeployFailed, "late"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("EndDeployment(ended) = %v, want ErrConflict", err)
	}
	if _, err := s.EndDeployment(ctx, manual.ID, store.DeployPending, store.DeployRunning, ""); err == nil {
		t.Errorf("EndDeployment(to running) = nil, want an error: not a final state")
	}
	if _, err := s.EndDeployment(ctx, 987654, store.DeployPending, store.DeployFailed, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EndDeployment(no such deployment) = %v, want ErrNotFound", err)
	}
	if _, err := s.EndDeployment(ctx, manual.ID, store.DeployRunning, store.DeployFailed, "it is pending"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("EndDeployment(from running, but pending) = %v, want ErrConflict", err)
	}
	refused, err := s.EndDeployment(ctx, manual.ID, store.DeployPending, store.DeployFailed, "refused: reasons")
	if err != nil || refused.State != store.DeployFailed || refused.Reason != "refused: reasons" || !refused.StartedAt.IsZero() {
		t.Errorf("EndDeployment(pending) = %+v, %v; want failed with the reason, never started", refused, err)
	}
	if err := s.StartDeployment(ctx, manual.ID, deployBuild(r, rel1, "production")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("StartDeployment(ended) = %v, want ErrConflict", err)
	}

	third := &store.Deployment{RepoID: r.ID, Environment: "staging", ReleaseID: rel1.ID, Kind: "rollback",
		RequestedBy: "bob", RollbackOf: rel2.ID, State: store.DeployPending}
	if err := s.CreateDeployment(ctx, third); err != nil {
		t.Fatalf("CreateDeployment() = %v", err)
	}
	if third.RollbackOf != rel2.ID {
		t.Errorf("CreateDeployment() RollbackOf = %d, want %d", third.RollbackOf, rel2.ID)
	}
	for _, c := range []struct {
		f    store.DeploymentFilter
		want []int64
	}{
		{store.DeploymentFilter{Repo: "acme/a"}, []int64{third.ID, manual.ID, auto.ID}},
		{store.DeploymentFilter{Repo: "acme/a", Environment: "staging"}, []int64{third.ID, auto.ID}},
		{store.DeploymentFilter{Repo: "acme/a", ReleaseID: rel1.ID}, []int64{third.ID, manual.ID}},
		{store.DeploymentFilter{States: []string{store.DeployPending, store.DeploySucceeded}}, []int64{third.ID, auto.ID}},
		{store.DeploymentFilter{Repo: "acme/a", Limit: 1}, []int64{third.ID}},
		{store.DeploymentFilter{Repo: "acme/other"}, nil},
	} {
		ds, err := s.Deployments(ctx, c.f)
		if err != nil {
			t.Fatalf("Deployments(%+v) = %v", c.f, err)
		}
		var ids []int64
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		if diff := cmp.Diff(c.want, ids, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Deployments(%+v) (-want +got):\n%s", c.f, diff)
		}
	}
	if got, err := s.Deployment(ctx, third.ID); err != nil || !cmp.Equal(got, third, opts...) {
		t.Errorf("Deployment(%d) = %+v, %v; want %+v", third.ID, got, err, third)
	}
}

// testStartDeploymentOneAtATime: while a deployment runs in an
// environment, no other starts there; others start elsewhere; once it
// ended, the next may start.
func testStartDeploymentOneAtATime(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	rel := newRelease(t, s, r, newBuild(t, s, r, nil), "main-1", nil)
	pending := func(env string) *store.Deployment {
		d := &store.Deployment{RepoID: r.ID, Environment: env, ReleaseID: rel.ID, Kind: "deploy", State: store.DeployPending}
		if err := s.CreateDeployment(ctx, d); err != nil {
			t.Fatalf("CreateDeployment() = %v", err)
		}
		return d
	}
	first, second, elsewhere := pending("staging"), pending("staging"), pending("qa")
	if err := s.StartDeployment(ctx, first.ID, deployBuild(r, rel, "staging")); err != nil {
		t.Fatalf("StartDeployment(first) = %v", err)
	}
	builds, _ := s.Builds(ctx, store.BuildFilter{Repo: "acme/a"})
	b := deployBuild(r, rel, "staging")
	if err := s.StartDeployment(ctx, second.ID, b); !errors.Is(err, store.ErrConflict) {
		t.Errorf("StartDeployment(second, first running) = %v, want ErrConflict", err)
	}
	if b.ID != 0 {
		t.Errorf("refused StartDeployment set build ID %d", b.ID)
	}
	if after, _ := s.Builds(ctx, store.BuildFilter{Repo: "acme/a"}); len(after) != len(builds) {
		t.Errorf("refused StartDeployment stored a build: %d builds, want %d", len(after), len(builds))
	}
	if d, _ := s.Deployment(ctx, second.ID); d.State != store.DeployPending || d.BuildID != 0 {
		t.Errorf("refused deployment = %s with build %d, want pending without build", d.State, d.BuildID)
	}
	if err := s.StartDeployment(ctx, elsewhere.ID, deployBuild(r, rel, "qa")); err != nil {
		t.Errorf("StartDeployment(another environment) = %v", err)
	}
	if _, err := s.EndDeployment(ctx, first.ID, store.DeployRunning, store.DeployFailed, "exit code 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartDeployment(ctx, second.ID, deployBuild(r, rel, "staging")); err != nil {
		t.Errorf("StartDeployment(second, first ended) = %v", err)
	}
	if err := s.StartDeployment(ctx, 987654, deployBuild(r, rel, "staging")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("StartDeployment(no such deployment) = %v, want ErrNotFound", err)
	}
}

// testStartDeploymentConcurrent: of many pending deployments of one
// environment started at once, exactly one starts.
func testStartDeploymentConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	rel := newRelease(t, s, r, newBuild(t, s, r, nil), "main-1", nil)
	const n = 8
	var ds []*store.Deployment
	for range n {
		d := &store.Deployment{RepoID: r.ID, Environment: "staging", ReleaseID: rel.ID, Kind: "deploy", State: store.DeployPending}
		if err := s.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.StartDeployment(ctx, d.ID, deployBuild(r, rel, "staging"))
		}()
	}
	wg.Wait()
	started := 0
	for i, err := range errs {
		switch {
		case err == nil:
			started++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("StartDeployment(%d) = %v, want nil or ErrConflict", i, err)
		}
	}
	running, err := s.Deployments(ctx, store.DeploymentFilter{States: []string{store.DeployRunning}})
	if started != 1 || err != nil || len(running) != 1 {
		t.Errorf("%d of %d concurrent starts succeeded, %d running (%v); want exactly 1", started, n, len(running), err)
	}
}

func testDeleteRepoWithReleases(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/gone")
	b, jobs := leased(t, s, r, "build")
	addArtifact(t, s, b, jobs["build"], "dist/app", 1)
	green(t, s, b)
	d := &store.Deployment{Environment: "staging", Kind: "auto", State: store.DeployPending}
	rel := newRelease(t, s, r, b, "main-1", []string{"staging"}, d)
	if err := s.StartDeployment(ctx, d.ID, deployBuild(r, rel, "staging")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRepo(ctx, "acme/gone"); err != nil {
		t.Fatalf("DeleteRepo() with releases and deployments = %v", err)
	}
	if _, err := s.ReleaseByID(ctx, rel.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReleaseByID() after DeleteRepo = %v, want ErrNotFound", err)
	}
	if _, err := s.Deployment(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Deployment() after DeleteRepo = %v, want ErrNotFound", err)
	}
	if used, err := s.ArtifactInUse(ctx, sha(1)); err != nil || used {
		t.Errorf("ArtifactInUse() after DeleteRepo = %v, %v; want false", used, err)
	}
}

func testReleaseIssues(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	other := newRepo(t, s, "acme/other")
	mk := func(repo *store.Repo, version string, issues ...string) *store.Release {
		t.Helper()
		b := newBuild(t, s, repo, nil)
		rel := &store.Release{RepoID: repo.ID, Version: version, BuildID: b.ID, Commit: b.Commit, Branch: b.Branch, Issues: issues}
		if err := s.CreateRelease(ctx, rel, nil, nil); err != nil {
			t.Fatalf("CreateRelease(%s) = %v", version, err)
		}
		return rel
	}
	one := mk(r, "main-1", "OPS-7", "#12", "OPS-7")
	if !cmp.Equal(one.Issues, []string{"#12", "OPS-7"}) {
		t.Errorf("CreateRelease(issues OPS-7, #12, OPS-7) set Issues %q, want [#12 OPS-7]", one.Issues)
	}
	two := mk(r, "main-2", "OPS-8")
	three := mk(other, "main-1", "OPS-7")
	none := mk(r, "main-3")
	if got, err := s.Release(ctx, "acme/a", "main-1"); err != nil || !cmp.Equal(got.Issues, []string{"#12", "OPS-7"}) {
		t.Errorf("Release(main-1) = %+v, %v; want issues #12 and OPS-7", got, err)
	}
	if got, err := s.ReleaseByID(ctx, none.ID); err != nil || len(got.Issues) != 0 {
		t.Errorf("ReleaseByID(a release naming none) = %+v, %v; want no issues", got, err)
	}
	if list, err := s.ListReleases(ctx, store.ReleaseFilter{Repo: "acme/a"}); err != nil || len(list) != 3 || !cmp.Equal(list[1].Issues, two.Issues) {
		t.Errorf("ListReleases() = %v, %v; want 3, main-2 with OPS-8", list, err)
	}
	got, err := s.IssueReleases(ctx, "OPS-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, rel := range got {
		ids = append(ids, rel.ID)
	}
	if diff := cmp.Diff([]int64{three.ID, one.ID}, ids); diff != "" {
		t.Errorf("IssueReleases(OPS-7) (-want +got):\n%s", diff)
	}
	if len(got) == 2 && (got[0].Repo != "acme/other" || got[1].Version != "main-1" || !cmp.Equal(got[1].Issues, one.Issues)) {
		t.Errorf("IssueReleases(OPS-7) = %+v, %+v; want the releases with their repo and issues", got[0], got[1])
	}
	if got, err := s.IssueReleases(ctx, "OPS-7", 1); err != nil || len(got) != 1 || got[0].ID != three.ID {
		t.Errorf("IssueReleases(limit 1) = %v, %v; want the newest", got, err)
	}
	if got, err := s.IssueReleases(ctx, "NOPE-1", 0); err != nil || len(got) != 0 {
		t.Errorf("IssueReleases(unknown) = %v, %v; want none", got, err)
	}
	if err := s.DeleteRepo(ctx, "acme/other"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.IssueReleases(ctx, "OPS-7", 0); err != nil || len(got) != 1 || got[0].ID != one.ID {
		t.Errorf("IssueReleases(OPS-7) after acme/other is removed = %v, %v; want only main-1 of acme/a", got, err)
	}
}

func testForgeDeployments(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	b := newBuild(t, s, r, nil)
	d := &store.Deployment{Environment: "staging", Kind: "auto", State: store.DeployPending}
	newRelease(t, s, r, b, "main-1", []string{"staging"}, d)
	if _, err := s.ForgeDeployment(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ForgeDeployment(none recorded) = %v, want ErrNotFound", err)
	}
	if err := s.SetForgeDeployment(ctx, d.ID, 1234567890123); err != nil {
		t.Fatalf("SetForgeDeployment() = %v", err)
	}
	if err := s.SetForgeDeployment(ctx, d.ID, 42); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SetForgeDeployment(again) = %v, want ErrConflict", err)
	}
	if id, err := s.ForgeDeployment(ctx, d.ID); err != nil || id != 1234567890123 {
		t.Errorf("ForgeDeployment() = %d, %v; want the first ID, 1234567890123", id, err)
	}
	if err := s.SetForgeDeployment(ctx, 999999, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetForgeDeployment(no such deployment) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRepo(ctx, "acme/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForgeDeployment(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ForgeDeployment() after the repo is removed = %v, want ErrNotFound", err)
	}
}
