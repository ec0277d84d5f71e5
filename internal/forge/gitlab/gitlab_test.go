package gitlab

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/forgetest"
)

// header returns the headers GitLab 17.4+ sends with a delivery of event.
func header(event, idempotencyKey string) http.Header {
	return forgetest.Header("X-Gitlab-Event", event, "Idempotency-Key", idempotencyKey,
		"X-Gitlab-Event-UUID", "event-"+idempotencyKey, "X-Gitlab-Token", "t0ken")
}

// fixtures is every GitLab fixture with the delivery headers it is parsed
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
			file: "gitlab/push.json", event: "Push Hook", delivery: "9b1c0d2e-0001-4000-8000-000000000001",
			want: []forge.Event{{
				Forge: "gitlab", Kind: forge.Push, DeliveryID: "9b1c0d2e-0001-4000-8000-000000000001",
				Repo: "mike/diaspora", CloneURL: "http://example.com/mike/diaspora.git",
				Branch: "master", Commit: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				Before: "95790bf891e76fee5e1747ab589903a6a1f80f22",
				Author: "jsmith", AuthorEmail: "john@example.com",
				Message: "fixed readme",
				// total_commits_count is 4 but only 2 commits are listed.
				ChangedPaths: nil,
				URL:          "http://example.com/mike/diaspora/-/compare/95790bf891e76fee5e1747ab589903a6a1f80f22...da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
			}},
		},
		{
			file: "gitlab/tag_push.json", event: "Tag Push Hook", delivery: "9b1c0d2e-0002-4000-8000-000000000002",
			want: []forge.Event{{
				Forge: "gitlab", Kind: forge.Tag, DeliveryID: "9b1c0d2e-0002-4000-8000-000000000002",
				Repo: "jsmith/example", CloneURL: "http://example.com/jsmith/example.git",
				Tag: "v1.0.0", Commit: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
				// The doc example has no user_username or user_email,
				// only the display name "John Smith".
				Author: "",
				URL:    "http://example.com/jsmith/example/-/commit/82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
			}},
		},
		{
			file: "gitlab/merge_request.json", event: "Merge Request Hook", delivery: "9b1c0d2e-0003-4000-8000-000000000003",
			want: []forge.Event{{
				Forge: "gitlab", Kind: forge.PullRequest, DeliveryID: "9b1c0d2e-0003-4000-8000-000000000003",
				// The doc example's project (gitlabhq/gitlab-test) is
				// not its target (awesome_space/awesome_project); Repo is
				// the hook's project.
				Repo: "gitlabhq/gitlab-test", CloneURL: "http://example.com/gitlabhq/gitlab-test.git",
				Branch: "ms-viewport", BaseBranch: "master", Commit: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				PullRequest: 1, Title: "MS-Viewport", Action: "opened",
				HeadRepo: "awesome_space/awesome_project",
				Author:   "root", AuthorEmail: "admin@example.com",
				Message: "fixed readme",
				URL:     "http://example.com/diaspora/merge_requests/1",
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
	forgetest.TestFixtures(t, Parse, cases, "gitlab")
}

func TestDeliveryID(t *testing.T) {
	t.Parallel()
	body := forgetest.Fixture(t, "gitlab/push.json")
	tests := []struct {
		name   string
		header http.Header
		want   string
	}{
		{"Idempotency-Key first", forgetest.Header("X-Gitlab-Event", "Push Hook", "Idempotency-Key", "idem", "X-Gitlab-Event-UUID", "uuid"), "idem"},
		{"X-Gitlab-Event-UUID before GitLab 17.4", forgetest.Header("X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "uuid"), "uuid"},
		{"none", forgetest.Header("X-Gitlab-Event", "Push Hook"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.header, body)
			if err != nil || got[0].DeliveryID != tt.want {
				t.Errorf("Parse(%v).DeliveryID = %+v, %v, want %q", tt.header, got, err, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const secret = "gl-s3cret token"
	body := forgetest.Fixture(t, "gitlab/push.json")
	tests := []struct {
		name   string
		header http.Header
		secret string
		ok     bool
	}{
		{"right token", forgetest.Header("X-Gitlab-Token", secret), secret, true},
		{"wrong token", forgetest.Header("X-Gitlab-Token", "gl-s3cret tokem"), secret, false},
		{"token with a trailing space", forgetest.Header("X-Gitlab-Token", secret+" "), secret, false},
		{"prefix of the token", forgetest.Header("X-Gitlab-Token", secret[:4]), secret, false},
		{"token in another case", forgetest.Header("X-Gitlab-Token", strings.ToUpper(secret)), secret, false},
		{"missing token", http.Header{}, secret, false},
		{"empty token", forgetest.Header("X-Gitlab-Token", ""), secret, false},
		{"no secret configured", forgetest.Header("X-Gitlab-Token", ""), "", false},
		{"no secret configured, token sent", forgetest.Header("X-Gitlab-Token", secret), "", false},
		{"token in another header", forgetest.Header("X-Hub-Signature", secret), secret, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(tt.header, body, tt.secret)
			if tt.ok {
				if err != nil {
					t.Errorf("Verify(%s) = %v, want nil", tt.name, err)
				}
				return
			}
			if !errors.Is(err, forge.ErrSignature) {
				t.Fatalf("Verify(%s) = %v, want ErrSignature", tt.name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "X-Gitlab-Token") || strings.Contains(msg, secret) {
				t.Errorf("Verify(%s) = %q, want a message naming X-Gitlab-Token without the secret", tt.name, msg)
			}
		})
	}
}

// TestParseVariants covers what the fixtures do not.
func TestParseVariants(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "gitlab/push.json")
	tag := forgetest.Fixture(t, "gitlab/tag_push.json")
	mr := forgetest.Fixture(t, "gitlab/merge_request.json")
	withMR := func(edit func(attrs map[string]any)) []byte {
		return forgetest.Patch(t, mr, func(m map[string]any) { edit(forgetest.Obj(t, m, "object_attributes")) })
	}
	tests := []struct {
		name  string
		event string
		body  []byte
		check func(t *testing.T, e forge.Event)
	}{
		{
			name: "complete commit list gives changed paths", event: "Push Hook",
			body: forgetest.Patch(t, push, func(m map[string]any) { m["total_commits_count"] = 2 }),
			check: func(t *testing.T, e forge.Event) {
				if want := []string{"CHANGELOG", "app/controller/application.rb"}; !slices.Equal(e.ChangedPaths, want) {
					t.Errorf("ChangedPaths = %q, want %q", e.ChangedPaths, want)
				}
			},
		},
		{
			name: "created branch has unknown paths", event: "Push Hook",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["before"], m["total_commits_count"] = "0000000000000000000000000000000000000000", 2
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.ChangedPaths != nil || e.Before != "" || e.URL != "http://example.com/mike/diaspora/-/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7" {
					t.Errorf("Parse(created branch) = %+v, want no paths, no Before, a commit URL", e)
				}
			},
		},
		{
			name: "branch deletion", event: "Push Hook",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["after"], m["checkout_sha"] = "0000000000000000000000000000000000000000", nil
				m["commits"], m["total_commits_count"] = []any{}, 0
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Push || !e.Deleted || e.Commit != "" || e.Branch != "master" || e.Before != "95790bf891e76fee5e1747ab589903a6a1f80f22" {
					t.Errorf("Parse(branch deletion) = %+v, want a deleted Push of master", e)
				}
			},
		},
		{
			name: "annotated tag builds checkout_sha", event: "Tag Push Hook",
			body: forgetest.Patch(t, tag, func(m map[string]any) { m["after"] = "aaaabbbbccccddddeeeeffff0000111122223333" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Commit != "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7" {
					t.Errorf("Commit = %q, want checkout_sha 82b3d5a…", e.Commit)
				}
			},
		},
		{
			name: "redacted email is dropped, subgroups are kept", event: "Push Hook",
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["user_email"] = "[REDACTED]"
				forgetest.Obj(t, m, "project")["path_with_namespace"] = "mike/tools/diaspora"
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.AuthorEmail != "" || e.Repo != "mike/tools/diaspora" {
					t.Errorf("Parse = %+v, want no email and Repo mike/tools/diaspora", e)
				}
			},
		},
		{
			name: "system hook push", event: "System Hook",
			body: push,
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Push || e.Commit != "da1560886d4f094c3e6c9ef40349f7d38b5d27d7" {
					t.Errorf("Parse(system hook push) = %+v, want the Push", e)
				}
			},
		},
		{
			name: "system hook of another kind is ignored", event: "System Hook",
			body: []byte(`{"object_kind":"repository_update","event_name":"repository_update"}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "System Hook repository_update events are not built" {
					t.Errorf("Parse = %+v, want Ignored", e)
				}
			},
		},
		{
			name: "update with new commits is built", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) {
				a["action"], a["oldrev"] = "update", "95790bf891e76fee5e1747ab589903a6a1f80f22"
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.PullRequest || e.Action != "synchronized" || e.Before != "95790bf891e76fee5e1747ab589903a6a1f80f22" {
					t.Errorf("Parse(update with oldrev) = %+v, want PullRequest synchronized from 95790bf…", e)
				}
			},
		},
		{
			name: "update without new commits is ignored", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) { a["action"] = "update" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "updated" || e.Reason != "merge_request update without new commits (no oldrev) is not built" {
					t.Errorf("Parse(update without oldrev) = %+v, want Ignored", e)
				}
			},
		},
		{
			name: "reopen is built", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) { a["action"] = "reopen" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.PullRequest || e.Action != "reopened" {
					t.Errorf("Parse(reopen) = %+v, want PullRequest reopened", e)
				}
			},
		},
		{
			name: "merge is ignored", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) { a["action"] = "merge" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "merged" || e.Reason != "merge_request action merged is not built" {
					t.Errorf("Parse(merge) = %+v, want Ignored merged", e)
				}
			},
		},
		{
			name: "approval is ignored", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) { a["action"] = "approved" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "approved" {
					t.Errorf("Parse(approved) = %+v, want Ignored approved", e)
				}
			},
		},
		{
			name: "merge request from a fork", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) {
				a["source_project_id"] = 99
				forgetest.Obj(t, a, "source")["path_with_namespace"] = "stranger/awesome_project"
			}),
			check: func(t *testing.T, e forge.Event) {
				if !e.FromFork || e.HeadRepo != "stranger/awesome_project" {
					t.Errorf("Parse(fork) = %+v, want FromFork from stranger/awesome_project", e)
				}
			},
		},
		{
			name: "merge request whose source project is gone counts as a fork", event: "Merge Request Hook",
			body: withMR(func(a map[string]any) { a["source"], a["source_project_id"] = nil, nil }),
			check: func(t *testing.T, e forge.Event) {
				if !e.FromFork || e.HeadRepo != "" {
					t.Errorf("Parse(no source) = %+v, want FromFork, no HeadRepo", e)
				}
			},
		},
		{
			name: "note is ignored", event: "Note Hook",
			body: []byte(`{"object_kind":"note","project":{"path_with_namespace":"g/p"}}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "Note Hook events are not built" || e.Repo != "g/p" {
					t.Errorf("Parse(note) = %+v, want Ignored", e)
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

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "gitlab/push.json")
	mr := forgetest.Fixture(t, "gitlab/merge_request.json")
	withMR := func(edit func(attrs map[string]any)) []byte {
		return forgetest.Patch(t, mr, func(m map[string]any) { edit(forgetest.Obj(t, m, "object_attributes")) })
	}
	tests := []struct {
		name  string
		event string
		body  []byte
	}{
		{"no event header", "", push},
		{"not JSON", "Push Hook", []byte("object_kind=push")},
		{"empty body", "Push Hook", nil},
		{"JSON number", "Push Hook", []byte("42")},
		{"project of the wrong type", "Push Hook", forgetest.Patch(t, push, func(m map[string]any) { m["project"] = "mike/diaspora" })},
		{"push without project", "Push Hook", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "project") })},
		{"push without ref", "Push Hook", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "ref") })},
		{"push without after", "Push Hook", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "after") })},
		{"checkout_sha is not hex", "Push Hook", forgetest.Patch(t, push, func(m map[string]any) { m["checkout_sha"] = "-c core.pager=x" })},
		{"merge request without object_attributes", "Merge Request Hook", forgetest.Patch(t, mr, func(m map[string]any) { delete(m, "object_attributes") })},
		{"merge request without project", "Merge Request Hook", forgetest.Patch(t, mr, func(m map[string]any) {
			delete(m, "project")
			delete(forgetest.Obj(t, m, "object_attributes"), "target")
		})},
		{"merge request without iid", "Merge Request Hook", withMR(func(a map[string]any) { delete(a, "iid") })},
		{"merge request without last commit", "Merge Request Hook", withMR(func(a map[string]any) { delete(a, "last_commit") })},
		{"merge request without source branch", "Merge Request Hook", withMR(func(a map[string]any) { delete(a, "source_branch") })},
		{"system hook that is not JSON", "System Hook", []byte("{")},
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
	f.Add("Push Hook", []byte(`{"ref":"refs/heads/main","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","project":{"path_with_namespace":"g/p"}}`))
	f.Add("Merge Request Hook", []byte(`{"project":{"path_with_namespace":"g/p"},"object_attributes":{"iid":1,"action":"update","oldrev":"da15608","source_branch":"a","target_branch":"b","last_commit":{"id":"da15608"}}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		got, err := Parse(header(event, "id"), body)
		forgetest.CheckParse(t, "Parse", got, err)
	})
}
