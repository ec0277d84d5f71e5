package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// secretEnv is the API over a real SQLite store with a vault, an admin
// token, an API token that is not an admin's, and an agent token.
type secretEnv struct {
	url                 string
	st                  store.Store
	vault               *secret.Vault
	admin, user, agentT string
	repo                *store.Repo
}

const theValue = "s3cr3t value/with@chars"

func newSecretEnv(t *testing.T) *secretEnv {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, _, err := secret.OpenKeyFile(filepath.Join(t.TempDir(), "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	vault := secret.NewVault(st, kr)
	builds := build.New(st, nil, nil, nil)
	d := queue.New(st, builds, nil, queue.Options{LeaseTTL: time.Minute, Secrets: vault.ValuesIn})
	h := &api.Handler{Store: st, Builds: builds, Queue: d, LongPoll: 200 * time.Millisecond, Secrets: vault}
	mux := http.NewServeMux()
	h.Register(mux) // panics if a secret route clashes with another pattern
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &secretEnv{url: srv.URL, st: st, vault: vault, admin: "admin-secret", user: "user-secret"}
	for _, tok := range []*store.Token{{Name: "admin", Hash: api.HashToken(e.admin), Admin: true}, {Name: "user", Hash: api.HashToken(e.user)}} {
		if err := st.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	at, err := e.client(e.admin).CreateAgentToken(ctx, api.NewAgentToken{Name: "hosts"})
	if err != nil {
		t.Fatal(err)
	}
	e.agentT = at.Token
	e.repo = &store.Repo{Name: "acme/web", CloneURL: "/nowhere", Forge: "github", WebhookSecret: "k"}
	if err := st.CreateRepo(ctx, e.repo); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *secretEnv) client(token string) *api.Client { return &api.Client{Server: e.url, Token: token} }

// raw makes a call and returns the status and the body as it came.
func (e *secretEnv) raw(t *testing.T, token, method, path string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if strings.HasPrefix(path, "/api/v1/agent/") {
		req.Header.Set("Gantry-Agent-Protocol", api.AgentProtocol)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSecretRoutes(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	ctx := t.Context()
	set := api.SetSecret{Name: "DEPLOY_TOKEN", Value: theValue}

	type call struct {
		token, method, path string
		body                any
		status              int
		want                string // in the body
	}
	for _, c := range []call{
		{e.admin, "PUT", "/api/v1/secrets/acme/web", set, 201, `"name": "DEPLOY_TOKEN"`},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", set, 200, `"environment": ""`},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "DEPLOY_TOKEN", Environment: "production", Value: theValue + "-prod"}, 201, `"environment": "production"`},
		{e.admin, "GET", "/api/v1/secrets/acme/web", nil, 200, `"key_id": "` + e.vault.Keys().Newest() + `"`},
		{e.user, "GET", "/api/v1/secrets/acme/web", nil, 403, "it needs role maintainer on acme/web"},
		{"wrong", "GET", "/api/v1/secrets/acme/web", nil, 401, "missing or invalid API token"},
		{e.agentT, "PUT", "/api/v1/secrets/acme/web", set, 401, "missing or invalid API token"},
		{e.admin, "GET", "/api/v1/secrets/acme/nope", nil, 404, "not found"},
		{e.admin, "PUT", "/api/v1/secrets/acme/nope", set, 404, "not found"},
		{e.admin, "GET", "/api/v1/secrets/web", nil, 400, `repo name "web": want OWNER/NAME`},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "DEPLOY-TOKEN", Value: theValue}, 400, "want an environment variable name"},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "GANTRY_X", Value: theValue}, 400, "is reserved"},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "X", Environment: "a b", Value: theValue}, 400, `environment "a b"`},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "X"}, 400, "the value is empty"},
		{e.admin, "PUT", "/api/v1/secrets/acme/web", map[string]string{"name": "X", "valeu": theValue}, 400, `unknown field "valeu"`},
		{e.admin, "DELETE", "/api/v1/secrets/acme/web?name=DEPLOY_TOKEN&environment=staging", nil, 404, "acme/web has no secret DEPLOY_TOKEN in environment staging"},
		{e.admin, "DELETE", "/api/v1/secrets/acme/web", nil, 400, "the secret name is empty"},
		{e.user, "POST", "/api/v1/secret-keys/rotate", nil, 403, "it needs an admin"},
		{e.admin, "POST", "/api/v1/secret-keys/rotate", nil, 200, `"reencrypted": 2`},
		{e.admin, "DELETE", "/api/v1/secrets/acme/web?name=DEPLOY_TOKEN&environment=production", nil, 204, ""},
		{e.admin, "DELETE", "/api/v1/secrets/acme/web?name=DEPLOY_TOKEN&environment=production", nil, 404, "not found"},
	} {
		status, body := e.raw(t, c.token, c.method, c.path, c.body)
		var apiErr api.Error
		json.Unmarshal([]byte(body), &apiErr)
		if status != c.status || !strings.Contains(body, c.want) && !strings.Contains(apiErr.Error, c.want) {
			t.Errorf("%s %s = %d %s, want %d with %q", c.method, c.path, status, body, c.status, c.want)
		}
		if strings.Contains(body, "s3cr3t") {
			t.Errorf("%s %s answered with the value: %s", c.method, c.path, body)
		}
	}
	list, err := e.client(e.admin).Secrets(ctx, "acme/web")
	if err != nil || len(list) != 1 || list[0].Name != "DEPLOY_TOKEN" || list[0].Environment != "" || list[0].Repo != "acme/web" {
		t.Errorf("Secrets() = %+v, %v; want the unscoped DEPLOY_TOKEN left", list, err)
	}

	// DELETE /api/v1/repos/{repo...} still removes a repo, and its secrets
	// with it.
	if err := e.client(e.admin).DeleteRepo(ctx, "acme/web"); err != nil {
		t.Fatalf("DeleteRepo() = %v", err)
	}
	if all, _ := e.st.AllSecrets(ctx); len(all) != 0 {
		t.Errorf("after DeleteRepo() %d secrets are left", len(all))
	}
}

// addBuild queues a build of acme/web running pipeline, its one job test.
func (e *secretEnv) addBuild(t *testing.T, pipeline string, fork bool) *store.Build {
	t.Helper()
	b := &store.Build{RepoID: e.repo.ID, Status: store.StatusQueued, Event: "pull_request", Branch: "feature", PullRequest: 1,
		Commit: "0123456789abcdef0123456789abcdef01234567", Pipeline: []byte(pipeline), FromFork: fork,
		Jobs: []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := e.st.CreateBuild(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// lease asks for a job as a remote agent does, and returns the answer's
// status and body as they came.
func (e *secretEnv) lease(t *testing.T) (int, string) {
	t.Helper()
	return e.raw(t, e.agentT, "POST", "/api/v1/agent/lease", api.LeaseRequest{Name: "host-1", Capacity: 1})
}

// A lease carries the values of the secrets the job names, and no others;
// a job naming one that is not set fails with the reason and is not handed
// out; a fork's job gets none, and its log says so.
func TestLeaseCarriesSecrets(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	ctx := t.Context()
	for name, value := range map[string]string{"DEPLOY_TOKEN": theValue, "OTHER": "other-value", "NPM": "npm-value"} {
		if _, _, err := e.vault.Set(ctx, "acme/web", name, "", value); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.vault.Set(ctx, "acme/web", "PROD_ONLY", "production", "prod-value"); err != nil {
		t.Fatal(err)
	}

	missing := e.addBuild(t, "jobs: {test: {secrets: [DEPLOY_TOKEN, PROD_ONLY], steps: [\"true\"]}}\n", false)
	own := e.addBuild(t, "jobs: {test: {secrets: [DEPLOY_TOKEN, NPM], steps: [\"true\"]}}\n", false)
	fork := e.addBuild(t, "jobs: {test: {secrets: [DEPLOY_TOKEN, NPM], steps: [\"true\"]}}\n", true)

	// The first build's job is failed at lease, and the agent gets the
	// second's.
	status, body := e.lease(t)
	var l api.Lease
	if err := json.Unmarshal([]byte(body), &l); status != 200 || err != nil || l.BuildID != own.ID {
		t.Fatalf("lease = %d %s, want the job of build %d", status, body, own.ID)
	}
	if len(l.Secrets) != 2 || l.Secrets["DEPLOY_TOKEN"] != theValue || l.Secrets["NPM"] != "npm-value" {
		t.Errorf("lease secrets = %v, want exactly DEPLOY_TOKEN and NPM with their values", l.Secrets)
	}
	b, _ := e.st.Build(ctx, missing.ID)
	if j := b.Jobs[0]; j.Status != store.StatusError ||
		j.Reason != "secret PROD_ONLY is not set for acme/web (PROD_ONLY is set only for environment production, and a build job receives only unscoped secrets)" {
		t.Errorf("job naming a secret that is not set = %s %q, want error saying which", j.Status, j.Reason)
	}

	status, body = e.lease(t)
	l = api.Lease{}
	if err := json.Unmarshal([]byte(body), &l); status != 200 || err != nil || l.BuildID != fork.ID {
		t.Fatalf("lease = %d %s, want the job of fork build %d", status, body, fork.ID)
	}
	if len(l.Secrets) != 0 || strings.Contains(body, "npm-value") || strings.Contains(body, "s3cr3t") {
		t.Errorf("a fork's lease carries secrets: %s", body)
	}
	lines, err := e.client(e.admin).Logs(ctx, fork.ID, "")
	want := "gantry: secrets DEPLOY_TOKEN, NPM withheld: this build is of a pull request from a fork, whose code must not see acme/web's secrets; the job runs without them"
	if err != nil || len(lines) != 1 || lines[0].Line != want || lines[0].Job != "test" {
		t.Errorf("fork job's log = %+v, %v; want the one line %q", lines, err, want)
	}
	if got, _ := e.client(e.admin).Build(ctx, fork.ID); !got.FromFork {
		t.Errorf("fork build from the API: from_fork = false, want true")
	}
}

// Every answer a user's API token can get, after secrets were set and a
// job that uses one ran, is free of the value.
func TestNoAnswerHoldsAValue(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	ctx := context.Background()
	c := e.client(e.admin)
	if _, _, err := c.SetSecret(ctx, "acme/web", api.SetSecret{Name: "DEPLOY_TOKEN", Value: theValue}); err != nil {
		t.Fatal(err)
	}
	b := e.addBuild(t, "jobs: {test: {secrets: [DEPLOY_TOKEN], steps: [\"true\"]}}\n", false)
	if status, _ := e.lease(t); status != 200 {
		t.Fatalf("lease = %d", status)
	}
	for _, path := range []string{
		"/api/v1/repos", "/api/v1/builds", "/api/v1/builds/" + strconv.FormatInt(b.ID, 10), "/api/v1/builds/" + strconv.FormatInt(b.ID, 10) + "/logs",
		"/api/v1/secrets/acme/web", "/api/v1/agents", "/api/v1/queue", "/api/v1/agent-tokens", "/api/v1/locks",
	} {
		status, body := e.raw(t, e.admin, "GET", path, nil)
		if status != 200 || strings.Contains(body, "s3cr3t") {
			t.Errorf("GET %s = %d, holds the value: %v\n%s", path, status, strings.Contains(body, "s3cr3t"), body)
		}
	}
}
