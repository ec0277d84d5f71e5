package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/store"
)

// decisionTests are the tests of the Decisions part of the store.
var decisionTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Decisions", testDecisions},
}

func testDecisions(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/a")
	rel1 := newRelease(t, s, r, newBuild(t, s, r, nil), "main-1", []string{"production"})
	rel2 := newRelease(t, s, r, newBuild(t, s, r, nil), "main-2", []string{"production"})
	d1 := &store.Deployment{RepoID: r.ID, Environment: "production", ReleaseID: rel1.ID, Kind: "promote", RequestedBy: "ann", State: store.DeployPending}
	d2 := &store.Deployment{RepoID: r.ID, Environment: "production", ReleaseID: rel2.ID, Kind: "promote", RequestedBy: "ann", State: store.DeployPending}
	for _, d := range []*store.Deployment{d1, d2} {
		if err := s.CreateDeployment(ctx, d); err != nil {
			t.Fatalf("CreateDeployment() = %v", err)
		}
	}
	if got, err := s.DecisionsOf(ctx, d1.ID); err != nil || len(got) != 0 {
		t.Errorf("DecisionsOf(no decision yet) = %v, %v; want none", got, err)
	}
	before := time.Now()
	bob := &store.Decision{DeploymentID: d1.ID, User: "bob", Verdict: store.VerdictApprove, Comment: "looks good"}
	cat := &store.Decision{DeploymentID: d1.ID, User: "cat", Verdict: store.VerdictApprove}
	root := &store.Decision{DeploymentID: d1.ID, User: "root", Verdict: store.VerdictOverrideFreeze, Comment: "hotfix"}
	for _, d := range []*store.Decision{bob, cat, root} {
		if err := s.AddDecision(ctx, d); err != nil {
			t.Fatalf("AddDecision(%s %s) = %v", d.User, d.Verdict, err)
		}
		if d.ID == 0 || !near(d.CreatedAt, before) {
			t.Errorf("AddDecision() set ID %d, CreatedAt %v; want an ID, about %v", d.ID, d.CreatedAt, before)
		}
	}
	// The same verdict twice by one user is refused; another verdict is not.
	if err := s.AddDecision(ctx, &store.Decision{DeploymentID: d1.ID, User: "bob", Verdict: store.VerdictApprove}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AddDecision(bob approves again) = %v, want ErrConflict", err)
	}
	if err := s.AddDecision(ctx, &store.Decision{DeploymentID: d1.ID + d2.ID + 1000, User: "bob", Verdict: store.VerdictApprove}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddDecision(no such deployment) = %v, want ErrNotFound", err)
	}
	got, err := s.DecisionsOf(ctx, d1.ID)
	if err != nil {
		t.Fatalf("DecisionsOf() = %v", err)
	}
	if diff := cmp.Diff([]*store.Decision{bob, cat, root}, got, opts...); diff != "" {
		t.Errorf("DecisionsOf() (-want +got):\n%s", diff)
	}
	// A decision is the deployment's: the other release has none.
	if got, err := s.DecisionsOf(ctx, d2.ID); err != nil || len(got) != 0 {
		t.Errorf("DecisionsOf(other deployment) = %v, %v; want none", got, err)
	}
	// Removing the repo takes its decisions with it.
	if err := s.DeleteRepo(ctx, "acme/a"); err != nil {
		t.Fatalf("DeleteRepo() = %v", err)
	}
	if got, err := s.DecisionsOf(ctx, d1.ID); err != nil || len(got) != 0 {
		t.Errorf("DecisionsOf(after DeleteRepo) = %v, %v; want none", got, err)
	}
}
