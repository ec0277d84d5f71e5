package bitbucket

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gantry-ci/gantry/internal/forge"
	"github.com/google/go-cmp/cmp"
)

// The request of Bitbucket Cloud's "Create a build status for a commit"
// example: POST .../repositories/my-workspace/my-repo/commit/e10dae22.../statuses/build
// with {"key":"MY-BUILD","state":"SUCCESSFUL","description":"42 tests passed",
// "url":"https://www.example.org/my-build-result","refname":"my-pr-branch"}
// (plus the name, a documented field).
func TestStatusDocExample(t *testing.T) {
	t.Parallel()
	req, err := Status("https://api.bitbucket.org/2.0", forge.Status{
		Repo: "my-workspace/my-repo", Commit: "e10dae226959c2194f2b07b077c07762d93821cf", Ref: "my-pr-branch",
		Context: "MY-BUILD", State: forge.StateSuccess, Description: "42 tests passed", TargetURL: "https://www.example.org/my-build-result",
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL != "https://api.bitbucket.org/2.0/repositories/my-workspace/my-repo/commit/e10dae226959c2194f2b07b077c07762d93821cf/statuses/build" {
		t.Errorf("request = %s %s", req.Method, req.URL)
	}
	var body map[string]string
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatal(err)
	}
	doc := map[string]string{"key": "MY-BUILD", "state": "SUCCESSFUL", "description": "42 tests passed",
		"url": "https://www.example.org/my-build-result", "refname": "my-pr-branch", "name": "MY-BUILD"}
	if diff := cmp.Diff(doc, body); diff != "" {
		t.Errorf("body (-doc +got):\n%s", diff)
	}
	for in, want := range map[forge.State]string{forge.StatePending: "INPROGRESS", forge.StateRunning: "INPROGRESS",
		forge.StateFailure: "FAILED", forge.StateError: "FAILED", forge.StateCancelled: "STOPPED", forge.StateSkipped: "SUCCESSFUL"} {
		if got := state(in); got != want {
			t.Errorf("state(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusKeyAndAuth(t *testing.T) {
	t.Parallel()
	long := "gantry/test[go=1.23,os=linux,db=postgres-16,é=ü]"
	k := key(long)
	if len(k) > maxKey || !utf8.ValidString(k) || !strings.HasPrefix(k, "gantry/test[") || key(long+"x") == k {
		t.Errorf("key(%q) = %q: want at most %d valid bytes, distinct per context", long, k, maxKey)
	}
	if key("gantry/test") != "gantry/test" {
		t.Errorf("key of a short context changed it")
	}
	h := http.Header{}
	Authorize(h, "repo-access-token")
	if h.Get("Authorization") != "Bearer repo-access-token" {
		t.Errorf("Authorize(token) set %q", h.Get("Authorization"))
	}
	Authorize(h, "jdoe:app-password")
	if h.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte("jdoe:app-password")) {
		t.Errorf("Authorize(user:password) set %q", h.Get("Authorization"))
	}
}

func TestAPIURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ clone, want string }{
		{"https://bitbucket.org/ws/app.git", "https://api.bitbucket.org/2.0"},
		{"https://jdoe@bitbucket.org/ws/app.git", "https://api.bitbucket.org/2.0"},
		{"git@bitbucket.org:ws/app.git", "https://api.bitbucket.org/2.0"},
		{"https://bitbucket.example.com/scm/ws/app.git", ""},
	} {
		got, err := APIURL(tc.clone, "ws/app")
		if got != tc.want || (tc.want == "") != errors.Is(err, forge.ErrNoAPIURL) {
			t.Errorf("APIURL(%q) = %q, %v; want %q", tc.clone, got, err, tc.want)
		}
	}
}
