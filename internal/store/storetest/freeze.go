package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/store"
)

// freezeTests are the tests of the Freezes part of the store.
var freezeTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Freezes", testFreezes},
}

func testFreezes(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newRepo(t, s, "acme/a")
	b := newRepo(t, s, "acme/b")
	at := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	before := time.Now()
	now := &store.Freeze{RepoID: a.ID, Environment: "production", Since: at, Until: at.Add(64 * time.Hour), Reason: "weekend", CreatedBy: "root"}
	later := &store.Freeze{RepoID: a.ID, Environment: "production", Since: at.Add(24 * 7 * time.Hour), Until: at.Add(24 * 8 * time.Hour), Reason: "audit", CreatedBy: "root"}
	other := &store.Freeze{RepoID: b.ID, Environment: "staging", Since: at.Add(-time.Hour), Until: at.Add(time.Hour), Reason: "migration", CreatedBy: "ann"}
	for _, f := range []*store.Freeze{later, now, other} {
		if err := s.CreateFreeze(ctx, f); err != nil {
			t.Fatalf("CreateFreeze(%s) = %v", f.Reason, err)
		}
		if f.ID == 0 || f.Repo == "" || !near(f.CreatedAt, before) {
			t.Errorf("CreateFreeze() set ID %d, Repo %q, CreatedAt %v; want them set", f.ID, f.Repo, f.CreatedAt)
		}
	}
	if now.Repo != "acme/a" || !now.Since.Equal(at) || !now.Until.Equal(at.Add(64*time.Hour)) {
		t.Errorf("CreateFreeze() = %+v, want acme/a's, the times as given", now)
	}
	if err := s.CreateFreeze(ctx, &store.Freeze{RepoID: a.ID + b.ID + 100, Environment: "x", Since: at, Until: at}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateFreeze(no such repo) = %v, want ErrNotFound", err)
	}
	list := func(f store.FreezeFilter) []*store.Freeze {
		t.Helper()
		got, err := s.ListFreezes(ctx, f)
		if err != nil {
			t.Fatalf("ListFreezes(%+v) = %v", f, err)
		}
		return got
	}
	for _, c := range []struct {
		f    store.FreezeFilter
		want []*store.Freeze
	}{
		{store.FreezeFilter{}, []*store.Freeze{other, now, later}},
		{store.FreezeFilter{Repo: "acme/a"}, []*store.Freeze{now, later}},
		{store.FreezeFilter{Repo: "acme/a", Environment: "staging"}, nil},
		{store.FreezeFilter{Repo: "acme/b", Environment: "staging"}, []*store.Freeze{other}},
		{store.FreezeFilter{EndsAfter: at.Add(65 * time.Hour)}, []*store.Freeze{later}},
		{store.FreezeFilter{EndsAfter: at.Add(time.Hour)}, []*store.Freeze{now, later}}, // other ends at that very time
		{store.FreezeFilter{Repo: "acme/none"}, nil},
		{store.FreezeFilter{ID: other.ID}, []*store.Freeze{other}},
	} {
		if diff := cmp.Diff(c.want, list(c.f), opts...); diff != "" {
			t.Errorf("ListFreezes(%+v) (-want +got):\n%s", c.f, diff)
		}
	}
	gone, err := s.DeleteFreeze(ctx, now.ID)
	if err != nil || gone.Reason != "weekend" || gone.Repo != "acme/a" {
		t.Errorf("DeleteFreeze() = %+v, %v; want the weekend freeze", gone, err)
	}
	if _, err := s.DeleteFreeze(ctx, now.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteFreeze(again) = %v, want ErrNotFound", err)
	}
	if diff := cmp.Diff([]*store.Freeze{later}, list(store.FreezeFilter{Repo: "acme/a"}), opts...); diff != "" {
		t.Errorf("ListFreezes() after the delete (-want +got):\n%s", diff)
	}
}
