package github

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The requests for the examples of GitHub's REST docs, "Create a
// deployment" (POST /repos/octocat/example/deployments) and "Create a
// deployment status" (POST /repos/octocat/example/deployments/1/statuses,
// {"environment":"production","state":"success","log_url":
// "https://example.com/deployment/42/output","description":"Deployment
// finished successfully."}), with Gantry's fixed choices: ref is a SHA,
// auto_merge false, required_contexts empty.
func TestDeploymentDocExample(t *testing.T) {
	t.Parallel()
	create, err := CreateDeployment("https://api.github.com/", Deployment{Repo: "octocat/example",
		Commit: "6dcb09b5b57875f334f61aebed695e2e4193db5e", Environment: "production", Description: "Deploy request from hubot"})
	if err != nil {
		t.Fatal(err)
	}
	if create.Method != "POST" || create.URL != "https://api.github.com/repos/octocat/example/deployments" {
		t.Errorf("create = %s %s", create.Method, create.URL)
	}
	want := map[string]string{"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"}
	if diff := cmp.Diff(want, create.Header); diff != "" {
		t.Errorf("create headers (-want +got):\n%s", diff)
	}
	var body map[string]any
	if err := json.Unmarshal(create.Body, &body); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"ref": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "task": "deploy", "auto_merge": false,
		"required_contexts": []any{}, "environment": "production", "description": "Deploy request from hubot"}
	if diff := cmp.Diff(doc, body); diff != "" {
		t.Errorf("create body (-doc +got):\n%s", diff)
	}

	status, err := CreateDeploymentStatus(create.URL, 1, DeploymentStatus{State: DeploySuccess, Environment: "production",
		LogURL: "https://example.com/deployment/42/output", Description: "Deployment finished successfully."})
	if err != nil {
		t.Fatal(err)
	}
	if status.URL != "https://api.github.com/repos/octocat/example/deployments/1/statuses" {
		t.Errorf("status URL = %s", status.URL)
	}
	var sbody map[string]any
	if err := json.Unmarshal(status.Body, &sbody); err != nil {
		t.Fatal(err)
	}
	sdoc := map[string]any{"environment": "production", "state": "success", "log_url": "https://example.com/deployment/42/output",
		"description": "Deployment finished successfully."}
	if diff := cmp.Diff(sdoc, sbody); diff != "" {
		t.Errorf("status body (-doc +got):\n%s", diff)
	}
	if _, err := CreateDeployment("https://api.github.com", Deployment{Repo: "nope"}); err == nil {
		t.Error("CreateDeployment(repo without owner) = nil error")
	}
}

// TestDeploymentID reads the id from the documented 201 answer, and says
// why there is none in a 202's ("Auto-merged master into topic-branch.").
func TestDeploymentID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body    string
		want    int64
		wantErr string
	}{
		{`{"url":"https://api.github.com/repos/octocat/example/deployments/1","id":1,"node_id":"MDEwOkRlcGxveW1lbnQx",` +
			`"sha":"a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d","ref":"topic-branch","task":"deploy","environment":"production"}`, 1, ""},
		{`{"id":9007199254740993}`, 9007199254740993, ""},
		{`{"message":"Auto-merged master into topic-branch."}`, 0, "github made no deployment: Auto-merged master into topic-branch."},
		{`{}`, 0, "the answer has no id"},
		{`[1]`, 0, "not a JSON object"},
		{``, 0, "not a JSON object"},
	} {
		got, err := DeploymentID([]byte(tc.body))
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("DeploymentID(%s) = %d, %v; want %d", tc.body, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !contains(err.Error(), tc.wantErr)):
			t.Errorf("DeploymentID(%s) = %d, %v; want an error saying %q", tc.body, got, err, tc.wantErr)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// FuzzDeploymentID: any answer gives an ID above 0 or an error, never a
// panic.
func FuzzDeploymentID(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"message":"x"}`, `{"id":-1}`, `{"id":"1"}`, `{`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := DeploymentID(body)
		if (err == nil) != (id > 0) {
			t.Errorf("DeploymentID(%q) = %d, %v", body, id, err)
		}
	})
}
