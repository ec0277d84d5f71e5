package github

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/forgetest"
)

// header returns the headers GitHub sends with a delivery of event.
func header(event, delivery string) http.Header {
	return forgetest.Header("X-GitHub-Event", event, "X-GitHub-Delivery", delivery, "Content-Type", "application/json")
}

// fixtures is every GitHub fixture with the delivery headers it is parsed
// with and the events it must become.
func fixtures() []struct {
	file, event, delivery string
	want                  []forge.Event
} {
	const repo, clone = "Codertocat/Hello-World", "https://github.com/Codertocat/Hello-World.git"
	return []struct {
		file, event, delivery string
		want                  []forge.Event
	}{
		{
			file: "github/push.json", event: "push", delivery: "d1b1c6a0-0001-11ef-8000-000000000001",
			want: []forge.Event{{
				Forge: "github", Kind: forge.Push, DeliveryID: "d1b1c6a0-0001-11ef-8000-000000000001",
				Repo: repo, CloneURL: clone,
				Branch: "master", Commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
				Author: "Codertocat", AuthorEmail: "21031067+Codertocat@users.noreply.github.com",
				Message: "Initial commit",
				// A created branch: the commit list is no diff, so paths are unknown.
				ChangedPaths: nil,
				URL:          "https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246",
			}},
		},
		{
			file: "github/push_tag_created.json", event: "push", delivery: "d1b1c6a0-0002-11ef-8000-000000000002",
			want: []forge.Event{{
				Forge: "github", Kind: forge.Tag, DeliveryID: "d1b1c6a0-0002-11ef-8000-000000000002",
				Repo: repo, CloneURL: "https://octocoders.github.io/Codertocat/Hello-World.git",
				Tag: "simple-tag", Commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
				Author: "Codertocat", AuthorEmail: "Codertocat@Octocoders.io",
				Message: "Adding a .gitignore file",
				URL:     "https://octocoders.github.io/Codertocat/Hello-World/compare/simple-tag",
			}},
		},
		{
			file: "github/push_tag_deleted.json", event: "push", delivery: "d1b1c6a0-0003-11ef-8000-000000000003",
			want: []forge.Event{{
				Forge: "github", Kind: forge.Tag, DeliveryID: "d1b1c6a0-0003-11ef-8000-000000000003",
				Repo: repo, CloneURL: clone,
				Tag: "simple-tag", Deleted: true, Before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
				Author: "Codertocat", AuthorEmail: "21031067+Codertocat@users.noreply.github.com",
				URL: "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000",
			}},
		},
		{
			file: "github/pull_request_opened.json", event: "pull_request", delivery: "d1b1c6a0-0004-11ef-8000-000000000004",
			want: []forge.Event{{
				Forge: "github", Kind: forge.PullRequest, DeliveryID: "d1b1c6a0-0004-11ef-8000-000000000004",
				Repo: repo, CloneURL: clone,
				Branch: "changes", BaseBranch: "master", Commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
				PullRequest: 2, Title: "Update the README with new information.", Action: "opened",
				HeadRepo: repo, Author: "Codertocat",
				URL: "https://github.com/Codertocat/Hello-World/pull/2",
			}},
		},
		{
			file: "github/pull_request_synchronize.json", event: "pull_request", delivery: "d1b1c6a0-0005-11ef-8000-000000000005",
			want: []forge.Event{{
				Forge: "github", Kind: forge.PullRequest, DeliveryID: "d1b1c6a0-0005-11ef-8000-000000000005",
				Repo: repo, CloneURL: clone,
				Branch: "changes", BaseBranch: "master",
				Commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821", Before: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
				PullRequest: 2, Title: "Update the README with new information.", Action: "synchronized",
				HeadRepo: repo, Author: "Codertocat",
				URL: "https://github.com/Codertocat/Hello-World/pull/2",
			}},
		},
		{
			file: "github/ping.json", event: "ping", delivery: "d1b1c6a0-0006-11ef-8000-000000000006",
			want: []forge.Event{{
				Forge: "github", Kind: forge.Ping, DeliveryID: "d1b1c6a0-0006-11ef-8000-000000000006",
				Repo: "Octocoders/Hello-World", CloneURL: "https://github.com/Octocoders/Hello-World.git",
				Author: "Codertocat",
			}},
		},
		{
			file: "github/create_tag.json", event: "create", delivery: "d1b1c6a0-0007-11ef-8000-000000000007",
			want: []forge.Event{{
				Forge: "github", Kind: forge.Ignored, DeliveryID: "d1b1c6a0-0007-11ef-8000-000000000007",
				Reason: "create events are not built: the push event for the same ref is",
				Repo:   repo, CloneURL: clone, Author: "Codertocat",
			}},
		},
	}
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	var cases []forgetest.Case
	for _, tt := range fixtures() {
		cases = append(cases, forgetest.Case{File: tt.file, Header: header(tt.event, tt.delivery), Want: tt.want})
	}
	forgetest.TestFixtures(t, Parse, cases, "github")
}

func TestVerify(t *testing.T) {
	t.Parallel()
	forgetest.TestHMAC(t, Verify, "X-Hub-Signature-256", "sha256=")
}

// TestVerifyDocVector checks the example from GitHub's "Validating webhook
// deliveries" page.
func TestVerifyDocVector(t *testing.T) {
	t.Parallel()
	const secret = "It's a Secret to Everybody"
	h := forgetest.Header("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if err := Verify(h, []byte("Hello, World!"), secret); err != nil {
		t.Errorf("Verify(doc vector) = %v, want nil", err)
	}
	if err := Verify(h, []byte("Hello, World?"), secret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(doc vector, tampered body) = %v, want ErrSignature", err)
	}
	if err := Verify(h, []byte("Hello, World!"), "It's a secret to everybody"); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(doc vector, wrong secret) = %v, want ErrSignature", err)
	}
	legacy := forgetest.Header("X-Hub-Signature", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")
	if err := Verify(legacy, []byte("Hello, World!"), secret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(only the SHA-1 X-Hub-Signature) = %v, want ErrSignature", err)
	}
}

func TestReceive(t *testing.T) {
	t.Parallel()
	const secret = "It's a Secret to Everybody"
	h := header("ping", "abc")
	h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if _, err := Webhook().Receive(h, []byte("Hello, World!"), "wrong"); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Receive(wrong secret) = %v, want ErrSignature", err)
	}
	// A valid signature over a body that is not JSON: verified, then malformed.
	if _, err := Webhook().Receive(h, []byte("Hello, World!"), secret); !errors.Is(err, forge.ErrMalformed) {
		t.Errorf("Receive(signed non-JSON) = %v, want ErrMalformed", err)
	}
}

// TestParseVariants covers what the fixtures do not: derived payloads for
// ignored actions, forks, annotated tags and the changed-paths rules.
func TestParseVariants(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "github/push.json")
	pr := forgetest.Fixture(t, "github/pull_request_synchronize.json")
	tag := forgetest.Fixture(t, "github/push_tag_created.json")
	// ordinary is push.json turned into a push of two commits onto an
	// existing branch, the case GitHub publishes no example of.
	ordinary := func(m map[string]any) {
		m["before"] = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
		m["created"] = false
		m["commits"] = []any{
			map[string]any{"id": "1111111111111111111111111111111111111111", "message": "one", "added": []any{"b.go"}, "removed": []any{}, "modified": []any{"README.md"}},
			map[string]any{"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "two", "added": []any{}, "removed": []any{"a.go"}, "modified": []any{"README.md"}},
		}
	}
	tests := []struct {
		name  string
		event string
		body  []byte
		check func(t *testing.T, e forge.Event)
	}{
		{
			name: "ordinary push lists changed paths", event: "push",
			body: forgetest.Patch(t, push, ordinary),
			check: func(t *testing.T, e forge.Event) {
				if want := []string{"README.md", "a.go", "b.go"}; !slices.Equal(e.ChangedPaths, want) {
					t.Errorf("ChangedPaths = %q, want %q", e.ChangedPaths, want)
				}
				if e.Before != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" {
					t.Errorf("Before = %q, want f95f852…", e.Before)
				}
			},
		},
		{
			name: "commits touching no file give empty, not nil, paths", event: "push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				ordinary(m)
				m["commits"] = []any{map[string]any{"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "added": []any{}, "removed": []any{}, "modified": []any{}}}
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.ChangedPaths == nil || len(e.ChangedPaths) != 0 {
					t.Errorf("ChangedPaths = %#v, want []string{}", e.ChangedPaths)
				}
			},
		},
		{
			name: "forced push has unknown paths", event: "push",
			body: forgetest.Patch(t, push, func(m map[string]any) { ordinary(m); m["forced"] = true }),
			check: func(t *testing.T, e forge.Event) {
				if e.ChangedPaths != nil {
					t.Errorf("ChangedPaths = %q, want nil", e.ChangedPaths)
				}
			},
		},
		{
			name: "commit without file lists gives unknown paths", event: "push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				ordinary(m)
				delete(m["commits"].([]any)[0].(map[string]any), "added")
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.ChangedPaths != nil {
					t.Errorf("ChangedPaths = %q, want nil", e.ChangedPaths)
				}
			},
		},
		{
			name: "branch deletion", event: "push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["before"], m["after"] = m["after"], "0000000000000000000000000000000000000000"
				m["created"], m["deleted"], m["head_commit"], m["commits"] = false, true, nil, []any{}
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Push || !e.Deleted || e.Commit != "" || e.Branch != "master" || e.Before != "6113728f27ae82c7b1a177c8d03f9e96e0adf246" {
					t.Errorf("Parse(branch deletion) = %+v, want a deleted Push of master", e)
				}
			},
		},
		{
			name: "annotated tag builds the commit, not the tag object", event: "push",
			body: forgetest.Patch(t, tag, func(m map[string]any) { m["after"] = "aaaabbbbccccddddeeeeffff0000111122223333" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Commit != "6113728f27ae82c7b1a177c8d03f9e96e0adf246" {
					t.Errorf("Commit = %q, want head_commit.id 6113728…", e.Commit)
				}
			},
		},
		{
			name: "push to a note ref is ignored", event: "push",
			body: forgetest.Patch(t, push, func(m map[string]any) { m["ref"] = "refs/notes/commits" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "push to refs/notes/commits is not a branch or tag push" {
					t.Errorf("Parse(notes push) = %+v, want Ignored", e)
				}
			},
		},
		{
			name: "closed pull request is ignored", event: "pull_request",
			body: forgetest.Patch(t, pr, func(m map[string]any) { m["action"] = "closed" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "closed" || e.Reason != "pull_request action closed is not built" {
					t.Errorf("Parse(closed) = %+v, want Ignored with action closed", e)
				}
			},
		},
		{
			name: "merged pull request is ignored as merged", event: "pull_request",
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				m["action"] = "closed"
				forgetest.Obj(t, m, "pull_request")["merged"] = true
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "merged" {
					t.Errorf("Parse(merged) = %+v, want Ignored with action merged", e)
				}
			},
		},
		{
			name: "reopened pull request is built", event: "pull_request",
			body: forgetest.Patch(t, pr, func(m map[string]any) { m["action"] = "reopened" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.PullRequest || e.Action != "reopened" {
					t.Errorf("Parse(reopened) = %+v, want PullRequest reopened", e)
				}
			},
		},
		{
			name: "pull request from a fork", event: "pull_request",
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				head := forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "head")
				repo := forgetest.Obj(t, head, "repo")
				repo["id"], repo["full_name"] = 42, "stranger/Hello-World"
			}),
			check: func(t *testing.T, e forge.Event) {
				if !e.FromFork || e.HeadRepo != "stranger/Hello-World" || e.Repo != "Codertocat/Hello-World" {
					t.Errorf("Parse(fork pull request) = %+v, want FromFork from stranger/Hello-World", e)
				}
			},
		},
		{
			name: "pull request whose fork was deleted counts as a fork", event: "pull_request",
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "head")["repo"] = nil
			}),
			check: func(t *testing.T, e forge.Event) {
				if !e.FromFork || e.HeadRepo != "" {
					t.Errorf("Parse(deleted fork) = %+v, want FromFork and no HeadRepo", e)
				}
			},
		},
		{
			name: "issue comment is ignored", event: "issue_comment",
			body: []byte(`{"action":"created","repository":{"full_name":"o/r"}}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "issue_comment events are not built" || e.Repo != "o/r" {
					t.Errorf("Parse(issue_comment) = %+v, want Ignored", e)
				}
			},
		},
		{
			name: "odd event name is quoted in the reason", event: "evil\nname",
			body: []byte(`{}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Reason != `"evil\nname" events are not built` {
					t.Errorf("Reason = %q, want the name quoted", e.Reason)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(header(tt.event, "id"), tt.body)
			forgetest.CheckParse(t, "Parse", got, err)
			if err != nil || len(got) != 1 {
				t.Fatalf("Parse(%s) = %v, %v, want one event", tt.name, got, err)
			}
			tt.check(t, got[0])
		})
	}
}

func TestParseForm(t *testing.T) {
	t.Parallel()
	body := forgetest.Fixture(t, "github/push.json")
	form := []byte(url.Values{"payload": {string(body)}}.Encode())
	h := header("push", "id")
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	got, err := Parse(h, form)
	if err != nil || len(got) != 1 || got[0].Commit != "6113728f27ae82c7b1a177c8d03f9e96e0adf246" {
		t.Errorf("Parse(form push) = %+v, %v, want the push of 6113728…", got, err)
	}
	if _, err := Parse(h, []byte("other=1")); !errors.Is(err, forge.ErrMalformed) {
		t.Errorf("Parse(form without payload) = %v, want ErrMalformed", err)
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "github/push.json")
	pr := forgetest.Fixture(t, "github/pull_request_opened.json")
	tests := []struct {
		name  string
		event string
		body  []byte
	}{
		{"no event header", "", push},
		{"not JSON", "push", []byte("Hello, World!")},
		{"empty body", "push", nil},
		{"JSON null", "push", []byte("null")},
		{"JSON array", "push", []byte(`[{"ref":"refs/heads/main"}]`)},
		{"truncated JSON", "push", push[:len(push)/2]},
		{"ref of the wrong type", "push", []byte(`{"ref":5}`)},
		{"push without repository", "push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "repository") })},
		{"push without ref", "push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "ref") })},
		{"push without after", "push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "after") })},
		{"after is an option", "push", forgetest.Patch(t, push, func(m map[string]any) { m["after"] = "--upload-pack=touch /tmp/x" })},
		{"before is not hex", "push", forgetest.Patch(t, push, func(m map[string]any) { m["before"] = "HEAD~1" })},
		{"pull request without pull_request", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) { delete(m, "pull_request") })},
		{"pull request without repository", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) {
			delete(m, "repository")
			delete(forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "base"), "repo")
		})},
		{"pull request without head sha", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) {
			delete(forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "head"), "sha")
		})},
		{"pull request number is a string", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) { m["number"] = "2" })},
		{"ping that is not JSON", "ping", []byte("zen")},
		{"ignored event that is not JSON", "issues", []byte("<xml/>")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(header(tt.event, "id"), tt.body)
			if !errors.Is(err, forge.ErrMalformed) {
				t.Errorf("Parse(%s) = %+v, %v, want ErrMalformed", tt.name, got, err)
			}
			forgetest.CheckParse(t, "Parse("+tt.name+")", got, err)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","repository":{"full_name":"o/r"}}`))
	f.Add("pull_request", []byte(`{"action":"opened","pull_request":{"number":1,"head":{"ref":"a","sha":"6113728"},"base":{"ref":"b"}},"repository":{"full_name":"o/r"}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		got, err := Parse(header(event, "id"), body)
		forgetest.CheckParse(t, "Parse", got, err)
	})
}
