// Package wire holds what the forge adapters share about reading a delivery
// off the wire: HMAC signature checks, decoding a body into a payload struct,
// refs and SHAs, and the changed-paths rule. It exists so that four adapters
// apply one rule each, and it is internal to internal/forge.
package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gantry-ci/gantry/internal/forge"
)

// VerifyHMAC checks that value, the content of the named header, is prefix
// followed by the hex HMAC-SHA256 of body keyed with secret. It compares in
// constant time. Its errors wrap [forge.ErrSignature], name the header, and
// never contain the secret or the expected digest.
func VerifyHMAC(header, value, prefix string, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("no secret configured to check %s: %w", header, forge.ErrSignature)
	}
	if value == "" {
		return fmt.Errorf("missing %s header: %w", header, forge.ErrSignature)
	}
	digest, ok := strings.CutPrefix(value, prefix)
	if !ok {
		return fmt.Errorf("%s header does not start with %q: %w", header, prefix, forge.ErrSignature)
	}
	got, err := hex.DecodeString(digest)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%s header is not a hex SHA-256 digest: %w", header, forge.ErrSignature)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%s header does not match the body: %w", header, forge.ErrSignature)
	}
	return nil
}

// FirstHeader returns the name and value of the first of names that h holds
// with a non-empty value, or the first name and "" if none does.
func FirstHeader(h http.Header, names ...string) (name, value string) {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return n, v
		}
	}
	return names[0], ""
}

// FormPayload returns the JSON payload of a delivery: body itself, or, when
// the forge was set to post a form (GitHub's and Gitea's
// application/x-www-form-urlencoded content type), its payload field. The
// signature covers the raw body, so verify before calling this.
func FormPayload(h http.Header, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("form body: %v: %w", err, forge.ErrMalformed)
	}
	p := form.Get("payload")
	if p == "" {
		return nil, fmt.Errorf("form body has no payload field: %w", forge.ErrMalformed)
	}
	return []byte(p), nil
}

// Decode decodes body, which must be a JSON object, into v. Its errors wrap
// [forge.ErrMalformed] and say what is wrong.
func Decode(what string, body []byte, v any) error {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%s: body is not a JSON object: %w", what, forge.ErrMalformed)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %v: %w", what, err, forge.ErrMalformed)
	}
	return nil
}

// Malformed returns an error wrapping [forge.ErrMalformed] that says what is
// wrong with a payload.
func Malformed(what, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", what, fmt.Sprintf(format, args...), forge.ErrMalformed)
}

// Ignore turns e into the single Ignored event of a delivery, with the
// reason given.
func Ignore(e forge.Event, format string, args ...any) []forge.Event {
	e.Kind = forge.Ignored
	e.Reason = fmt.Sprintf(format, args...)
	return []forge.Event{e}
}

// Name makes a name taken from a header or a payload (an event type, an
// action) safe to put in a reason: itself if it is short and plain, quoted
// and cut short otherwise. Headers are not covered by a signature, so their
// values are whatever a client sent.
func Name(s string) string {
	plain := len(s) > 0 && len(s) <= 64
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-:./ ", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// SplitRef splits a full ref name into the kind of push it is and the
// branch or tag name. ok is false for any other ref (refs/notes/...,
// refs/pull/...) and for an empty name.
func SplitRef(ref string) (kind forge.Kind, name string, ok bool) {
	if name, ok := strings.CutPrefix(ref, "refs/heads/"); ok && name != "" {
		return forge.Push, name, true
	}
	if name, ok := strings.CutPrefix(ref, "refs/tags/"); ok && name != "" {
		return forge.Tag, name, true
	}
	return "", "", false
}

// IsZeroSHA reports whether s is git's all-zero object name, which forges
// send for the missing side of a created or deleted ref.
func IsZeroSHA(s string) bool {
	return s != "" && strings.Trim(s, "0") == ""
}

// isHex reports whether s is an object name: 7 to 64 hex digits, the range
// from git's shortest abbreviation to a full SHA-256 name.
func isHex(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// SHA checks an object name taken from a payload. It returns "" for an empty
// or all-zero name, the name itself if it is hex, and an error wrapping
// [forge.ErrMalformed] otherwise. Checking matters beyond tidiness: the name
// ends up on a git command line, where "--upload-pack=..." would be an
// option.
func SHA(what, field, s string) (string, error) {
	if s == "" || IsZeroSHA(s) {
		return "", nil
	}
	if !isHex(s) {
		return "", Malformed(what, "%s is not a commit SHA", field)
	}
	return s, nil
}

// Commit is a commit as GitHub, Gitea and GitLab list it in a push payload.
// A nil file list means the payload did not carry it (null or absent); an
// empty one means the commit touched no file of that kind.
type Commit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

// ChangedPaths returns the sorted union of the files the commits added,
// removed and modified, or nil if the list is empty or any commit lacks a
// file list. Deciding whether the commit list itself is complete is the
// caller's job: each forge says so differently.
func ChangedPaths(commits []Commit) []string {
	if len(commits) == 0 {
		return nil
	}
	var paths []string
	for _, c := range commits {
		if c.Added == nil || c.Removed == nil || c.Modified == nil {
			return nil
		}
		paths = append(paths, c.Added...)
		paths = append(paths, c.Removed...)
		paths = append(paths, c.Modified...)
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	if paths == nil {
		paths = []string{}
	}
	return paths
}

// MessageOf returns the message of the commit with the given id from
// commits, or "" if the list does not hold it.
func MessageOf(commits []Commit, id string) string {
	for _, c := range commits {
		if c.ID == id && id != "" {
			return Message(c.Message)
		}
	}
	return ""
}

// Message normalises a commit message: some forges keep git's trailing
// newline and some strip it.
func Message(s string) string {
	return strings.TrimRight(s, "\r\n")
}
