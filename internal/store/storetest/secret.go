package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
	"github.com/google/go-cmp/cmp"
)

// secretTests are the conformance tests of secrets and of the fork flag
// of builds.
var secretTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Secrets", testSecrets},
	{"SecretsUpdate", testSecretsUpdate},
	{"SecretsConcurrentSet", testSecretsConcurrentSet},
	{"DeleteSecret", testDeleteSecret},
	{"RekeySecret", testRekeySecret},
	{"BuildFromFork", testBuildFromFork},
}

func setSecret(t *testing.T, s store.Store, repo, name, env, keyID string, ct []byte) (*store.Secret, bool) {
	t.Helper()
	sec := &store.Secret{Repo: repo, Name: name, Environment: env, KeyID: keyID, Ciphertext: ct}
	created, err := s.SetSecret(t.Context(), sec)
	if err != nil {
		t.Fatalf("SetSecret(%s %s %q) = %v", repo, name, env, err)
	}
	return sec, created
}

func secretsOf(t *testing.T, s store.Store, repo string) []*store.Secret {
	t.Helper()
	out, err := s.Secrets(t.Context(), repo)
	if err != nil {
		t.Fatalf("Secrets(%s) = %v", repo, err)
	}
	return out
}

func testSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/web")
	other := newRepo(t, s, "acme/api")

	if _, err := s.SetSecret(ctx, &store.Secret{Repo: "acme/nope", Name: "X", KeyID: "k1", Ciphertext: []byte{1}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetSecret(missing repo) = %v, want ErrNotFound", err)
	}
	if _, err := s.Secrets(ctx, "acme/nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Secrets(missing repo) = %v, want ErrNotFound", err)
	}
	if got := secretsOf(t, s, r.Name); len(got) != 0 {
		t.Errorf("Secrets(repo without secrets) = %d secrets, want none", len(got))
	}

	before := time.Now()
	var want []*store.Secret
	// Set out of order: they come back by name, then environment ("" first).
	for _, in := range []struct{ name, env string }{{"TOKEN", "production"}, {"A_KEY", ""}, {"TOKEN", ""}, {"TOKEN", "staging"}} {
		sec, created := setSecret(t, s, r.Name, in.name, in.env, "key-1", []byte("ciphertext of "+in.name+"/"+in.env+"\x00\xff"))
		if !created || sec.ID <= 0 || sec.RepoID != r.ID || !near(sec.CreatedAt, before) || !sec.UpdatedAt.Equal(sec.CreatedAt) {
			t.Errorf("SetSecret(%s %q) = created %v, ID %d, repo %d, %v/%v; want created, an ID, repo %d, created = updated = now",
				in.name, in.env, created, sec.ID, sec.RepoID, sec.CreatedAt, sec.UpdatedAt, r.ID)
		}
		want = append(want, sec)
	}
	setSecret(t, s, other.Name, "TOKEN", "", "key-1", []byte("the other repo's"))
	want = []*store.Secret{want[1], want[2], want[0], want[3]}
	if diff := cmp.Diff(want, secretsOf(t, s, r.Name), opts...); diff != "" {
		t.Errorf("Secrets(%s) differ from what was set (-set +read):\n%s", r.Name, diff)
	}
	all, err := s.AllSecrets(ctx)
	if err != nil {
		t.Fatalf("AllSecrets() = %v", err)
	}
	var names []string
	for i, sec := range all {
		names = append(names, fmt.Sprintf("%s %s %q", sec.Repo, sec.Name, sec.Environment))
		if i > 0 && sec.ID <= all[i-1].ID {
			t.Errorf("AllSecrets() not by ID: %d after %d", sec.ID, all[i-1].ID)
		}
	}
	wantNames := []string{`acme/web TOKEN "production"`, `acme/web A_KEY ""`, `acme/web TOKEN ""`, `acme/web TOKEN "staging"`, `acme/api TOKEN ""`}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("AllSecrets() (-want +got):\n%s", diff)
	}

	// A repo's secrets go with it, and do not come back with a new repo
	// of the same name.
	if err := s.DeleteRepo(ctx, r.Name); err != nil {
		t.Fatal(err)
	}
	newRepo(t, s, r.Name)
	if got := secretsOf(t, s, r.Name); len(got) != 0 {
		t.Errorf("Secrets() of a re-added repo = %d secrets, want none (deleted with the old repo)", len(got))
	}
	if all, _ := s.AllSecrets(ctx); len(all) != 1 {
		t.Errorf("AllSecrets() after deleting a repo = %d secrets, want 1", len(all))
	}
}

func testSecretsUpdate(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/web")
	first, _ := setSecret(t, s, r.Name, "TOKEN", "", "key-1", []byte("old"))
	time.Sleep(2 * time.Millisecond)
	second, created := setSecret(t, s, r.Name, "TOKEN", "", "key-2", []byte("new"))
	if created || second.ID != first.ID || !second.CreatedAt.Equal(first.CreatedAt) || !second.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("SetSecret(existing) = created %v, ID %d, created %v, updated %v; want not created, ID %d, created %v, updated after %v",
			created, second.ID, second.CreatedAt, second.UpdatedAt, first.ID, first.CreatedAt, first.UpdatedAt)
	}
	got := secretsOf(t, s, r.Name)
	if len(got) != 1 || got[0].KeyID != "key-2" || string(got[0].Ciphertext) != "new" || !got[0].UpdatedAt.Equal(second.UpdatedAt) {
		t.Errorf("Secrets() after an update = %+v, want the one secret with key-2, \"new\"", got)
	}
}

// Servers setting the same new secret at once: one creates it, the others
// replace its value; none fails.
func testSecretsConcurrentSet(t *testing.T, s store.Store) {
	r := newRepo(t, s, "acme/web")
	const n = 8
	var wg sync.WaitGroup
	ids := make([]int64, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec := &store.Secret{Repo: r.Name, Name: "TOKEN", KeyID: "k", Ciphertext: []byte{byte(i)}}
			created[i], errs[i] = s.SetSecret(t.Context(), sec)
			ids[i] = sec.ID
		}()
	}
	wg.Wait()
	nc := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("SetSecret #%d = %v", i, errs[i])
		}
		if created[i] {
			nc++
		}
		if ids[i] != ids[0] {
			t.Errorf("SetSecret #%d gave ID %d, #0 %d: want one secret", i, ids[i], ids[0])
		}
	}
	if nc != 1 {
		t.Errorf("%d of %d concurrent SetSecrets of one new secret said created, want 1", nc, n)
	}
	if got := secretsOf(t, s, r.Name); len(got) != 1 {
		t.Errorf("Secrets() = %d, want 1", len(got))
	}
}

func testDeleteSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/web")
	setSecret(t, s, r.Name, "TOKEN", "", "k", []byte("a"))
	prod, _ := setSecret(t, s, r.Name, "TOKEN", "production", "k", []byte("b"))

	if err := s.DeleteSecret(ctx, r.Name, "TOKEN", ""); err != nil {
		t.Fatalf("DeleteSecret(TOKEN) = %v", err)
	}
	if err := s.DeleteSecret(ctx, r.Name, "TOKEN", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSecret(TOKEN) again = %v, want ErrNotFound", err)
	}
	for _, c := range []struct{ repo, name, env string }{{"acme/nope", "TOKEN", "production"}, {r.Name, "OTHER", ""}, {r.Name, "TOKEN", "staging"}} {
		if err := s.DeleteSecret(ctx, c.repo, c.name, c.env); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteSecret(%s %s %q) = %v, want ErrNotFound", c.repo, c.name, c.env, err)
		}
	}
	if got := secretsOf(t, s, r.Name); len(got) != 1 || got[0].ID != prod.ID {
		t.Errorf("Secrets() after deleting the unscoped one = %+v, want only the production one", got)
	}
}

func testRekeySecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/web")
	old, _ := setSecret(t, s, r.Name, "TOKEN", "", "key-1", []byte("under key 1"))
	time.Sleep(2 * time.Millisecond)

	if err := s.RekeySecret(ctx, old, "key-2", []byte("under key 2")); err != nil {
		t.Fatalf("RekeySecret() = %v", err)
	}
	got := secretsOf(t, s, r.Name)[0]
	if got.KeyID != "key-2" || string(got.Ciphertext) != "under key 2" || !got.UpdatedAt.Equal(old.UpdatedAt) || !got.CreatedAt.Equal(old.CreatedAt) {
		t.Errorf("after RekeySecret() = %s %q updated %v, want key-2, \"under key 2\", updated still %v", got.KeyID, got.Ciphertext, got.UpdatedAt, old.UpdatedAt)
	}

	// A rekey from what the row no longer holds writes nothing.
	if err := s.RekeySecret(ctx, old, "key-3", []byte("stale")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RekeySecret(stale) = %v, want ErrConflict", err)
	}
	setSecret(t, s, r.Name, "TOKEN", "", "key-2", []byte("set meanwhile"))
	if err := s.RekeySecret(ctx, got, "key-3", []byte("stale")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RekeySecret() of a value set since = %v, want ErrConflict", err)
	}
	if now := secretsOf(t, s, r.Name)[0]; now.KeyID != "key-2" || !bytes.Equal(now.Ciphertext, []byte("set meanwhile")) {
		t.Errorf("after refused rekeys the secret is %s %q, want key-2 \"set meanwhile\"", now.KeyID, now.Ciphertext)
	}
	if err := s.DeleteSecret(ctx, r.Name, "TOKEN", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RekeySecret(ctx, got, "key-3", []byte("gone")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RekeySecret() of a deleted secret = %v, want ErrNotFound", err)
	}
}

// The fork flag is written with the build and read back by every read,
// Lease included; Update leaves it alone.
func testBuildFromFork(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRepo(t, s, "acme/web")
	fork := newBuild(t, s, r, []*store.Job{queued("test", 0)}, func(b *store.Build) { b.FromFork, b.Event, b.PullRequest = true, "pull_request", 7 })
	own := newBuild(t, s, r, []*store.Job{queued("test", 0)})

	if b := getBuild(t, s, fork.ID); !b.FromFork {
		t.Errorf("Build(fork) FromFork = false, want true")
	}
	if b := getBuild(t, s, own.ID); b.FromFork {
		t.Errorf("Build(own) FromFork = true, want false")
	}
	list, err := s.Builds(ctx, store.BuildFilter{Repo: r.Name})
	if err != nil || len(list) != 2 || list[0].FromFork || !list[1].FromFork {
		t.Errorf("Builds() = %d builds (%v), want own then fork with their flags", len(list), err)
	}
	err = s.Update(ctx, fork.ID, func(b *store.Build) error {
		b.FromFork = false // not written back: it is part of what the build is
		b.Reason = "touched"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lb, _, err := s.Lease(ctx, "agent", nil, time.Minute)
	if err != nil || lb.ID != fork.ID || !lb.FromFork || lb.Reason != "touched" {
		t.Errorf("Lease() = build %v FromFork %v (%v), want the fork build, still FromFork", lb, lb != nil && lb.FromFork, err)
	}
}
