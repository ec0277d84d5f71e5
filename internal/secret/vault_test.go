package secret_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// newStore is a real SQLite store with the repo acme/web.
func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateRepo(t.Context(), &store.Repo{Name: "acme/web", CloneURL: "/x", Forge: "github", WebhookSecret: "k"}); err != nil {
		t.Fatal(err)
	}
	return st
}

func mustSet(t *testing.T, v *secret.Vault, repo, name, env, value string) {
	t.Helper()
	if _, _, err := v.Set(t.Context(), repo, name, env, value); err != nil {
		t.Fatalf("Set(%s %s %q) = %v", repo, name, env, err)
	}
}

func TestVaultSetValuesList(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	kr, _ := secret.NewKeyring(key(1))
	v := secret.NewVault(st, kr)
	ctx := t.Context()

	s, created, err := v.Set(ctx, "acme/web", "NPM_TOKEN", "", "npm-value-1")
	if err != nil || !created || s.Ciphertext != nil || s.KeyID != kr.Newest() {
		t.Fatalf("Set(new) = %+v, %v, %v; want created, under the newest key, no ciphertext returned", s, created, err)
	}
	if _, created, _ := v.Set(ctx, "acme/web", "NPM_TOKEN", "", "npm-value-2"); created {
		t.Errorf("Set(existing) said created")
	}
	mustSet(t, v, "acme/web", "DEPLOY_KEY", "production", "prod-deploy-key")

	// At rest: ciphertext only.
	all, _ := st.AllSecrets(ctx)
	for _, s := range all {
		if strings.Contains(string(s.Ciphertext), "value") || strings.Contains(string(s.Ciphertext), "deploy") {
			t.Errorf("stored ciphertext of %s holds its value: %q", s.Name, s.Ciphertext)
		}
	}

	got, err := v.Values(ctx, "acme/web", []string{"NPM_TOKEN"})
	if err != nil || len(got) != 1 || got["NPM_TOKEN"] != "npm-value-2" {
		t.Errorf("Values(NPM_TOKEN) = %v, %v; want the latest value", got, err)
	}
	for _, c := range []struct {
		names []string
		want  string
	}{
		{[]string{"MISSING"}, "secret MISSING is not set for acme/web"},
		{[]string{"NPM_TOKEN", "B", "A"}, "secrets A, B are not set for acme/web"},
		{[]string{"DEPLOY_KEY"}, "secret DEPLOY_KEY is not set for acme/web (DEPLOY_KEY is set only for environment production, and a build job receives only unscoped secrets)"},
	} {
		if got, err := v.Values(ctx, "acme/web", c.names); err == nil || err.Error() != c.want || got != nil {
			t.Errorf("Values(%v) = %v, %v; want the error %q", c.names, got, err, c.want)
		}
	}

	list, err := v.List(ctx, "acme/web")
	if err != nil || len(list) != 2 || list[0].Name != "DEPLOY_KEY" || list[0].Environment != "production" || list[1].Name != "NPM_TOKEN" {
		t.Fatalf("List() = %v, %v; want DEPLOY_KEY (production), NPM_TOKEN", list, err)
	}
	for _, s := range list {
		if s.Ciphertext != nil {
			t.Errorf("List() hands out the ciphertext of %s", s.Name)
		}
	}
	if err := v.Delete(ctx, "acme/web", "NPM_TOKEN", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Values(ctx, "acme/web", []string{"NPM_TOKEN"}); err == nil {
		t.Errorf("Values() of a deleted secret succeeded")
	}
	if _, _, err := v.Set(ctx, "acme/nope", "X", "", "value"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Set(missing repo) = %v, want ErrNotFound", err)
	}
}

func TestVaultRefusesBadInput(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	kr, _ := secret.NewKeyring(key(1))
	v := secret.NewVault(st, kr)
	for _, c := range []struct{ name, env, value, want string }{
		{"", "", "v", "the secret name is empty"},
		{"1TOKEN", "", "value", `secret name "1TOKEN": want an environment variable name`},
		{"MY-TOKEN", "", "value", "want an environment variable name"},
		{"TOKEN=hunter2", "", "value", "the secret name contains '=': give the name alone; the value is read from stdin"},
		{"GANTRY_TOKEN", "", "value", `secret name "GANTRY_TOKEN" is reserved`},
		{"CI", "", "value", "is reserved"},
		{"TOKEN", "prod env", "value", `environment "prod env": want a name`},
		{"TOKEN", "", "", "the value is empty"},
		{"TOKEN", "", "a\x00b", "NUL byte"},
		{"TOKEN", "", "\xff\xfe", "not valid UTF-8"},
		{"TOKEN", "", strings.Repeat("x", secret.MaxValue+1), "the value is 65537 bytes, more than the 65536"},
	} {
		_, _, err := v.Set(t.Context(), "acme/web", c.name, c.env, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Set(%q, %q) = %v, want an error with %q", c.name, c.env, err, c.want)
		}
		if strings.Contains(fmt.Sprint(err), "hunter2") {
			t.Errorf("Set(%q) error quotes the value: %v", c.name, err)
		}
	}
	if all, _ := st.AllSecrets(t.Context()); len(all) != 0 {
		t.Errorf("refused Sets stored %d secrets", len(all))
	}
}

// A ciphertext copied from one secret's row to another's does not decrypt
// there, and a database opened under another key reveals nothing: both
// fail with a clear error, never with garbage.
func TestVaultBindsValuesToTheirSecret(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	kr, _ := secret.NewKeyring(key(1))
	v := secret.NewVault(st, kr)
	mustSet(t, v, "acme/web", "PROD_TOKEN", "", "the-production-token")
	mustSet(t, v, "acme/web", "TEST_TOKEN", "", "the-test-token")

	list, _ := st.Secrets(ctx, "acme/web")
	prod := list[0]
	if _, err := st.SetSecret(ctx, &store.Secret{Repo: "acme/web", Name: "TEST_TOKEN", KeyID: prod.KeyID, Ciphertext: prod.Ciphertext}); err != nil {
		t.Fatal(err)
	}
	_, err := v.Values(ctx, "acme/web", []string{"TEST_TOKEN"})
	if !errors.Is(err, secret.ErrDecrypt) || !strings.Contains(err.Error(), "secret TEST_TOKEN of acme/web cannot be decrypted: key "+kr.Newest()) ||
		!strings.Contains(err.Error(), "copied from another secret") {
		t.Errorf("Values() of a copied row = %v, want ErrDecrypt naming the secret, key and why", err)
	}
	if strings.Contains(fmt.Sprint(err), "the-production-token") {
		t.Errorf("the error reveals the value: %v", err)
	}

	other, _ := secret.NewKeyring(key(2))
	_, err = secret.NewVault(st, other).Values(ctx, "acme/web", []string{"PROD_TOKEN"})
	if !errors.Is(err, secret.ErrUnknownKey) || !strings.Contains(err.Error(), "encrypted under key "+kr.Newest()+", and this server has "+other.Newest()) {
		t.Errorf("Values() under another key = %v, want ErrUnknownKey naming both keys", err)
	}
	n, err := secret.NewVault(st, other).Unreadable(ctx)
	if err != nil || n[kr.Newest()] != 2 || len(n) != 1 {
		t.Errorf("Unreadable() under another key = %v, %v; want 2 under %s", n, err, kr.Newest())
	}
}

// Rotation with a key file: every value survives, under the new key, and
// the old key is gone from the file, so it is no longer needed.
func TestVaultRotateKeyFile(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "secret.key")
	kr, _, err := secret.OpenKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := kr.Newest()
	v := secret.NewVault(st, kr)
	want := map[string]string{}
	for i := range 5 {
		name := fmt.Sprintf("TOKEN_%d", i)
		want[name] = fmt.Sprintf("value-%d", i)
		mustSet(t, v, "acme/web", name, "", want[name])
	}
	mustSet(t, v, "acme/web", "TOKEN_0", "staging", "staging-value")

	r, err := v.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	if r.KeyID == oldKey || r.Reencrypted != 6 || !slices.Equal(r.Retired, []string{oldKey}) || len(r.Failed) != 0 || len(r.Kept) != 0 {
		t.Errorf("Rotate() = %+v, want 6 re-encrypted under a new key and %s retired", r, oldKey)
	}
	all, _ := st.AllSecrets(ctx)
	for _, s := range all {
		if s.KeyID != r.KeyID {
			t.Errorf("after Rotate() %s is under %s, want %s", s.Name, s.KeyID, r.KeyID)
		}
	}
	// A server started afresh on the key file alone reads every value:
	// the old key is no longer needed, and no longer there.
	reread, _, err := secret.OpenKeyFile(path)
	if err != nil || !slices.Equal(reread.IDs(), []string{r.KeyID}) {
		t.Fatalf("key file after Rotate() = %v, %v; want only %s", reread.IDs(), err, r.KeyID)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	})
	got, err := secret.NewVault(st, reread).Values(ctx, "acme/web", names)
	if err != nil || len(got) != len(want) {
		t.Fatalf("Values() after Rotate() = %v, %v", got, err)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("after Rotate() %s = %q, want %q", k, got[k], w)
		}
	}
	oldOnly, _ := secret.NewKeyring(key(0)) // any keyring without the new key
	if _, err := secret.NewVault(st, oldOnly).Values(ctx, "acme/web", []string{"TOKEN_1"}); !errors.Is(err, secret.ErrUnknownKey) {
		t.Errorf("Values() without the new key = %v, want ErrUnknownKey", err)
	}
}

// A rotation cut short (the process died after the new key was written,
// before every row was re-encrypted) leaves every value readable, and the
// next start finishes it.
func TestVaultResumeAfterCrash(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "secret.key")
	kr, _, _ := secret.OpenKeyFile(path)
	oldKey := kr.Newest()
	v := secret.NewVault(st, kr)
	mustSet(t, v, "acme/web", "A", "", "value-a")
	mustSet(t, v, "acme/web", "B", "", "value-b")
	// The crash: the new key is in the file, one row was re-encrypted.
	newKey, err := kr.Add()
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, v, "acme/web", "A", "", "value-a2")

	// The next start: the file has both keys, and every value reads.
	restarted, _, err := secret.OpenKeyFile(path)
	if err != nil || !slices.Equal(restarted.IDs(), []string{newKey, oldKey}) {
		t.Fatalf("key file after the crash = %v, %v; want [%s %s]", restarted.IDs(), err, newKey, oldKey)
	}
	v2 := secret.NewVault(st, restarted)
	if got, err := v2.Values(ctx, "acme/web", []string{"A", "B"}); err != nil || got["A"] != "value-a2" || got["B"] != "value-b" {
		t.Errorf("Values() mid-rotation = %v, %v", got, err)
	}
	r, err := v2.Resume(ctx)
	if err != nil || r == nil || r.Reencrypted != 1 || !slices.Equal(r.Retired, []string{oldKey}) {
		t.Fatalf("Resume() = %+v, %v; want B re-encrypted and %s retired", r, err, oldKey)
	}
	if again, err := v2.Resume(ctx); again != nil || err != nil {
		t.Errorf("Resume() with nothing to finish = %+v, %v; want nil", again, err)
	}
	final, _, _ := secret.OpenKeyFile(path)
	if got, err := secret.NewVault(st, final).Values(ctx, "acme/web", []string{"A", "B"}); err != nil || got["B"] != "value-b" {
		t.Errorf("Values() after Resume() = %v, %v", got, err)
	}
}

// Keys from GANTRY_SECRET_KEY: the operator puts the new key first; a
// rotation moves every value to it and names the keys to remove.
func TestVaultRotateEnvKeys(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	oldRing, _ := secret.NewKeyring(key(1))
	mustSet(t, secret.NewVault(st, oldRing), "acme/web", "A", "", "value-a")

	if _, err := secret.NewVault(st, oldRing).Rotate(ctx); !errors.Is(err, secret.ErrSingleEnvKey) ||
		!strings.Contains(err.Error(), "GANTRY_SECRET_KEY=NEW,OLD") {
		t.Errorf("Rotate() with one environment key = %v, want ErrSingleEnvKey saying what to do", err)
	}
	both, _ := secret.NewKeyring(key(2), key(1))
	r, err := secret.NewVault(st, both).Rotate(ctx)
	if err != nil || r.KeyID != secret.KeyID(key(2)) || r.Reencrypted != 1 || !slices.Equal(r.Retired, []string{secret.KeyID(key(1))}) {
		t.Fatalf("Rotate() = %+v, %v; want A under the new key, the old one retired", r, err)
	}
	newOnly, _ := secret.NewKeyring(key(2))
	if got, err := secret.NewVault(st, newOnly).Values(ctx, "acme/web", []string{"A"}); err != nil || got["A"] != "value-a" {
		t.Errorf("Values() with only the new key = %v, %v", got, err)
	}
}

// A value that cannot be decrypted is reported, and its key kept.
func TestVaultRotateReportsFailures(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	old, _ := secret.NewKeyring(key(1))
	mustSet(t, secret.NewVault(st, old), "acme/web", "GOOD", "", "good-value")
	mustSet(t, secret.NewVault(st, old), "acme/web", "BAD", "", "bad-value")
	list, _ := st.Secrets(ctx, "acme/web")
	bad := list[0] // BAD sorts first
	bad.Ciphertext[len(bad.Ciphertext)-1] ^= 1
	st.SetSecret(ctx, bad)

	both, _ := secret.NewKeyring(key(2), key(1))
	r, err := secret.NewVault(st, both).Rotate(ctx)
	if err != nil || r.Reencrypted != 1 || len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "secret BAD of acme/web") ||
		!slices.Equal(r.Kept, []string{secret.KeyID(key(1))}) || len(r.Retired) != 0 {
		t.Errorf("Rotate() with an altered row = %+v, %v; want GOOD moved, BAD failed, the old key kept", r, err)
	}
}

// Sets while a rotation runs: every value stays readable with the key
// file as the rotation leaves it.
func TestVaultRotateConcurrentSets(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secret.key")
	kr, _, _ := secret.OpenKeyFile(path)
	v := secret.NewVault(st, kr)
	for i := range 20 {
		mustSet(t, v, "acme/web", fmt.Sprintf("S%d", i), "", "before")
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := v.Set(ctx, "acme/web", fmt.Sprintf("S%d", i), "", fmt.Sprintf("during-%d", i)); err != nil {
				t.Errorf("Set() during rotation = %v", err)
			}
		}()
	}
	for range 3 {
		if _, err := v.Rotate(ctx); err != nil {
			t.Errorf("Rotate() = %v", err)
		}
	}
	wg.Wait()
	v.Resume(ctx)
	final, _, err := secret.OpenKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("S%d", i))
	}
	got, err := secret.NewVault(st, final).Values(ctx, "acme/web", names)
	if err != nil {
		t.Fatalf("Values() after rotations = %v", err)
	}
	for i, n := range names {
		if got[n] != fmt.Sprintf("during-%d", i) {
			t.Errorf("%s = %q, want during-%d", n, got[n], i)
		}
	}
	if data, _ := os.ReadFile(path); strings.Count(string(data), "\n")-5 != len(final.IDs()) {
		t.Errorf("key file holds %d lines for %d keys", strings.Count(string(data), "\n"), len(final.IDs()))
	}
}
