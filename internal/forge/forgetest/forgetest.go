// Package forgetest is what the forge adapters' tests share: access to the
// webhook fixtures under shared/fixtures/webhooks, a way to vary a fixture,
// the invariants every result of a Parse must satisfy ([CheckParse], which
// the fuzz targets use too), and a conformance test for HMAC signature
// checks ([TestHMAC]), and the fixture-table test every adapter runs
// ([TestFixtures]).
//
// It is for tests only; nothing outside _test.go files imports it.
package forgetest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/forge"
)

// FixtureDir returns the path of shared/fixtures/webhooks relative to the
// test's working directory (its package directory), found by looking in each
// parent directory in turn. It fails the test if there is none: the fixtures
// live outside the module, and a test that silently skipped them would prove
// nothing.
func FixtureDir(t testing.TB) string {
	t.Helper()
	rel := "."
	for range 16 {
		dir := filepath.Join(rel, "shared", "fixtures", "webhooks")
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		abs, err := filepath.Abs(rel)
		if err != nil || filepath.Dir(abs) == abs {
			break
		}
		rel = filepath.Join(rel, "..")
	}
	t.Fatalf("no shared/fixtures/webhooks directory above the package directory")
	return ""
}

// Fixture returns the bytes of the fixture file name ("github/push.json").
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(FixtureDir(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// Payloads returns the names of the payload fixtures in the given forge
// directories ("github"), such as "github/push.json", leaving out the
// *.headers.json files that record a delivery's headers.
func Payloads(t testing.TB, dirs ...string) []string {
	t.Helper()
	var names []string
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(FixtureDir(t), d, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no fixtures in %s", d)
		}
		for _, f := range files {
			if !strings.HasSuffix(f, ".headers.json") {
				names = append(names, d+"/"+filepath.Base(f))
			}
		}
	}
	return names
}

// Headers returns the headers recorded in a *.headers.json fixture.
func Headers(t testing.TB, name string) http.Header {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(Fixture(t, name), &m); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// Header returns a header holding the given name and value pairs.
func Header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// Patch decodes a JSON object, lets edit change it, and encodes it again:
// the way tests derive the payloads the fixtures lack (a closed pull
// request, a forced push) from real ones.
func Patch(t testing.TB, body []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("patch: %v", err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	return b
}

// Obj returns m[key] as an object, failing the test if it is not one.
func Obj(t testing.TB, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("patch: %s is not an object", key)
	}
	return o
}

// CheckParse checks the invariants of a Parse result: an error wraps
// forge.ErrMalformed (Parse never judges signatures) and comes without
// events; success brings at least one event, and every event is coherent
// for its kind. call names the call in failure messages.
func CheckParse(t testing.TB, call string, events []forge.Event, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, forge.ErrMalformed) || errors.Is(err, forge.ErrSignature) {
			t.Errorf("%s error = %v, want one wrapping only ErrMalformed", call, err)
		}
		if events != nil {
			t.Errorf("%s = %v with error %v, want no events", call, events, err)
		}
		return
	}
	if len(events) == 0 {
		t.Errorf("%s = no events and no error, want at least one event", call)
	}
	for i, e := range events {
		if msg := incoherent(e); msg != "" {
			t.Errorf("%s event %d = %+v: %s", call, i, e, msg)
		}
	}
}

func incoherent(e forge.Event) string {
	if e.Forge == "" {
		return "no Forge"
	}
	if (e.Kind == forge.Ignored) != (e.Reason != "") {
		return "a Reason must come with, and only with, Kind Ignored"
	}
	for _, sha := range []string{e.Commit, e.Before} {
		if sha != "" && !isHex(sha) {
			return "Commit and Before must be hex"
		}
	}
	if e.ChangedPaths != nil {
		if e.Kind != forge.Push || e.Deleted {
			return "ChangedPaths only belong to a push that is not a deletion"
		}
		if !slices.IsSorted(e.ChangedPaths) || len(slices.Compact(slices.Clone(e.ChangedPaths))) != len(e.ChangedPaths) {
			return "ChangedPaths must be sorted and unique"
		}
	}
	if e.Deleted && (e.Kind != forge.Push && e.Kind != forge.Tag || e.Commit != "") {
		return "only a Push or Tag can be Deleted, and then it has no Commit"
	}
	switch e.Kind {
	case forge.Push, forge.Tag, forge.PullRequest:
		if e.Repo == "" {
			return "no Repo"
		}
		if !e.Deleted && e.Commit == "" {
			return "nothing to build: no Commit"
		}
	}
	switch e.Kind {
	case forge.Push:
		if e.Branch == "" || e.Tag != "" {
			return "a Push names a Branch and no Tag"
		}
	case forge.Tag:
		if e.Tag == "" || e.Branch != "" {
			return "a Tag names a Tag and no Branch"
		}
	case forge.PullRequest:
		if e.PullRequest <= 0 || e.Branch == "" || e.BaseBranch == "" {
			return "a PullRequest needs a number, a head and a base branch"
		}
		switch e.Action {
		case "opened", "synchronized", "reopened":
		default:
			return "a PullRequest is built only when opened, synchronized or reopened"
		}
	case forge.Ping, forge.Ignored:
	default:
		return "unknown Kind"
	}
	return ""
}

func isHex(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	_, err := hex.DecodeString(strings.Repeat("0", len(s)%2) + s)
	return err == nil
}

// TestHMAC is the conformance test for an adapter whose Verify checks an
// HMAC-SHA256 of the body in the named header, written as prefix followed by
// hex: the right digest passes; a tampered body, a wrong secret, an empty
// secret, a missing, truncated, non-hex or wrongly prefixed header all fail
// with forge.ErrSignature; and no error message gives away the secret or the
// expected digest.
func TestHMAC(t *testing.T, verify func(http.Header, []byte, string) error, header, prefix string) {
	t.Helper()
	const secret = "s3cr3t-for-conformance"
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	digest := func(key string, b []byte) string {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(b)
		return hex.EncodeToString(mac.Sum(nil))
	}
	good := digest(secret, body)
	wrongPrefix := "sha1="
	if prefix != "" {
		wrongPrefix = "sha512="
	}
	tests := []struct {
		name   string
		value  string
		body   []byte
		secret string
		ok     bool
	}{
		{name: "valid", value: prefix + good, body: body, secret: secret, ok: true},
		{name: "valid uppercase hex", value: prefix + strings.ToUpper(good), body: body, secret: secret, ok: true},
		{name: "tampered body", value: prefix + good, body: append(slices.Clone(body), ' '), secret: secret},
		{name: "empty body", value: prefix + good, body: nil, secret: secret},
		{name: "wrong secret", value: prefix + digest("another", body), body: body, secret: secret},
		{name: "empty secret", value: prefix + digest("", body), body: body, secret: ""},
		{name: "missing header", value: "", body: body, secret: secret},
		{name: "prefix only", value: prefix, body: body, secret: secret},
		{name: "truncated digest", value: prefix + good[:40], body: body, secret: secret},
		{name: "not hex", value: prefix + strings.Repeat("zz", 32), body: body, secret: secret},
		{name: "wrong prefix", value: wrongPrefix + good, body: body, secret: secret},
		{name: "trailing space", value: prefix + good + " x", body: body, secret: secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.value != "" {
				h.Set(header, tt.value)
			}
			err := verify(h, tt.body, tt.secret)
			if tt.ok {
				if err != nil {
					t.Errorf("Verify(%s: %q) = %v, want nil", header, tt.value, err)
				}
				return
			}
			if !errors.Is(err, forge.ErrSignature) {
				t.Fatalf("Verify(%s: %q) = %v, want ErrSignature", header, tt.value, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, header) {
				t.Errorf("Verify(%s: %q) = %q, want a message naming %s", header, tt.value, msg, header)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Errorf("Verify(%s: %q) = %q, which gives away the secret", header, tt.value, msg)
			}
			if want := digest(tt.secret, tt.body); strings.Contains(strings.ToLower(msg), want[:16]) {
				t.Errorf("Verify(%s: %q) = %q, which gives away the expected digest", header, tt.value, msg)
			}
		})
	}
}

// Case is one fixture file, the headers it is delivered with, and the
// events Parse must make of it.
type Case struct {
	File   string
	Header http.Header
	Want   []forge.Event
}

// TestFixtures parses every case and compares the events with Want, checks
// them against CheckParse's invariants, and fails for any fixture under
// dirs (see Payloads) that no case covers, so a new fixture cannot go
// untested.
func TestFixtures(t *testing.T, parse func(http.Header, []byte) ([]forge.Event, error), cases []Case, dirs ...string) {
	var tested []string
	for _, tt := range cases {
		tested = append(tested, tt.File)
		t.Run(tt.File, func(t *testing.T) {
			t.Parallel()
			got, err := parse(tt.Header, Fixture(t, tt.File))
			if err != nil {
				t.Fatalf("Parse(%s) error = %v, want nil", tt.File, err)
			}
			if diff := cmp.Diff(tt.Want, got); diff != "" {
				t.Errorf("Parse(%s) = got, want (-want +got):\n%s", tt.File, diff)
			}
			CheckParse(t, "Parse("+tt.File+")", got, err)
		})
	}
	for _, f := range Payloads(t, dirs...) {
		if !slices.Contains(tested, f) {
			t.Errorf("fixture %s has no case in TestParseFixtures", f)
		}
	}
}
