package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/store"
)

func newUser(t *testing.T, s store.Store, name string, admin bool) *store.User {
	t.Helper()
	u := &store.User{Name: name, Admin: admin}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%s) = %v", name, err)
	}
	return u
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	bob := newUser(t, s, "bob", false)
	alice := newUser(t, s, "alice", true)
	if bob.ID == 0 || !near(bob.CreatedAt, before) {
		t.Errorf("CreateUser() set ID %d CreatedAt %v; want an ID and about %v", bob.ID, bob.CreatedAt, before)
	}
	if err := s.CreateUser(ctx, &store.User{Name: "bob"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(bob again) = %v, want ErrConflict", err)
	}
	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatalf("User(alice) = %v", err)
	}
	if diff := cmp.Diff(alice, got, opts...); diff != "" {
		t.Errorf("User(alice) (-want +got):\n%s", diff)
	}
	all, err := s.Users(ctx)
	if err != nil {
		t.Fatalf("Users() = %v", err)
	}
	if diff := cmp.Diff([]*store.User{alice, bob}, all, opts...); diff != "" {
		t.Errorf("Users() (-want +got):\n%s", diff)
	}
	if _, err := s.User(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(carol) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUser(carol) = %v, want ErrNotFound", err)
	}
}

func testUserTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	bob := newUser(t, s, "bob", false)
	expires := base.Add(30 * 24 * time.Hour)
	tok := &store.Token{Name: "laptop", Hash: []byte("bob's"), UserID: bob.ID, ExpiresAt: expires}
	other := &store.Token{Name: "ci", Hash: []byte("bob's ci"), UserID: bob.ID}
	for _, tk := range []*store.Token{tok, other} {
		if err := s.CreateToken(ctx, tk); err != nil {
			t.Fatalf("CreateToken(%s) = %v", tk.Name, err)
		}
	}
	got, err := s.TokenByHash(ctx, tok.Hash)
	if err != nil {
		t.Fatalf("TokenByHash() = %v", err)
	}
	want := *tok
	want.User = "bob"
	if diff := cmp.Diff(&want, got, opts...); diff != "" {
		t.Errorf("TokenByHash() (-want +got):\n%s", diff)
	}
	list, err := s.TokensOf(ctx, bob.ID)
	if err != nil || len(list) != 2 || list[0].Name != "laptop" || list[1].Name != "ci" {
		t.Errorf("TokensOf(bob) = %v, %v; want laptop, ci", list, err)
	}
	// A user token is as much an admin as its user is.
	admin := newUser(t, s, "root", true)
	rt := &store.Token{Name: "root", Hash: []byte("root's"), UserID: admin.ID}
	if err := s.CreateToken(ctx, rt); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TokenByHash(ctx, rt.Hash); err != nil || !got.Admin || got.User != "root" {
		t.Errorf("TokenByHash(admin user's token) = %+v, %v; want Admin, User root", got, err)
	}
	if revoked, err := s.RevokeToken(ctx, tok.ID); err != nil || revoked.User != "bob" || revoked.RevokedAt.IsZero() {
		t.Errorf("RevokeToken() = %+v, %v; want bob's token, revoked", revoked, err)
	}
	// Deleting a user takes their tokens with them.
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser(bob) = %v", err)
	}
	if _, err := s.TokenByHash(ctx, other.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenByHash(deleted user's token) = %v, want ErrNotFound", err)
	}
}

func testGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "alice", false)
	newUser(t, s, "bob", false)
	newUser(t, s, "carol", false)
	g, err := s.AddGroupMembers(ctx, "releasers", []string{"bob", "alice"})
	if err != nil {
		t.Fatalf("AddGroupMembers() = %v", err)
	}
	if g.Name != "releasers" || !cmp.Equal(g.Members, []string{"alice", "bob"}) {
		t.Errorf("AddGroupMembers() = %+v; want releasers with alice, bob", g)
	}
	// Adding again, and a newcomer, is fine; an unknown user changes nothing.
	if g, err = s.AddGroupMembers(ctx, "releasers", []string{"alice", "carol"}); err != nil || len(g.Members) != 3 {
		t.Errorf("AddGroupMembers(alice, carol) = %+v, %v; want 3 members", g, err)
	}
	if _, err := s.AddGroupMembers(ctx, "releasers", []string{"dave"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMembers(dave) = %v, want ErrNotFound", err)
	}
	if _, err := s.AddGroupMembers(ctx, "ops", []string{"dave"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddGroupMembers(ops, dave) = %v, want ErrNotFound", err)
	}
	if _, err := s.AddGroupMembers(ctx, "empty", nil); err != nil {
		t.Fatalf("AddGroupMembers(empty) = %v", err)
	}
	if g, err = s.RemoveGroupMembers(ctx, "releasers", []string{"carol"}); err != nil || !cmp.Equal(g.Members, []string{"alice", "bob"}) {
		t.Errorf("RemoveGroupMembers(carol) = %+v, %v; want alice, bob", g, err)
	}
	if _, err := s.RemoveGroupMembers(ctx, "releasers", []string{"carol"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RemoveGroupMembers(carol again) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	groups, err := s.Groups(ctx)
	if err != nil {
		t.Fatalf("Groups() = %v", err)
	}
	var got [][]string
	for _, g := range groups {
		got = append(got, append([]string{g.Name}, g.Members...))
	}
	want := [][]string{{"empty"}, {"releasers", "alice"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Groups() after bob left (-want +got):\n%s", diff)
	}
	if err := s.DeleteGroup(ctx, "empty"); err != nil {
		t.Fatalf("DeleteGroup() = %v", err)
	}
	if err := s.DeleteGroup(ctx, "empty"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteGroup(again) = %v, want ErrNotFound", err)
	}
}

func testGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	newRepo(t, s, "acme/web")
	alice := newUser(t, s, "alice", false)
	bob := newUser(t, s, "bob", false)
	if _, err := s.AddGroupMembers(ctx, "devs", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	grants := []*store.Grant{
		{Repo: "acme/web", User: "alice", Role: store.RoleViewer},
		{Repo: "acme/web", Group: "devs", Role: store.RoleDeveloper},
		{Repo: store.AllRepos, User: "bob", Role: store.RoleViewer},
		{Repo: "acme/web", User: "alice", Role: store.RoleMaintainer}, // replaces viewer
	}
	for _, g := range grants {
		if err := s.SetGrant(ctx, g); err != nil {
			t.Fatalf("SetGrant(%+v) = %v", g, err)
		}
	}
	for _, bad := range []*store.Grant{
		{Repo: "acme/web", User: "dave", Role: store.RoleViewer},
		{Repo: "acme/web", Group: "nobody", Role: store.RoleViewer},
	} {
		if err := s.SetGrant(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetGrant(%+v) = %v, want ErrNotFound", bad, err)
		}
	}
	if err := s.SetGrant(ctx, &store.Grant{Repo: "acme/web", User: "bob", Group: "devs", Role: store.RoleViewer}); err == nil {
		t.Errorf("SetGrant(user and group) = nil, want an error")
	}
	got, err := s.Grants(ctx, "acme/web")
	if err != nil {
		t.Fatalf("Grants(acme/web) = %v", err)
	}
	want := []*store.Grant{grants[3], grants[1]}
	if diff := cmp.Diff(want, got, opts...); diff != "" {
		t.Errorf("Grants(acme/web) (-want +got):\n%s", diff)
	}
	if all, err := s.Grants(ctx, ""); err != nil || len(all) != 3 {
		t.Errorf("Grants(\"\") = %d grants, %v; want 3", len(all), err)
	}
	of, err := s.GrantsOf(ctx, alice.ID)
	if err != nil {
		t.Fatalf("GrantsOf(alice) = %v", err)
	}
	if diff := cmp.Diff(want, of, opts...); diff != "" {
		t.Errorf("GrantsOf(alice): her own and her group's (-want +got):\n%s", diff)
	}
	if of, err := s.GrantsOf(ctx, bob.ID); err != nil || len(of) != 1 || of[0].Repo != store.AllRepos {
		t.Errorf("GrantsOf(bob) = %v, %v; want viewer on *", of, err)
	}
	if err := s.DeleteGrant(ctx, &store.Grant{Repo: "acme/web", Group: "devs"}); err != nil {
		t.Fatalf("DeleteGrant(devs) = %v", err)
	}
	if err := s.DeleteGrant(ctx, &store.Grant{Repo: "acme/web", Group: "devs"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteGrant(devs again) = %v, want ErrNotFound", err)
	}
	// A repo's grants go with it: a new repo of the same name starts bare.
	if err := s.DeleteRepo(ctx, "acme/web"); err != nil {
		t.Fatal(err)
	}
	if of, err := s.GrantsOf(ctx, alice.ID); err != nil || len(of) != 0 {
		t.Errorf("GrantsOf(alice) after the repo went = %v, %v; want none", of, err)
	}
	// And a user's go with the user.
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if all, err := s.Grants(ctx, ""); err != nil || len(all) != 0 {
		t.Errorf("Grants() after bob went = %v, %v; want none", all, err)
	}
}
