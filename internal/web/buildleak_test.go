package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/store"
)

// A build named by its ID does not tell a user who may not see its repo
// the repo's name.
func TestBuildPageHidesAnUnseenRepo(t *testing.T) {
	t.Parallel()
	u := newUI(t, false)
	ctx := t.Context()
	repo := &store.Repo{Name: "acme/app", CloneURL: "https://example.com/acme/app.git", Forge: "github", WebhookSecret: "s", DefaultBranch: "main"}
	if err := u.st.CreateRepo(ctx, repo); err != nil {
		t.Fatal(err)
	}
	b := &store.Build{RepoID: repo.ID, Repo: repo.Name, Status: store.StatusQueued, Event: "push", Branch: "main", Commit: strings.Repeat("a", 40),
		Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := u.st.CreateBuild(ctx, b); err != nil {
		t.Fatal(err)
	}
	stranger, _ := u.user("sam", "")
	c := u.browser()
	u.signIn(c, stranger, "/")
	for _, p := range []string{"", "/raw?job=test", "/log?job=test&before=1"} {
		resp, body := u.get(c, "/builds/"+itoa(b.ID)+p)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "acme/app") {
			t.Errorf("GET /builds/%d%s as a stranger = %d, want 403 without the repo's name:\n%s", b.ID, p, resp.StatusCode, body)
		}
	}
}
