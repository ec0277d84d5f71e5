package secret_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/secret"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, secret.KeySize) }

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func TestKeyringSealOpen(t *testing.T) {
	t.Parallel()
	kr, err := secret.NewKeyring(key(1), key(2))
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("acme/web\x00TOKEN\x00")
	id, ct := kr.Seal(ad, []byte("hunter2-value"))
	if id != secret.KeyID(key(1)) || id != kr.Newest() {
		t.Errorf("Seal() key = %s, want the newest, %s", id, secret.KeyID(key(1)))
	}
	if bytes.Contains(ct, []byte("hunter2")) {
		t.Errorf("Seal() = %q holds the plaintext", ct)
	}
	got, err := kr.Open(id, ad, ct)
	if err != nil || string(got) != "hunter2-value" {
		t.Errorf("Open(Seal(x)) = %q, %v; want x", got, err)
	}
	// A random nonce per value: the same value never seals the same.
	if _, ct2 := kr.Seal(ad, []byte("hunter2-value")); bytes.Equal(ct, ct2) || bytes.Equal(ct[:12], ct2[:12]) {
		t.Errorf("two Seals of one value share a nonce or ciphertext")
	}
	// An older key still opens what it sealed.
	older, _ := secret.NewKeyring(key(2))
	oid, oct := older.Seal(ad, []byte("old"))
	if got, err := kr.Open(oid, ad, oct); err != nil || string(got) != "old" {
		t.Errorf("Open() under the older key = %q, %v; want \"old\"", got, err)
	}

	flipped := bytes.Clone(ct)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name  string
		id    string
		ad    []byte
		ct    []byte
		want  error
		quote string
	}{
		{"other additional data (a row copied to another secret)", id, []byte("acme/web\x00OTHER\x00"), ct, secret.ErrDecrypt, ""},
		{"altered ciphertext", id, ad, flipped, secret.ErrDecrypt, ""},
		{"too short", id, ad, ct[:20], secret.ErrDecrypt, "too short"},
		{"the other key's ID", secret.KeyID(key(2)), ad, ct, secret.ErrDecrypt, ""},
		{"a key the keyring lacks", secret.KeyID(key(3)), ad, ct, secret.ErrUnknownKey, secret.KeyID(key(3))},
	} {
		got, err := kr.Open(c.id, c.ad, c.ct)
		if !errors.Is(err, c.want) || got != nil || !strings.Contains(err.Error(), c.quote) {
			t.Errorf("Open(%s) = %q, %v; want %v (mentioning %q)", c.name, got, err, c.want, c.quote)
		}
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	a, b := secret.KeyID(key(1)), secret.KeyID(key(2))
	if len(a) != 16 || a == b || a != secret.KeyID(key(1)) {
		t.Errorf("KeyID = %q, %q: want 16 hex digits, stable, distinct per key", a, b)
	}
	if strings.Contains(a, strings.ToLower(b64(key(1))[:8])) {
		t.Errorf("KeyID(k) = %q reveals the key", a)
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	k1, k2 := secret.NewKey(), secret.NewKey()
	for _, c := range []struct {
		in      string
		want    [][]byte
		wantErr string
	}{
		{b64(k1), [][]byte{k1}, ""},
		{" " + b64(k1) + " , " + b64(k2) + "\n", [][]byte{k1, k2}, ""},
		{base64.RawURLEncoding.EncodeToString(k1), [][]byte{k1}, ""},
		{base64.URLEncoding.EncodeToString(k2) + "," + base64.RawStdEncoding.EncodeToString(k1), [][]byte{k2, k1}, ""},
		{"", nil, "no key"},
		{"  ", nil, "no key"},
		{b64(k1) + ",", nil, "key 2 of 2 is empty"},
		{b64(k1) + ",," + b64(k2), nil, "key 2 of 3 is empty"},
		{"not*base64*at*all", nil, "key 1 of 1: not base64 of 32 bytes (make one with: openssl rand -base64 32)"},
		{b64(k1[:16]), nil, "key 1 of 1: decodes to 16 bytes, want 32"},
		{b64(append(bytes.Clone(k1), 0)), nil, "decodes to 33 bytes"},
		{b64(k1) + "," + b64(k2) + "," + b64(k1), nil, "key 3 of 3 is the same as key 1"},
	} {
		got, err := secret.ParseKeys(c.in)
		if c.wantErr == "" {
			if err != nil || !slices.EqualFunc(got, c.want, bytes.Equal) {
				t.Errorf("ParseKeys(%q) = %d keys, %v; want %d keys", c.in, len(got), err, len(c.want))
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("ParseKeys(%q) = %v, want an error with %q", c.in, err, c.wantErr)
			continue
		}
		// The error never quotes what was given: it may be most of a key.
		for _, part := range strings.Split(c.in, ",") {
			if p := strings.TrimSpace(part); len(p) >= 8 && strings.Contains(err.Error(), p) {
				t.Errorf("ParseKeys(%q) = %v: quotes the input", c.in, err)
			}
		}
	}
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	k1, k2 := secret.NewKey(), secret.NewKey()
	for _, c := range []struct {
		in      string
		want    [][]byte
		wantErr string
	}{
		{string(secret.FormatKeyFile([][]byte{k1, k2})), [][]byte{k1, k2}, ""},
		{"# comment\r\n\r\n" + b64(k1) + "\r\n  " + b64(k2) + "  ", [][]byte{k1, k2}, ""},
		{b64(k1), [][]byte{k1}, ""},
		{"", nil, "no key in it"},
		{"# only a comment\n\n", nil, "no key in it"},
		{"# keys\n" + b64(k1) + "\n" + b64(k1[:31]) + "\n", nil, "line 3: decodes to 31 bytes, want 32"},
		{b64(k1) + "\n\n" + b64(k1) + "\n", nil, "line 3: the same key as line 1"},
		{"KEY=" + b64(k1) + "\n", nil, "line 1: not base64"},
	} {
		got, err := secret.ParseKeyFile([]byte(c.in))
		if c.wantErr == "" {
			if err != nil || !slices.EqualFunc(got, c.want, bytes.Equal) {
				t.Errorf("ParseKeyFile(%q) = %d keys, %v; want %d keys", c.in, len(got), err, len(c.want))
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), b64(k1)[:16]) {
			t.Errorf("ParseKeyFile(%q) = %v, want an error with %q that quotes no key", c.in, err, c.wantErr)
		}
	}
}

func TestOpenKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")

	kr, created, err := secret.OpenKeyFile(path)
	if err != nil || !created || kr.Path() != path || len(kr.IDs()) != 1 {
		t.Fatalf("OpenKeyFile(new) = %v, created %v, %v; want a keyring of one new key", kr, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file mode = %v (%v), want 0600", fi.Mode(), err)
	}
	if data, _ := os.ReadFile(path); !strings.HasPrefix(string(data), "# Gantry's secret keys") {
		t.Errorf("new key file = %q, want the explaining header first", data)
	}
	again, created, err := secret.OpenKeyFile(path)
	if err != nil || created || !slices.Equal(again.IDs(), kr.IDs()) {
		t.Errorf("OpenKeyFile(existing) = %v, created %v, %v; want the same key, not created", again.IDs(), created, err)
	}

	// Add writes the new key first and keeps the old; Retire drops it.
	old := kr.Newest()
	id, err := kr.Add()
	if err != nil || id == old || !slices.Equal(kr.IDs(), []string{id, old}) {
		t.Fatalf("Add() = %s, %v; keys %v, want a new key before %s", id, err, kr.IDs(), old)
	}
	if reread, _, err := secret.OpenKeyFile(path); err != nil || !slices.Equal(reread.IDs(), []string{id, old}) {
		t.Errorf("key file after Add() holds %v (%v), want [%s %s]", reread.IDs(), err, id, old)
	}
	if err := kr.Retire([]string{old, id}); err != nil || !slices.Equal(kr.IDs(), []string{id}) {
		t.Errorf("Retire(old, newest) = %v; keys %v, want only the newest %s (never dropped)", err, kr.IDs(), id)
	}
	if reread, _, err := secret.OpenKeyFile(path); err != nil || !slices.Equal(reread.IDs(), []string{id}) {
		t.Errorf("key file after Retire() holds %v (%v), want [%s]", reread.IDs(), err, id)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten key file mode = %v, want 0600", fi.Mode())
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a temporary file is left: %v", err)
	}

	// A keyring from the environment cannot add or drop keys itself.
	env, _ := secret.NewKeyring(key(1))
	if _, err := env.Add(); !errors.Is(err, secret.ErrNotFile) {
		t.Errorf("Add() on a keyring from the environment = %v, want ErrNotFile", err)
	}
}

func TestOpenKeyFileRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := b64(secret.NewKey()) + "\n"
	groupReadable := write("group.key", 0o640, good)
	worldReadable := write("world.key", 0o604, good)
	bad := write("bad.key", 0o600, "# keys\nnot a key\n")
	dangling := filepath.Join(dir, "dangling.key")
	os.Symlink(filepath.Join(dir, "unmounted", "secret.key"), dangling)
	for _, c := range []struct {
		path, want string
	}{
		{groupReadable, "secret key file " + groupReadable + " may be read by other users (mode 0640)"},
		{worldReadable, "(mode 0604): anyone who can read it can decrypt every secret; make it readable by this user only: chmod 600 " + worldReadable},
		{bad, "secret key file " + bad + ": line 2: not base64"},
		{dir, "is not a regular file"},
		{dangling, "is a symlink to a file that does not exist"},
	} {
		if kr, _, err := secret.OpenKeyFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenKeyFile(%s) = %v, %v; want an error with %q", filepath.Base(c.path), kr, err, c.want)
		}
	}
	// Nothing was changed or created.
	if data, _ := os.ReadFile(groupReadable); string(data) != good {
		t.Errorf("a refused key file was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "unmounted")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was made behind a dangling symlink")
	}
}

// FuzzParseKeys: GANTRY_SECRET_KEY never panics the parser, a key it
// accepts is 32 bytes, there is one per comma-separated entry, and an
// error never quotes the input.
func FuzzParseKeys(f *testing.F) {
	k := secret.NewKey()
	for _, s := range []string{"", ",", b64(k), b64(k) + "," + b64(key(9)), b64(k[:16]), " " + b64(k) + " ,\t" + b64(key(7)), "a,b,c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := secret.ParseKeys(s)
		if err != nil {
			checkUnquoted(t, err, strings.Split(s, ","))
			return
		}
		if len(keys) != len(strings.Split(s, ",")) {
			t.Errorf("ParseKeys(%q) = %d keys for %d entries", s, len(keys), len(strings.Split(s, ",")))
		}
		for _, k := range keys {
			if len(k) != secret.KeySize {
				t.Errorf("ParseKeys(%q) gave a key of %d bytes", s, len(k))
			}
		}
		if _, err := secret.NewKeyring(keys...); err != nil {
			t.Errorf("NewKeyring(ParseKeys(%q)) = %v", s, err)
		}
	})
}

// FuzzParseKeyFile: a key file never panics the parser, its errors quote
// no line, and what it accepts comes back the same through FormatKeyFile.
func FuzzParseKeyFile(f *testing.F) {
	k := secret.NewKey()
	for _, s := range []string{"", "#\n", b64(k), string(secret.FormatKeyFile([][]byte{k, key(3)})), "\r\n" + b64(k) + "\r\n", b64(k) + "\n" + b64(k)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := secret.ParseKeyFile(data)
		if err != nil {
			checkUnquoted(t, err, strings.Split(string(data), "\n"))
			return
		}
		again, err := secret.ParseKeyFile(secret.FormatKeyFile(keys))
		if err != nil || !slices.EqualFunc(again, keys, bytes.Equal) {
			t.Errorf("ParseKeyFile(FormatKeyFile(ParseKeyFile(%q))) = %d keys, %v; want the same %d keys", data, len(again), err, len(keys))
		}
	})
}

// checkUnquoted fails when err quotes a part of the input long enough to
// be a meaningful part of a key.
func checkUnquoted(t *testing.T, err error, parts []string) {
	t.Helper()
	msg := err.Error()
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 12 && !strings.HasPrefix(p, "#") && strings.Contains(msg, p) {
			t.Errorf("error %q quotes the input %q", msg, p)
		}
	}
}
