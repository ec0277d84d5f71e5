package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/logstream"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/sqlite"
)

// The people of the role test, weakest first: each may do what the ones
// before it may. The developer's role comes through a group and the
// maintainer's from a grant on every repo, so both paths are walked.
var people = []string{"outsider", "viewer", "developer", "maintainer", "owner", "root"}

// accessEnv is a server with two repos (acme/web, acme/other), a queued
// and a failed build of acme/web, and a token for each of people.
type accessEnv struct {
	url            string
	st             store.Store
	h              *api.Handler
	tokens         map[string]string
	queued, failed int64
}

// gitOrigin makes a repository with a pipeline file, once per test: its
// main branch decides where releases go (deliveryPipeline).
func gitOrigin(t *testing.T) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, ".gantry.yml"), []byte(deliveryPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "c")
	return dir, git("rev-parse", "HEAD")
}

func newAccessEnv(t *testing.T, origin string) *accessEnv {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mirrors := git.NewMirrors(t.TempDir())
	builds := build.New(st, mirrors, nil, nil)
	keys, _, err := secret.OpenKeyFile(filepath.Join(t.TempDir(), "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := artifact.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &api.Handler{Store: st, Builds: builds, Mirrors: mirrors, Broker: &logstream.Broker{}, Secrets: secret.NewVault(st, keys),
		Queue: queue.New(st, builds, nil, queue.Options{Artifacts: arts}), LongPoll: 100 * time.Millisecond,
		Delivery: delivery.New(st, mirrors, nil, nil), Artifacts: arts}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &accessEnv{url: srv.URL, st: st, h: h, tokens: map[string]string{}}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"acme/web", "acme/other"} {
		must(st.CreateRepo(ctx, &store.Repo{Name: name, CloneURL: origin, Forge: "github", WebhookSecret: "k"}))
	}
	for _, p := range people {
		u := &store.User{Name: p, Admin: p == "root"}
		must(st.CreateUser(ctx, u))
		e.tokens[p] = "secret-of-" + p
		must(st.CreateToken(ctx, &store.Token{Name: "t", Hash: api.HashToken(e.tokens[p]), UserID: u.ID}))
	}
	_, err = st.AddGroupMembers(ctx, "devs", []string{"developer"})
	must(err)
	for _, g := range []*store.Grant{
		{Repo: "acme/web", User: "viewer", Role: store.RoleViewer},
		{Repo: "acme/web", Group: "devs", Role: store.RoleDeveloper},
		{Repo: store.AllRepos, User: "maintainer", Role: store.RoleMaintainer},
		{Repo: "acme/web", User: "owner", Role: store.RoleAdmin},
		// A role on another repo gives nothing on acme/web.
		{Repo: "acme/other", User: "outsider", Role: store.RoleAdmin},
	} {
		must(st.SetGrant(ctx, g))
	}
	web, err := st.Repo(ctx, "acme/web")
	must(err)
	for _, p := range []*int64{&e.queued, &e.failed} {
		b := &store.Build{RepoID: web.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
			Commit:   "0123456789abcdef0123456789abcdef01234567",
			Pipeline: []byte("jobs: {test: {steps: [\"true\"]}}\n"),
			Jobs:     []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
		must(st.CreateBuild(ctx, b))
		*p = b.ID
	}
	must(st.Update(ctx, e.failed, func(b *store.Build) error {
		b.Status, b.Jobs[0].Status = store.StatusFailure, store.StatusFailure
		return nil
	}))
	return e
}

// call makes a request as who ("" for no token) and returns the status
// and the body; a stream is cut after its headers.
func (e *accessEnv) call(t *testing.T, who, method, path string, body any) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[who])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, ""
	}
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// fingerprint is everything a denied request must leave as it was.
func (e *accessEnv) fingerprint(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	var out []any
	add := func(v any, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	add(e.st.Repos(ctx))
	add(e.st.Builds(ctx, store.BuildFilter{Limit: 1000}))
	add(e.st.Users(ctx))
	add(e.st.Groups(ctx))
	add(e.st.Grants(ctx, ""))
	add(e.st.Tokens(ctx, store.TokenAPI))
	add(e.st.Tokens(ctx, store.TokenAgent))
	add(e.st.Locks(ctx))
	add(e.st.Hooks(ctx))
	add(e.st.ListReleases(ctx, store.ReleaseFilter{Limit: 1000}))
	add(e.st.Deployments(ctx, store.DeploymentFilter{Limit: 1000}))
	add(e.st.ListFreezes(ctx, store.FreezeFilter{}))
	data, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestEveryRouteChecksRoles walks every API route with every role: those
// below the route's role get 403 saying what was missing, and nothing
// changes; the weakest one allowed succeeds; no token gets 401. A route
// without a case here fails the test, so no route goes unchecked.
func TestEveryRouteChecksRoles(t *testing.T) {
	origin, sha := gitOrigin(t)
	type tc struct {
		method, path string
		body         any
		need         string // the weakest of people allowed
	}
	cases := map[string]func(e *accessEnv) tc{
		"GET /api/v1/repos": func(e *accessEnv) tc { return tc{"GET", "/api/v1/repos", nil, "outsider"} },
		"POST /api/v1/repos": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/repos", api.NewRepo{Name: "acme/new", CloneURL: origin, WebhookSecret: "k"}, "root"}
		},
		"PATCH /api/v1/repos/{repo...}": func(e *accessEnv) tc {
			branch := "trunk"
			return tc{"PATCH", "/api/v1/repos/acme/web", api.RepoChange{DefaultBranch: &branch}, "owner"}
		},
		"DELETE /api/v1/repos/{repo...}": func(e *accessEnv) tc {
			return tc{"DELETE", "/api/v1/repos/acme/web", nil, "owner"}
		},
		"POST /api/v1/builds": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/builds", api.Trigger{Repo: "acme/web", Branch: "main", Commit: sha}, "developer"}
		},
		"GET /api/v1/builds": func(e *accessEnv) tc { return tc{"GET", "/api/v1/builds?repo=acme/web", nil, "viewer"} },
		"GET /api/v1/builds/{id}": func(e *accessEnv) tc {
			return tc{"GET", fmt.Sprintf("/api/v1/builds/%d", e.queued), nil, "viewer"}
		},
		"POST /api/v1/builds/{id}/cancel": func(e *accessEnv) tc {
			return tc{"POST", fmt.Sprintf("/api/v1/builds/%d/cancel", e.queued), nil, "developer"}
		},
		"POST /api/v1/builds/{id}/retry": func(e *accessEnv) tc {
			return tc{"POST", fmt.Sprintf("/api/v1/builds/%d/retry", e.failed), nil, "developer"}
		},
		"GET /api/v1/builds/{id}/logs": func(e *accessEnv) tc {
			return tc{"GET", fmt.Sprintf("/api/v1/builds/%d/logs", e.queued), nil, "viewer"}
		},
		"GET /api/v1/events": func(e *accessEnv) tc { return tc{"GET", "/api/v1/events", nil, "outsider"} },
		"POST /api/v1/agent-tokens": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/agent-tokens", api.NewAgentToken{Name: "hosts"}, "root"}
		},
		"GET /api/v1/agent-tokens": func(e *accessEnv) tc { return tc{"GET", "/api/v1/agent-tokens", nil, "root"} },
		"POST /api/v1/agent-tokens/{id}/revoke": func(e *accessEnv) tc {
			tok := &store.Token{Name: "hosts", Hash: []byte("agent"), Kind: store.TokenAgent}
			if err := e.st.CreateToken(context.Background(), tok); err != nil {
				panic(err)
			}
			return tc{"POST", fmt.Sprintf("/api/v1/agent-tokens/%d/revoke", tok.ID), nil, "root"}
		},
		"GET /api/v1/agents": func(e *accessEnv) tc { return tc{"GET", "/api/v1/agents", nil, "outsider"} },
		"GET /api/v1/queue":  func(e *accessEnv) tc { return tc{"GET", "/api/v1/queue", nil, "outsider"} },
		"POST /api/v1/locks": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/locks", api.NewLock{Name: "db", Capacity: 1}, "root"}
		},
		"GET /api/v1/locks": func(e *accessEnv) tc { return tc{"GET", "/api/v1/locks", nil, "outsider"} },
		"DELETE /api/v1/locks/{name}": func(e *accessEnv) tc {
			if err := e.st.CreateLock(context.Background(), &store.Lock{Name: "db", Capacity: 1}); err != nil {
				panic(err)
			}
			return tc{"DELETE", "/api/v1/locks/db", nil, "root"}
		},
		"GET /api/v1/audit":        func(e *accessEnv) tc { return tc{"GET", "/api/v1/audit", nil, "root"} },
		"GET /api/v1/audit/verify": func(e *accessEnv) tc { return tc{"GET", "/api/v1/audit/verify", nil, "root"} },
		"GET /api/v1/secrets/{repo...}": func(e *accessEnv) tc {
			return tc{"GET", "/api/v1/secrets/acme/web", nil, "maintainer"}
		},
		"PUT /api/v1/secrets/{repo...}": func(e *accessEnv) tc {
			return tc{"PUT", "/api/v1/secrets/acme/web", api.SetSecret{Name: "TOKEN", Value: "s3cr3t"}, "maintainer"}
		},
		"DELETE /api/v1/secrets/{repo...}": func(e *accessEnv) tc {
			if _, _, err := e.h.Secrets.Set(context.Background(), "acme/web", "TOKEN", "", "s3cr3t"); err != nil {
				panic(err)
			}
			return tc{"DELETE", "/api/v1/secrets/acme/web?name=TOKEN", nil, "maintainer"}
		},
		"POST /api/v1/secret-keys/rotate": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/secret-keys/rotate", nil, "root"}
		},
		"GET /api/v1/whoami": func(e *accessEnv) tc { return tc{"GET", "/api/v1/whoami", nil, "outsider"} },
		"GET /api/v1/users":  func(e *accessEnv) tc { return tc{"GET", "/api/v1/users", nil, "root"} },
		"POST /api/v1/users": func(e *accessEnv) tc { return tc{"POST", "/api/v1/users", api.NewUser{Name: "dave"}, "root"} },
		"DELETE /api/v1/users/{name}": func(e *accessEnv) tc {
			return tc{"DELETE", "/api/v1/users/viewer", nil, "root"}
		},
		"GET /api/v1/tokens":  func(e *accessEnv) tc { return tc{"GET", "/api/v1/tokens", nil, "outsider"} },
		"POST /api/v1/tokens": func(e *accessEnv) tc { return tc{"POST", "/api/v1/tokens", api.NewToken{Name: "ci"}, "outsider"} },
		"POST /api/v1/tokens/{id}/revoke": func(e *accessEnv) tc {
			// Revoking another user's token is for admins (here root's
			// own); anyone may revoke their own, which TestTokens covers.
			root, err := e.st.User(context.Background(), "root")
			if err != nil {
				panic(err)
			}
			toks, err := e.st.TokensOf(context.Background(), root.ID)
			if err != nil {
				panic(err)
			}
			return tc{"POST", fmt.Sprintf("/api/v1/tokens/%d/revoke", toks[0].ID), nil, "root"}
		},
		"GET /api/v1/groups": func(e *accessEnv) tc { return tc{"GET", "/api/v1/groups", nil, "outsider"} },
		"POST /api/v1/groups/{name}/add": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/groups/devs/add", api.GroupMembers{Users: []string{"viewer"}}, "root"}
		},
		"POST /api/v1/groups/{name}/remove": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/groups/devs/remove", api.GroupMembers{Users: []string{"developer"}}, "root"}
		},
		"DELETE /api/v1/groups/{name}": func(e *accessEnv) tc { return tc{"DELETE", "/api/v1/groups/devs", nil, "root"} },
		"GET /api/v1/grants": func(e *accessEnv) tc {
			return tc{"GET", "/api/v1/grants?repo=acme/web", nil, "maintainer"}
		},
		"POST /api/v1/grants": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/grants", api.Grant{Repo: "acme/web", User: "viewer", Role: store.RoleDeveloper}, "owner"}
		},
		"POST /api/v1/grants/revoke": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/grants/revoke", api.Grant{Repo: "acme/web", User: "viewer"}, "owner"}
		},
		"GET /api/v1/deliveries": func(e *accessEnv) tc { return tc{"GET", "/api/v1/deliveries?repo=acme/web", nil, "viewer"} },
		"POST /api/v1/hooks": func(e *accessEnv) tc {
			return tc{"POST", "/api/v1/hooks", api.NewHook{URL: "https://hooks.example.com/in", Events: []string{"build.*"}}, "root"}
		},
		"GET /api/v1/hooks": func(e *accessEnv) tc { return tc{"GET", "/api/v1/hooks", nil, "root"} },
		"GET /api/v1/issues/{key}/builds": func(e *accessEnv) tc {
			return tc{"GET", "/api/v1/issues/OPS-1/builds?repo=acme/web", nil, "viewer"}
		},
		"GET /api/v1/issues/{key}/releases": func(e *accessEnv) tc {
			return tc{"GET", "/api/v1/issues/OPS-1/releases?repo=acme/web", nil, "viewer"}
		},
		"DELETE /api/v1/hooks/{id}": func(e *accessEnv) tc {
			h := &store.Hook{URL: "https://hooks.example.com/in", Secret: "s3cret-s3cret-s3cret", Events: []string{"*"}, Format: store.HookJSON}
			if err := e.st.CreateHook(context.Background(), h); err != nil {
				panic(err)
			}
			return tc{"DELETE", fmt.Sprintf("/api/v1/hooks/%d", h.ID), nil, "root"}
		},
	}
	for pattern, c := range deliveryCases {
		cases[pattern] = func(e *accessEnv) tc {
			method, path, body, need := c(e)
			return tc{method, path, body, need}
		}
	}

	routes := newAccessEnv(t, origin).h.Routes()
	var patterns []string
	for _, r := range routes {
		patterns = append(patterns, r.Pattern)
		if cases[r.Pattern] == nil {
			t.Errorf("route %s (role %q, %s) has no case in this test: add one", r.Pattern, r.Role, r.Scope)
		}
	}
	for p := range cases {
		if !slices.Contains(patterns, p) {
			t.Errorf("case %s names no route", p)
		}
	}
	for _, r := range routes {
		mk := cases[r.Pattern]
		if mk == nil {
			continue
		}
		t.Run(strings.ReplaceAll(r.Pattern, "/", "_"), func(t *testing.T) {
			t.Parallel()
			e := newAccessEnv(t, origin)
			c := mk(e)
			if code, body := e.call(t, "", c.method, c.path, c.body); code != http.StatusUnauthorized {
				t.Errorf("without a token: %d %s, want 401", code, body)
			}
			need := slices.Index(people, c.need)
			for i, who := range people {
				before := e.fingerprint(t)
				code, body := e.call(t, who, c.method, c.path, c.body)
				switch {
				case i < need:
					if code != http.StatusForbidden || !strings.Contains(body, "may not do this") {
						t.Errorf("as %s: %d %s, want 403 saying what is missing", who, code, strings.TrimSpace(body))
					}
					if diff := cmp.Diff(before, e.fingerprint(t)); diff != "" {
						t.Errorf("as %s: a denied request changed something (-before +after):\n%s", who, diff)
					}
				case i == need:
					if code < 200 || code > 299 {
						t.Errorf("as %s, the weakest allowed: %d %s, want success", who, code, strings.TrimSpace(body))
					}
					return // the request may have changed what the next would see
				}
			}
		})
	}
}
