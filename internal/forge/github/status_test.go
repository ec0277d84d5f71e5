package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/google/go-cmp/cmp"
)

// The request for the example of GitHub's REST docs, "Create a commit
// status": POST /repos/octocat/Hello-World/statuses/6dcb09b5..., body
// {"state":"success","target_url":"https://example.com/build/status",
// "description":"The build succeeded!","context":"continuous-integration/jenkins"}.
func TestStatusDocExample(t *testing.T) {
	t.Parallel()
	req, err := Status("https://api.github.com", forge.Status{
		Repo: "octocat/Hello-World", Commit: "6dcb09b5b57875f334f61aebed695e2e4193db5e", Ref: "main",
		Context: "continuous-integration/jenkins", State: forge.StateSuccess,
		Description: "The build succeeded!", TargetURL: "https://example.com/build/status",
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL != "https://api.github.com/repos/octocat/Hello-World/statuses/6dcb09b5b57875f334f61aebed695e2e4193db5e" {
		t.Errorf("request = %s %s", req.Method, req.URL)
	}
	want := map[string]string{"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"}
	if diff := cmp.Diff(want, req.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	var body map[string]string
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatal(err)
	}
	doc := map[string]string{"state": "success", "target_url": "https://example.com/build/status",
		"description": "The build succeeded!", "context": "continuous-integration/jenkins"}
	if diff := cmp.Diff(doc, body); diff != "" {
		t.Errorf("body (-doc +got):\n%s", diff)
	}
	h := http.Header{}
	Authorize(h, "ghp_x")
	if h.Get("Authorization") != "Bearer ghp_x" {
		t.Errorf("Authorize set %q", h.Get("Authorization"))
	}
}

func TestStatusStates(t *testing.T) {
	t.Parallel()
	for in, want := range map[forge.State]string{
		forge.StatePending: "pending", forge.StateRunning: "pending", forge.StateSuccess: "success",
		forge.StateSkipped: "success", forge.StateFailure: "failure", forge.StateError: "error", forge.StateCancelled: "error",
	} {
		req, err := Status("https://api.github.com/", forge.Status{Repo: "a/b", Commit: "c", Context: "gantry", State: in,
			Description: string(make([]rune, 200))})
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ State, Description string }
		json.Unmarshal(req.Body, &body)
		if body.State != want || len([]rune(body.Description)) != 140 {
			t.Errorf("Status(%s) posts state %q with a %d-rune description, want %q and 140", in, body.State, len([]rune(body.Description)), want)
		}
	}
	if _, err := Status("https://api.github.com", forge.Status{Repo: "group/sub/name"}); err == nil {
		t.Errorf("Status(repo with a subgroup) = nil error")
	}
}

func TestAPIURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ clone, want string }{
		{"https://github.com/acme/app.git", "https://api.github.com"},
		{"https://github.com/Acme/App", "https://api.github.com"},
		{"git@github.com:acme/app.git", "https://api.github.com"},
		{"ssh://git@github.com/acme/app.git", "https://api.github.com"},
		{"https://ghe.example.com/acme/app.git", "https://ghe.example.com/api/v3"},
		{"https://ghe.example.com:8443/acme/app.git", "https://ghe.example.com:8443/api/v3"},
		{"git@ghe.example.com:acme/app.git", ""},
		{"/srv/git/acme/app.git", ""},
		{"https://ghe.example.com/other/repo.git", ""},
	} {
		got, err := APIURL(tc.clone, "acme/app")
		if got != tc.want || (tc.want == "") != errors.Is(err, forge.ErrNoAPIURL) {
			t.Errorf("APIURL(%q) = %q, %v; want %q", tc.clone, got, err, tc.want)
		}
	}
}
