package bitbucket

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/forgetest"
)

// The signed capture and its secret (fixtures README).
const (
	signedFile   = "bitbucket/repo_push_branch_created_signed.json"
	signedSecret = "Gkvl$k$wyNpQAF42"
	signedHeader = "sha256=f205c729821c6954aff2afe72b965c34015b4baf96ea8ddc2cc44999c014a035"
)

// header returns the headers Bitbucket Cloud sends with a delivery of event.
func header(event, requestUUID string) http.Header {
	return forgetest.Header("X-Event-Key", event, "X-Request-UUID", requestUUID,
		"X-Hook-UUID", "0b1e6a5c-hook", "X-Attempt-Number", "1", "User-Agent", "Bitbucket-Webhooks/2.0")
}

// fixtures is every Bitbucket fixture with the delivery headers it is parsed
// with and the events it must become.
func fixtures() []struct {
	file, event, delivery string
	want                  []forge.Event
} {
	return []struct {
		file, event, delivery string
		want                  []forge.Event
	}{
		{
			file: "bitbucket/repo_push.json", event: "repo:push", delivery: "b1b1b1b1-0001-4000-8000-000000000001",
			want: []forge.Event{{
				Forge: "bitbucket", Kind: forge.Push, DeliveryID: "b1b1b1b1-0001-4000-8000-000000000001",
				Repo: "martinherren1984/publictestrepo", CloneURL: "https://bitbucket.org/martinherren1984/publictestrepo.git",
				Branch: "main", Commit: "c14c1bb05dfb1fdcdf06b31485fff61b0ea44277",
				Before: "a51241ae1f00cbe728930db48e890b18fd527f99",
				Author: "Martin Herren", AuthorEmail: "martin.herren@yyy.com",
				Message: "a",
				URL:     "https://bitbucket.org/martinherren1984/publictestrepo/branches/compare/c14c1bb05dfb1fdcdf06b31485fff61b0ea44277..a51241ae1f00cbe728930db48e890b18fd527f99",
			}},
		},
		{
			file: "bitbucket/repo_push_tag_created.json", event: "repo:push", delivery: "b1b1b1b1-0002-4000-8000-000000000002",
			want: []forge.Event{{
				Forge: "bitbucket", Kind: forge.Tag, DeliveryID: "b1b1b1b1-0002-4000-8000-000000000002",
				Repo: "amuniz/test-repos", CloneURL: "https://bitbucket.org/amuniz/test-repos.git",
				Tag: "simple-tag", Commit: "7ef5981d59145c3ed300b1ab77b93907d33abe59",
				Author: "Nikolas Falco", AuthorEmail: "email@domain.com",
				Message: "Test pipeline for issue JENKINS-75182",
				URL:     "https://bitbucket.org/amuniz/test-repos/commits/tag/simple-tag",
			}},
		},
		{
			file: signedFile, event: "repo:push", delivery: "b1b1b1b1-0003-4000-8000-000000000003",
			want: []forge.Event{{
				Forge: "bitbucket", Kind: forge.Push, DeliveryID: "b1b1b1b1-0003-4000-8000-000000000003",
				Repo: "nfalco79/test-repos", CloneURL: "https://bitbucket.org/nfalco79/test-repos.git",
				Branch: "feature/webhook", Commit: "d7f300a32270053bdfd97a6d64113f58202c33e7",
				Author: "Nikolas Falco", AuthorEmail: "nfalco79@hotmail.com",
				Message: "Test for webhook signature",
				URL:     "https://bitbucket.org/nfalco79/test-repos/branch/feature/webhook",
			}},
		},
		{
			file: "bitbucket/pullrequest_created.json", event: "pullrequest:created", delivery: "b1b1b1b1-0004-4000-8000-000000000004",
			want: []forge.Event{{
				Forge: "bitbucket", Kind: forge.PullRequest, DeliveryID: "b1b1b1b1-0004-4000-8000-000000000004",
				Repo: "amuniz/test-repos", CloneURL: "https://bitbucket.org/amuniz/test-repos.git",
				// Bitbucket abbreviates pull request SHAs to 12 digits.
				Branch: "feature/test", BaseBranch: "master", Commit: "d31df3425c5b",
				PullRequest: 735, Title: "BUILD test", Action: "opened",
				HeadRepo: "amuniz/test-repos", Author: "Nikolas Falco",
				URL: "https://bitbucket.org/amuniz/test-repos/pull-requests/735",
			}},
		},
		{
			file: "bitbucket/pullrequest_updated.json", event: "pullrequest:updated", delivery: "b1b1b1b1-0005-4000-8000-000000000005",
			want: []forge.Event{{
				Forge: "bitbucket", Kind: forge.PullRequest, DeliveryID: "b1b1b1b1-0005-4000-8000-000000000005",
				Repo: "nfalco79/test-repos", CloneURL: "https://bitbucket.org/nfalco79/test-repos.git",
				Branch: "release/release-1", BaseBranch: "master", Commit: "f945c96c71d0",
				PullRequest: 1, Title: "Release/release 1", Action: "synchronized",
				HeadRepo: "nfalco79/test-repos", Author: "Former user",
				URL: "https://bitbucket.org/nfalco79/test-repos/pull-requests/1",
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
	forgetest.TestFixtures(t, Parse, cases, "bitbucket")
}

func TestVerify(t *testing.T) {
	t.Parallel()
	forgetest.TestHMAC(t, Verify, "X-Hub-Signature", "sha256=")
}

// TestVerifySigned checks the real signed capture.
func TestVerifySigned(t *testing.T) {
	t.Parallel()
	body := forgetest.Fixture(t, signedFile)
	if len(body) != 14515 {
		t.Fatalf("%s is %d bytes, want 14515: the fixture was reformatted and no longer matches its signature", signedFile, len(body))
	}
	h := header("repo:push", "id")
	h.Set("X-Hub-Signature", signedHeader)
	if err := Verify(h, body, signedSecret); err != nil {
		t.Errorf("Verify(signed capture) = %v, want nil", err)
	}
	tampered := slices.Clone(body)
	tampered[100] ^= 1
	if err := Verify(h, tampered, signedSecret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(tampered capture) = %v, want ErrSignature", err)
	}
	if err := Verify(h, append(slices.Clone(body), '\n'), signedSecret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(capture with a final newline) = %v, want ErrSignature", err)
	}
	if err := Verify(h, body, "gkvl$k$wyNpQAF42"); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(wrong secret) = %v, want ErrSignature", err)
	}
	// GitHub's header name is not Bitbucket's.
	github := forgetest.Header("X-Hub-Signature-256", signedHeader)
	if err := Verify(github, body, signedSecret); !errors.Is(err, forge.ErrSignature) {
		t.Errorf("Verify(signature in X-Hub-Signature-256) = %v, want ErrSignature", err)
	}
	events, err := Webhook().Receive(h, body, signedSecret)
	if err != nil || len(events) != 1 || events[0].Branch != "feature/webhook" {
		t.Errorf("Receive(signed capture) = %+v, %v, want the push of feature/webhook", events, err)
	}
}

// TestParseVariants covers what the fixtures do not.
func TestParseVariants(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "bitbucket/repo_push.json")
	tagPush := forgetest.Fixture(t, "bitbucket/repo_push_tag_created.json")
	pr := forgetest.Fixture(t, "bitbucket/pullrequest_created.json")
	change := func(t *testing.T, m map[string]any) map[string]any {
		return forgetest.Obj(t, m, "push")["changes"].([]any)[0].(map[string]any)
	}
	var tagChange map[string]any
	forgetest.Patch(t, tagPush, func(m map[string]any) { tagChange = change(t, m) })
	tests := []struct {
		name  string
		event string
		body  []byte
		check func(t *testing.T, got []forge.Event)
	}{
		{
			name: "a push of a branch and a tag gives two events", event: "repo:push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				p := forgetest.Obj(t, m, "push")
				p["changes"] = append(p["changes"].([]any), tagChange)
			}),
			check: func(t *testing.T, got []forge.Event) {
				if len(got) != 2 || got[0].Kind != forge.Push || got[0].Branch != "main" ||
					got[1].Kind != forge.Tag || got[1].Tag != "simple-tag" || got[1].Commit != "7ef5981d59145c3ed300b1ab77b93907d33abe59" {
					t.Fatalf("Parse(branch and tag push) = %+v, want Push main then Tag simple-tag", got)
				}
				if got[0].DeliveryID != got[1].DeliveryID || got[1].Repo != "martinherren1984/publictestrepo" {
					t.Errorf("Parse(branch and tag push) = %+v, want both from the same delivery and repository", got)
				}
			},
		},
		{
			name: "branch deletion", event: "repo:push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				c := change(t, m)
				c["new"], c["closed"], c["commits"] = nil, true, []any{}
			}),
			check: func(t *testing.T, got []forge.Event) {
				e := got[0]
				if len(got) != 1 || e.Kind != forge.Push || !e.Deleted || e.Branch != "main" || e.Commit != "" || e.Before != "a51241ae1f00cbe728930db48e890b18fd527f99" {
					t.Errorf("Parse(branch deletion) = %+v, want a deleted Push of main", got)
				}
			},
		},
		{
			name: "tag deletion", event: "repo:push",
			body: forgetest.Patch(t, tagPush, func(m map[string]any) {
				c := change(t, m)
				c["old"], c["new"] = c["new"], nil
			}),
			check: func(t *testing.T, got []forge.Event) {
				e := got[0]
				if len(got) != 1 || e.Kind != forge.Tag || !e.Deleted || e.Tag != "simple-tag" || e.Before != "7ef5981d59145c3ed300b1ab77b93907d33abe59" {
					t.Errorf("Parse(tag deletion) = %+v, want a deleted Tag simple-tag", got)
				}
			},
		},
		{
			name: "push without changes is ignored", event: "repo:push",
			body: forgetest.Patch(t, push, func(m map[string]any) { forgetest.Obj(t, m, "push")["changes"] = []any{} }),
			check: func(t *testing.T, got []forge.Event) {
				if len(got) != 1 || got[0].Kind != forge.Ignored || got[0].Reason != "repo:push without ref changes is not built" {
					t.Errorf("Parse(no changes) = %+v, want one Ignored event", got)
				}
			},
		},
		{
			name: "push to a bookmark is ignored", event: "repo:push",
			body: forgetest.Patch(t, push, func(m map[string]any) { forgetest.Obj(t, change(t, m), "new")["type"] = "bookmark" }),
			check: func(t *testing.T, got []forge.Event) {
				if len(got) != 1 || got[0].Kind != forge.Ignored || got[0].Reason != "push to a bookmark is not a branch or tag push" {
					t.Errorf("Parse(bookmark) = %+v, want one Ignored event", got)
				}
			},
		},
		{
			name: "no email when the commit author is not the pusher", event: "repo:push",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				target := forgetest.Obj(t, forgetest.Obj(t, change(t, m), "new"), "target")
				forgetest.Obj(t, forgetest.Obj(t, target, "author"), "user")["uuid"] = "{someone-else}"
			}),
			check: func(t *testing.T, got []forge.Event) {
				if got[0].AuthorEmail != "" || got[0].Author != "Martin Herren" {
					t.Errorf("Parse = %+v, want Author Martin Herren without email", got)
				}
			},
		},
		{
			name: "pull request from a fork", event: "pullrequest:created",
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				src := forgetest.Obj(t, forgetest.Obj(t, forgetest.Obj(t, m, "pullrequest"), "source"), "repository")
				src["uuid"], src["full_name"] = "{0000-fork}", "stranger/test-repos"
			}),
			check: func(t *testing.T, got []forge.Event) {
				if !got[0].FromFork || got[0].HeadRepo != "stranger/test-repos" || got[0].Repo != "amuniz/test-repos" {
					t.Errorf("Parse(fork) = %+v, want FromFork from stranger/test-repos", got)
				}
			},
		},
		{
			name: "pull request without source repository counts as a fork", event: "pullrequest:created",
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				delete(forgetest.Obj(t, forgetest.Obj(t, m, "pullrequest"), "source"), "repository")
			}),
			check: func(t *testing.T, got []forge.Event) {
				if !got[0].FromFork || got[0].HeadRepo != "" {
					t.Errorf("Parse = %+v, want FromFork without HeadRepo", got)
				}
			},
		},
		{
			name: "merged pull request is ignored", event: "pullrequest:fulfilled",
			body: pr,
			check: func(t *testing.T, got []forge.Event) {
				if got[0].Kind != forge.Ignored || got[0].Action != "merged" || got[0].Reason != "pullrequest:fulfilled events are not built" {
					t.Errorf("Parse(fulfilled) = %+v, want Ignored merged", got)
				}
			},
		},
		{
			name: "Data Center event is ignored", event: "repo:refs_changed",
			body: []byte(`{"eventKey":"repo:refs_changed","changes":[]}`),
			check: func(t *testing.T, got []forge.Event) {
				if got[0].Kind != forge.Ignored || got[0].Repo != "" {
					t.Errorf("Parse(repo:refs_changed) = %+v, want Ignored", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(header(tt.event, "id"), tt.body)
			forgetest.CheckParse(t, "Parse", got, err)
			if err != nil || len(got) == 0 {
				t.Fatalf("Parse(%s) = %v, %v, want events", tt.name, got, err)
			}
			tt.check(t, got)
		})
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "bitbucket/repo_push.json")
	pr := forgetest.Fixture(t, "bitbucket/pullrequest_updated.json")
	change := func(m map[string]any) map[string]any {
		return forgetest.Obj(t, m, "push")["changes"].([]any)[0].(map[string]any)
	}
	withPR := func(edit func(p map[string]any)) []byte {
		return forgetest.Patch(t, pr, func(m map[string]any) { edit(forgetest.Obj(t, m, "pullrequest")) })
	}
	tests := []struct {
		name  string
		event string
		body  []byte
	}{
		{"no event header", "", push},
		{"not JSON", "repo:push", []byte("push")},
		{"empty body", "repo:push", nil},
		{"JSON true", "repo:push", []byte("true")},
		{"changes of the wrong type", "repo:push", forgetest.Patch(t, push, func(m map[string]any) { forgetest.Obj(t, m, "push")["changes"] = map[string]any{} })},
		{"push without repository", "repo:push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "repository") })},
		{"push without push", "repo:push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "push") })},
		{"new ref without hash", "repo:push", forgetest.Patch(t, push, func(m map[string]any) {
			delete(forgetest.Obj(t, forgetest.Obj(t, change(m), "new"), "target"), "hash")
		})},
		{"new ref without name", "repo:push", forgetest.Patch(t, push, func(m map[string]any) { forgetest.Obj(t, change(m), "new")["name"] = "" })},
		{"hash is not hex", "repo:push", forgetest.Patch(t, push, func(m map[string]any) {
			forgetest.Obj(t, forgetest.Obj(t, change(m), "new"), "target")["hash"] = "--output=/etc/passwd"
		})},
		{"pull request without pullrequest", "pullrequest:updated", forgetest.Patch(t, pr, func(m map[string]any) { delete(m, "pullrequest") })},
		{"pull request without repository", "pullrequest:updated", forgetest.Patch(t, pr, func(m map[string]any) {
			delete(m, "repository")
			delete(forgetest.Obj(t, forgetest.Obj(t, m, "pullrequest"), "destination"), "repository")
		})},
		{"pull request without id", "pullrequest:updated", withPR(func(p map[string]any) { delete(p, "id") })},
		{"pull request without source commit", "pullrequest:updated", withPR(func(p map[string]any) { delete(forgetest.Obj(t, p, "source"), "commit") })},
		{"pull request without destination branch", "pullrequest:created", withPR(func(p map[string]any) { delete(forgetest.Obj(t, p, "destination"), "branch") })},
		{"ignored event that is not JSON", "issue:created", []byte("[")},
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
	f.Add("repo:push", []byte(`{"repository":{"full_name":"o/r"},"push":{"changes":[{"old":null,"new":{"type":"branch","name":"main","target":{"hash":"c14c1bb05dfb"}}}]}}`))
	f.Add("pullrequest:created", []byte(`{"repository":{"full_name":"o/r"},"pullrequest":{"id":1,"source":{"branch":{"name":"a"},"commit":{"hash":"d31df3425c5b"}},"destination":{"branch":{"name":"b"}}}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		got, err := Parse(header(event, "id"), body)
		forgetest.CheckParse(t, "Parse", got, err)
	})
}
