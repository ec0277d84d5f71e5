package gitea

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/google/go-cmp/cmp"
)

// The request Gitea's swagger describes for repoCreateStatus: POST
// /repos/{owner}/{repo}/statuses/{sha} with a CreateStatusOption body
// (context, description, state, target_url).
func TestStatusRequest(t *testing.T) {
	t.Parallel()
	req, err := Status("https://git.example.com/api/v1", forge.Status{
		Repo: "acme/app", Commit: "f6b3c1e2b8f5a0c9d7e6b5a4c3d2e1f0a9b8c7d6", Ref: "main",
		Context: "gantry/test", State: forge.StateFailure, Description: "test failed", TargetURL: "http://ci:8080/builds/4",
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL != "https://git.example.com/api/v1/repos/acme/app/statuses/f6b3c1e2b8f5a0c9d7e6b5a4c3d2e1f0a9b8c7d6" {
		t.Errorf("request = %s %s", req.Method, req.URL)
	}
	var body map[string]string
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"state": "failure", "context": "gantry/test", "description": "test failed", "target_url": "http://ci:8080/builds/4"}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	h := http.Header{}
	Authorize(h, "abc")
	if h.Get("Authorization") != "token abc" {
		t.Errorf("Authorize set %q, want \"token abc\"", h.Get("Authorization"))
	}
	for in, want := range map[forge.State]string{forge.StateRunning: "pending", forge.StateSkipped: "success", forge.StateCancelled: "error", forge.StateError: "error"} {
		req, err := Status("https://git.example.com/api/v1", forge.Status{Repo: "acme/app", Commit: "f6b3c1e2b8f5a0c9d7e6b5a4c3d2e1f0a9b8c7d6",
			State: in, Context: "gantry"})
		var body map[string]string
		if err != nil || json.Unmarshal(req.Body, &body) != nil || body["state"] != want {
			t.Errorf("state of %s = %q (%v), want %q", in, body["state"], err, want)
		}
	}
}

func TestAPIURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ clone, want string }{
		{"https://git.example.com/acme/app.git", "https://git.example.com/api/v1"},
		{"http://localhost:3000/acme/app.git", "http://localhost:3000/api/v1"},
		{"https://example.com/gitea/acme/app", "https://example.com/gitea/api/v1"},
		{"https://codeberg.org/acme/app.git", "https://codeberg.org/api/v1"},
		{"git@git.example.com:acme/app.git", ""},
		{"./app", ""},
	} {
		got, err := APIURL(tc.clone, "acme/app")
		if got != tc.want || (tc.want == "") != errors.Is(err, forge.ErrNoAPIURL) {
			t.Errorf("APIURL(%q) = %q, %v; want %q", tc.clone, got, err, tc.want)
		}
	}
}
