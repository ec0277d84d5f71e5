package gitea

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/gantry-ci/gantry/internal/forge/forgetest"
)

// The secret of the recorded Forgejo deliveries (fixtures README).
const forgejoSecret = "pump19-secret"

// giteaHeader returns the headers Gitea sends with a delivery of event.
func giteaHeader(event, delivery string) http.Header {
	return forgetest.Header("X-Gitea-Event", event, "X-Gitea-Event-Type", event, "X-Gitea-Delivery", delivery)
}

// forgejoHeader returns the headers Forgejo sends with a delivery of event.
func forgejoHeader(event, delivery string) http.Header {
	return forgetest.Header("X-Forgejo-Event", event, "X-Forgejo-Event-Type", event, "X-Forgejo-Delivery", delivery)
}

type fixture struct {
	file   string
	header func(t *testing.T) http.Header
	want   []forge.Event
}

func fixed(h http.Header) func(*testing.T) http.Header {
	return func(*testing.T) http.Header { return h }
}

func recorded(name string) func(*testing.T) http.Header {
	return func(t *testing.T) http.Header { return forgetest.Headers(t, name) }
}

// fixtures is every Gitea and Forgejo fixture with the delivery headers it is
// parsed with and the events it must become.
func fixtures() []fixture {
	return []fixture{
		{
			file:   "gitea/push.json",
			header: fixed(giteaHeader("push", "7a1e0c57-0001-4000-8000-000000000001")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.Push, DeliveryID: "7a1e0c57-0001-4000-8000-000000000001",
				Repo: "Test-CI/multi-line-secrets", CloneURL: "http://127.0.0.1:3000/Test-CI/multi-line-secrets.git",
				Branch: "main", Commit: "29be01c073851cf0db0c6a466e396b725a670453",
				Before: "6efcf5b7c98f3e7a491675164b7a2e7acac27941",
				Author: "test-user", AuthorEmail: "test@noreply.localhost",
				Message:      "add some text",
				ChangedPaths: []string{"aa", "aaa"},
				URL:          "http://127.0.0.1:3000/Test-CI/multi-line-secrets/compare/6efcf5b7c98f3e7a491675164b7a2e7acac27941...29be01c073851cf0db0c6a466e396b725a670453",
			}},
		},
		{
			file:   "gitea/push_docs_example.json",
			header: fixed(giteaHeader("push", "7a1e0c57-0002-4000-8000-000000000002")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.Push, DeliveryID: "7a1e0c57-0002-4000-8000-000000000002",
				Repo: "gitea/webhooks", CloneURL: "http://localhost:3000/gitea/webhooks.git",
				Branch: "develop", Commit: "bffeb74224043ba2feb48d137756c8a9331c449a",
				Before: "28e1879d029cb852e4844d9c718537df08844e03",
				Author: "gitea", AuthorEmail: "someone@gitea.io",
				Message: "Webhooks Yay!",
				// The file lists are null and there is no total_commits.
				ChangedPaths: nil,
				URL:          "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
			}},
		},
		{
			file:   "gitea/push_new_branch.json",
			header: fixed(giteaHeader("push", "7a1e0c57-0003-4000-8000-000000000003")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.Push, DeliveryID: "7a1e0c57-0003-4000-8000-000000000003",
				Repo: "example/example", CloneURL: "http://localhost:3000/example/example.git",
				Branch: "master", Commit: "67b56589a45103f891bdee7c0546e5d40bc02001",
				Author: "example", AuthorEmail: "example@example.com",
				Message: "example",
				URL:     "http://localhost:3000/example/example/compare/0000000000000000000000000000000000000000...67b56589a45103f891bdee7c0546e5d40bc02001",
			}},
		},
		{
			file:   "gitea/pull_request_opened.json",
			header: fixed(giteaHeader("pull_request", "7a1e0c57-0004-4000-8000-000000000004")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.PullRequest, DeliveryID: "7a1e0c57-0004-4000-8000-000000000004",
				Repo: "example/example", CloneURL: "http://localhost:3000/example/example.git",
				Branch: "master", BaseBranch: "master", Commit: "48e773f892a831faa47c0a160d1b7f0cd369ae2a",
				PullRequest: 2, Title: "update", Action: "opened",
				FromFork: true, HeadRepo: "example2/example",
				Author: "example2", AuthorEmail: "example2@example2.com",
				URL: "http://localhost:3000/example/example/pulls/2",
			}},
		},
		{
			file: "gitea/pull_request_synchronized.json",
			header: fixed(forgetest.Header("X-Gitea-Event", "pull_request", "X-Gitea-Event-Type", "pull_request_sync",
				"X-Gitea-Delivery", "7a1e0c57-0005-4000-8000-000000000005")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.PullRequest, DeliveryID: "7a1e0c57-0005-4000-8000-000000000005",
				Repo: "Test-CI/multi-line-secrets", CloneURL: "http://127.0.0.1:3000/Test-CI/multi-line-secrets.git",
				Branch: "test-patch-1", BaseBranch: "main", Commit: "788ed8d02d3b7fcfcf6386dbcbca696aa1d4dc25",
				PullRequest: 2, Title: "New Pull", Action: "synchronized",
				// Abridged: head and base have no repo object, only
				// repo_id, which is the same on both sides.
				HeadRepo: "Test-CI/multi-line-secrets",
				Author:   "test", AuthorEmail: "test@noreply.localhost",
				URL: "http://127.0.0.1:3000/Test-CI/multi-line-secrets/pulls/2",
			}},
		},
		{
			file:   "forgejo/push_docs_example.json",
			header: fixed(forgejoHeader("push", "f0f0f0f0-0006-4000-8000-000000000006")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.Push, DeliveryID: "f0f0f0f0-0006-4000-8000-000000000006",
				Repo: "forgejo/webhooks", CloneURL: "http://localhost:3000/forgejo/webhooks.git",
				Branch: "develop", Commit: "bffeb74224043ba2feb48d137756c8a9331c449a",
				Before: "28e1879d029cb852e4844d9c718537df08844e03",
				Author: "forgejo", AuthorEmail: "someone@forgejo.org",
				Message: "Webhooks Yay!",
				URL:     "http://localhost:3000/forgejo/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
			}},
		},
		{
			file:   "forgejo/pull_request_opened.json",
			header: recorded("forgejo/pull_request_opened.headers.json"),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.PullRequest, DeliveryID: "e470c737-1592-4ea9-82e1-2aac2c87eb7e",
				Repo: "pump19/subject", CloneURL: "http://127.0.0.1:33080/pump19/subject.git",
				Branch: "journey-one", BaseBranch: "main", Commit: "2ff55f9248630929f5dbef0f99d713743d5f0a33",
				PullRequest: 1, Title: "journey-one", Action: "opened",
				HeadRepo: "pump19/subject",
				Author:   "pump19", AuthorEmail: "pump19@example.invalid",
				URL: "http://127.0.0.1:33080/pump19/subject/pulls/1",
			}},
		},
		{
			file:   "forgejo/pull_request_synchronized.json",
			header: recorded("forgejo/pull_request_synchronized.headers.json"),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.PullRequest, DeliveryID: "0f87bad0-3cf9-41dd-a47d-9d64d5d2832c",
				Repo: "pump19/subject", CloneURL: "http://127.0.0.1:33080/pump19/subject.git",
				Branch: "journey-four", BaseBranch: "main", Commit: "2a24441ff4c084191a7975e365040b94907f4159",
				PullRequest: 4, Title: "journey-four", Action: "synchronized",
				HeadRepo: "pump19/subject",
				Author:   "pump19", AuthorEmail: "pump19@example.invalid",
				URL: "http://127.0.0.1:33080/pump19/subject/pulls/4",
			}},
		},
		{
			file:   "forgejo/pull_request_reopened_codeberg.json",
			header: fixed(forgejoHeader("pull_request", "f0f0f0f0-0009-4000-8000-000000000009")),
			want: []forge.Event{{
				Forge: "gitea", Kind: forge.PullRequest, DeliveryID: "f0f0f0f0-0009-4000-8000-000000000009",
				Repo: "test_it/test_ci_thing", CloneURL: "https://codeberg.org/test_it/test_ci_thing.git",
				Branch: "6543-patch-1", BaseBranch: "main", Commit: "36b5813240a9d2daa29b05046d56a53e18f39a3e",
				PullRequest: 1, Title: "Some ned more AAAA", Action: "reopened",
				HeadRepo: "test_it/test_ci_thing",
				Author:   "6543", AuthorEmail: "6543@obermui.de",
				URL: "https://codeberg.org/test_it/test_ci_thing/pulls/1",
			}},
		},
	}
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	var cases []forgetest.Case
	for _, tt := range fixtures() {
		cases = append(cases, forgetest.Case{File: tt.file, Header: tt.header(t), Want: tt.want})
	}
	forgetest.TestFixtures(t, Parse, cases, "gitea", "forgejo")
}

func TestVerify(t *testing.T) {
	t.Parallel()
	for _, hdr := range []struct{ name, prefix string }{
		{"X-Forgejo-Signature", ""},
		{"X-Gitea-Signature", ""},
		{"X-Hub-Signature-256", "sha256="},
	} {
		t.Run(hdr.name, func(t *testing.T) {
			t.Parallel()
			forgetest.TestHMAC(t, Verify, hdr.name, hdr.prefix)
		})
	}
}

// TestVerifyRecorded checks the two real Forgejo 14 deliveries with the
// headers Forgejo sent, whole and one signature header at a time.
func TestVerifyRecorded(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		body, headers string
		size          int
	}{
		{"forgejo/pull_request_opened.json", "forgejo/pull_request_opened.headers.json", 12242},
		{"forgejo/pull_request_synchronized.json", "forgejo/pull_request_synchronized.headers.json", 12508},
	} {
		t.Run(tt.body, func(t *testing.T) {
			t.Parallel()
			body := forgetest.Fixture(t, tt.body)
			if len(body) != tt.size {
				t.Fatalf("%s is %d bytes, want %d: the fixture was reformatted and no longer matches its signature", tt.body, len(body), tt.size)
			}
			recorded := forgetest.Headers(t, tt.headers)
			if err := Verify(recorded, body, forgejoSecret); err != nil {
				t.Errorf("Verify(recorded headers) = %v, want nil", err)
			}
			for _, name := range []string{"X-Forgejo-Signature", "X-Gitea-Signature", "X-Hub-Signature-256"} {
				only := forgetest.Header(name, recorded.Get(name))
				if err := Verify(only, body, forgejoSecret); err != nil {
					t.Errorf("Verify(only %s) = %v, want nil", name, err)
				}
			}
			// A hook without a secret sends the headers empty; an empty
			// header is skipped, not compared.
			emptied := recorded.Clone()
			emptied.Set("X-Forgejo-Signature", "")
			if err := Verify(emptied, body, forgejoSecret); err != nil {
				t.Errorf("Verify(empty X-Forgejo-Signature, valid X-Gitea-Signature) = %v, want nil", err)
			}
			tampered := slices.Clone(body)
			tampered[len(tampered)/2] ^= 1
			if err := Verify(recorded, tampered, forgejoSecret); !errors.Is(err, forge.ErrSignature) {
				t.Errorf("Verify(tampered body) = %v, want ErrSignature", err)
			}
			if err := Verify(recorded, body, "pump19-secret "); !errors.Is(err, forge.ErrSignature) {
				t.Errorf("Verify(wrong secret) = %v, want ErrSignature", err)
			}
			if err := Verify(recorded, body, ""); !errors.Is(err, forge.ErrSignature) {
				t.Errorf("Verify(no secret configured) = %v, want ErrSignature", err)
			}
			// Only the SHA-1 header left: not accepted.
			sha1 := forgetest.Header("X-Hub-Signature", recorded.Get("X-Hub-Signature"))
			if err := Verify(sha1, body, forgejoSecret); !errors.Is(err, forge.ErrSignature) {
				t.Errorf("Verify(only X-Hub-Signature sha1) = %v, want ErrSignature", err)
			}
			events, err := Webhook().Receive(recorded, body, forgejoSecret)
			if err != nil || len(events) != 1 || events[0].DeliveryID != recorded.Get("X-Forgejo-Delivery") {
				t.Errorf("Receive(recorded delivery) = %+v, %v, want one event with the recorded delivery ID", events, err)
			}
		})
	}
}

func TestVerifyNoHeaders(t *testing.T) {
	t.Parallel()
	empty := forgetest.Header("X-Forgejo-Signature", "", "X-Gitea-Signature", "", "X-Hub-Signature-256", "sha256=")
	for _, h := range []http.Header{{}, empty} {
		if err := Verify(h, []byte("{}"), forgejoSecret); !errors.Is(err, forge.ErrSignature) {
			t.Errorf("Verify(%v) = %v, want ErrSignature", h, err)
		}
	}
}

// TestParseVariants covers what the fixtures do not.
func TestParseVariants(t *testing.T) {
	t.Parallel()
	push := forgetest.Fixture(t, "gitea/push.json")
	pr := forgetest.Fixture(t, "forgejo/pull_request_opened.json")
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		check  func(t *testing.T, e forge.Event)
	}{
		{
			name:   "Forgejo headers win over Gitea copies",
			header: forgetest.Header("X-Forgejo-Event", "push", "X-Forgejo-Delivery", "fj", "X-Gitea-Event", "issues", "X-Gitea-Delivery", "gt"),
			body:   push,
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Push || e.DeliveryID != "fj" {
					t.Errorf("Parse = %+v, want a Push with delivery fj", e)
				}
			},
		},
		{
			name:   "truncated commit list has unknown paths",
			header: giteaHeader("push", "id"),
			body:   forgetest.Patch(t, push, func(m map[string]any) { m["total_commits"] = 7 }),
			check: func(t *testing.T, e forge.Event) {
				if e.ChangedPaths != nil {
					t.Errorf("ChangedPaths = %q, want nil", e.ChangedPaths)
				}
			},
		},
		{
			name:   "tag push builds the tagged commit",
			header: giteaHeader("push", "id"),
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["ref"] = "refs/tags/v1.0.0"
				m["before"] = "0000000000000000000000000000000000000000"
				m["after"] = "aaaabbbbccccddddeeeeffff0000111122223333"
				m["commits"], m["total_commits"] = []any{}, 0
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Tag || e.Tag != "v1.0.0" || e.Commit != "29be01c073851cf0db0c6a466e396b725a670453" || e.ChangedPaths != nil {
					t.Errorf("Parse(tag push) = %+v, want Tag v1.0.0 of head_commit 29be01c…", e)
				}
			},
		},
		{
			name:   "tag deletion by push",
			header: giteaHeader("push", "id"),
			body: forgetest.Patch(t, push, func(m map[string]any) {
				m["ref"] = "refs/tags/v1.0.0"
				m["after"] = "0000000000000000000000000000000000000000"
				m["commits"], m["head_commit"] = []any{}, nil
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Tag || !e.Deleted || e.Commit != "" {
					t.Errorf("Parse(tag deletion) = %+v, want a deleted Tag", e)
				}
			},
		},
		{
			name:   "branch deletion arrives as a delete event",
			header: giteaHeader("delete", "id"),
			body:   []byte(`{"ref":"feature/x","ref_type":"branch","pusher_type":"user","repository":{"id":6,"full_name":"Test-CI/multi-line-secrets","clone_url":"http://127.0.0.1:3000/Test-CI/multi-line-secrets.git"},"sender":{"login":"test-user"}}`),
			check: func(t *testing.T, e forge.Event) {
				want := forge.Event{
					Forge: "gitea", Kind: forge.Push, DeliveryID: "id", Deleted: true, Branch: "feature/x",
					Repo: "Test-CI/multi-line-secrets", CloneURL: "http://127.0.0.1:3000/Test-CI/multi-line-secrets.git",
					Author: "test-user",
				}
				if diff := cmp.Diff(want, e); diff != "" {
					t.Errorf("Parse(delete) = got, want (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:   "tag deletion event",
			header: giteaHeader("delete", "id"),
			body:   []byte(`{"ref":"v1","ref_type":"tag","repository":{"full_name":"o/r"}}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Tag || !e.Deleted || e.Tag != "v1" {
					t.Errorf("Parse(delete tag) = %+v, want a deleted Tag v1", e)
				}
			},
		},
		{
			name:   "create is ignored",
			header: giteaHeader("create", "id"),
			body:   []byte(`{"ref":"v1","ref_type":"tag","sha":"29be01c073851cf0db0c6a466e396b725a670453","repository":{"full_name":"o/r"}}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "create events are not built: the push event for the same ref is" {
					t.Errorf("Parse(create) = %+v, want Ignored", e)
				}
			},
		},
		{
			name:   "label change is ignored",
			header: forgetest.Header("X-Gitea-Event", "pull_request", "X-Gitea-Event-Type", "pull_request_label"),
			body:   forgetest.Patch(t, pr, func(m map[string]any) { m["action"] = "label_updated" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "label_updated" || e.Reason != "pull_request action label_updated is not built" {
					t.Errorf("Parse(label_updated) = %+v, want Ignored", e)
				}
			},
		},
		{
			name:   "merged pull request is ignored as merged",
			header: giteaHeader("pull_request", "id"),
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				m["action"] = "closed"
				forgetest.Obj(t, m, "pull_request")["merged"] = true
			}),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Action != "merged" {
					t.Errorf("Parse(merged) = %+v, want Ignored merged", e)
				}
			},
		},
		{
			name:   "older Gitea's pull_request_sync event name",
			header: giteaHeader("pull_request_sync", "id"),
			body:   forgetest.Patch(t, pr, func(m map[string]any) { m["action"] = "synchronized" }),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.PullRequest || e.Action != "synchronized" {
					t.Errorf("Parse(pull_request_sync) = %+v, want PullRequest synchronized", e)
				}
			},
		},
		{
			name:   "pull request with no repository information on its head counts as a fork",
			header: giteaHeader("pull_request", "id"),
			body: forgetest.Patch(t, pr, func(m map[string]any) {
				p := forgetest.Obj(t, m, "pull_request")
				delete(forgetest.Obj(t, p, "head"), "repo")
				delete(forgetest.Obj(t, p, "head"), "repo_id")
			}),
			check: func(t *testing.T, e forge.Event) {
				if !e.FromFork || e.HeadRepo != "" {
					t.Errorf("Parse = %+v, want FromFork and no HeadRepo", e)
				}
			},
		},
		{
			name:   "issue comment is ignored",
			header: giteaHeader("issue_comment", "id"),
			body:   []byte(`{"action":"created","repository":{"full_name":"o/r"},"sender":{"login":"x"}}`),
			check: func(t *testing.T, e forge.Event) {
				if e.Kind != forge.Ignored || e.Reason != "issue_comment events are not built" {
					t.Errorf("Parse(issue_comment) = %+v, want Ignored", e)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.header, tt.body)
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
	push := forgetest.Fixture(t, "gitea/push.json")
	pr := forgetest.Fixture(t, "forgejo/pull_request_opened.json")
	tests := []struct {
		name  string
		event string
		body  []byte
	}{
		{"no event header", "", push},
		{"not JSON", "push", []byte("ref=refs/heads/main")},
		{"empty body", "push", nil},
		{"JSON string", "push", []byte(`"push"`)},
		{"commits of the wrong type", "push", forgetest.Patch(t, push, func(m map[string]any) { m["commits"] = "three" })},
		{"push without repository", "push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "repository") })},
		{"push without ref", "push", forgetest.Patch(t, push, func(m map[string]any) { m["ref"] = "" })},
		{"push without after", "push", forgetest.Patch(t, push, func(m map[string]any) { delete(m, "after") })},
		{"after is not hex", "push", forgetest.Patch(t, push, func(m map[string]any) { m["after"] = "main" })},
		{"pull request without pull_request", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) { m["pull_request"] = nil })},
		{"pull request without repository", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) {
			delete(m, "repository")
			delete(forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "base"), "repo")
		})},
		{"pull request without head sha", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) {
			forgetest.Obj(t, forgetest.Obj(t, m, "pull_request"), "head")["sha"] = ""
		})},
		{"pull request without number", "pull_request", forgetest.Patch(t, pr, func(m map[string]any) {
			delete(m, "number")
			delete(forgetest.Obj(t, m, "pull_request"), "number")
		})},
		{"delete without repository", "delete", []byte(`{"ref":"x","ref_type":"branch"}`)},
		{"delete without ref", "delete", []byte(`{"ref":"","ref_type":"branch","repository":{"full_name":"o/r"}}`)},
		{"ignored event that is not JSON", "wiki", []byte("nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(giteaHeader(tt.event, "id"), tt.body)
			if !errors.Is(err, forge.ErrMalformed) {
				t.Errorf("Parse(%s) = %+v, %v, want ErrMalformed", tt.name, got, err)
			}
			forgetest.CheckParse(t, "Parse("+tt.name+")", got, err)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"29be01c073851cf0db0c6a466e396b725a670453","total_commits":0,"commits":[],"repository":{"full_name":"o/r"}}`))
	f.Add("delete", []byte(`{"ref":"x","ref_type":"branch","repository":{"full_name":"o/r"}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		got, err := Parse(giteaHeader(event, "id"), body)
		forgetest.CheckParse(t, "Parse", got, err)
	})
}
