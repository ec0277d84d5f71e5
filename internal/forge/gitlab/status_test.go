package gitlab

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/google/go-cmp/cmp"
)

// The request of GitLab's "Set the pipeline status of a commit" (POST
// /projects/:id/statuses/:sha, PRIVATE-TOKEN), with the project named by
// its URL-encoded path as "Namespaced paths" describes: the doc's example
// project janedoe/gitlab-foss and commit 18f3e63d....
func TestStatusDocExample(t *testing.T) {
	t.Parallel()
	req, err := Status("https://gitlab.example.com/api/v4", forge.Status{
		Repo: "janedoe/gitlab-foss", Commit: "18f3e63d05582537db6d183d9d557be09e1f90c8", Ref: "main",
		Context: "gantry/build", State: forge.StateSuccess, Description: "build passed", TargetURL: "https://ci.example.com/builds/91",
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL != "https://gitlab.example.com/api/v4/projects/janedoe%2Fgitlab-foss/statuses/18f3e63d05582537db6d183d9d557be09e1f90c8" {
		t.Errorf("request = %s %s", req.Method, req.URL)
	}
	// What the server sees: the slash stays encoded in the path.
	if u, err := url.Parse(req.URL); err != nil || u.EscapedPath() != "/api/v4/projects/janedoe%2Fgitlab-foss/statuses/18f3e63d05582537db6d183d9d557be09e1f90c8" {
		t.Errorf("escaped path = %q, %v", u.EscapedPath(), err)
	}
	var body map[string]string
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"state": "success", "ref": "main", "name": "gantry/build", "target_url": "https://ci.example.com/builds/91", "description": "build passed"}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	h := http.Header{}
	Authorize(h, "glpat-x")
	if h.Get("PRIVATE-TOKEN") != "glpat-x" {
		t.Errorf("Authorize set %v", h)
	}
	sub, err := Status("https://gitlab.example.com/api/v4", forge.Status{Repo: "group/sub/app", Commit: "c", Context: "gantry", State: forge.StateRunning})
	if err != nil || sub.URL != "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fapp/statuses/c" {
		t.Errorf("Status(subgroup) = %+v, %v", sub, err)
	}
	for in, want := range map[forge.State]string{forge.StatePending: "pending", forge.StateRunning: "running", forge.StateFailure: "failed",
		forge.StateError: "failed", forge.StateCancelled: "canceled", forge.StateSkipped: "success"} {
		if got := state(in); got != want {
			t.Errorf("state(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestAPIURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ clone, repo, want string }{
		{"https://gitlab.com/group/sub/app.git", "group/sub/app", "https://gitlab.com/api/v4"},
		{"git@gitlab.com:group/app.git", "group/app", "https://gitlab.com/api/v4"},
		{"https://example.com/gitlab/group/app.git", "group/app", "https://example.com/gitlab/api/v4"},
		{"http://gitlab.local:8929/group/app.git", "group/app", "http://gitlab.local:8929/api/v4"},
		{"ssh://git@gitlab.local:2222/group/app.git", "group/app", ""},
	} {
		got, err := APIURL(tc.clone, tc.repo)
		if got != tc.want || (tc.want == "") != errors.Is(err, forge.ErrNoAPIURL) {
			t.Errorf("APIURL(%q) = %q, %v; want %q", tc.clone, got, err, tc.want)
		}
	}
}
