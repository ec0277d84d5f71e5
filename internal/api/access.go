package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/gantry-ci/gantry/internal/store"
)

// Every route of the API names who may call it in a rule, and the one
// place that registers routes (Handler.route) enforces it before the
// handler runs: a route cannot be added without one. Routes lists them, so
// a test can walk every route with every role.

// scope says where a rule finds the repository a request acts on.
type scope int

const (
	// global: no repository. A rule with a role needs an admin; one
	// without lets any signed-in user in.
	global scope = iota
	// repoPath: the {repo...} path value.
	repoPath
	// buildPath: the repository of the build the {id} path value names.
	buildPath
	// repoQuery: the ?repo= query value. Without one, the handler lists
	// only what the caller may see.
	repoQuery
	// repoBody: the "repo" field of the JSON body.
	repoBody
	// deploymentPath: the repository of the deployment the {id} path
	// value names.
	deploymentPath
	// freezePath: the repository of the freeze the {id} path value names.
	freezePath
)

var scopeNames = map[scope]string{global: "global", repoPath: "repo in path", buildPath: "build in path",
	repoQuery: "repo in query", repoBody: "repo in body", deploymentPath: "deployment in path",
	freezePath: "freeze in path"}

// rule is who may call a route: at least role on the repository scope
// names; role "" is any signed-in user.
type rule struct {
	role  string
	scope scope
}

var (
	anyUser   = rule{}
	adminOnly = rule{role: store.RoleAdmin, scope: global}
)

// Route is a registered API route and who may call it.
type Route struct {
	Pattern string
	// Role is the least role the caller needs; "" is any signed-in user.
	Role string
	// Scope says where the repo the role is needed on comes from.
	Scope string
}

// Routes returns every route registered for API tokens.
func (h *Handler) Routes() []Route { return h.routes }

// route registers an API-token route with its rule.
func (h *Handler) route(mux *http.ServeMux, pattern string, rl rule, fn func(w http.ResponseWriter, r *http.Request) error) {
	h.routes = append(h.routes, Route{Pattern: pattern, Role: rl.role, Scope: scopeNames[rl.scope]})
	mux.Handle(pattern, h.adaptKind(store.TokenAPI, func(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
		if err := checkReasonHeader(r); err != nil {
			return err
		}
		id, err := h.identify(r.Context(), tok)
		if err != nil {
			return err
		}
		if err := h.check(r, id, rl); err != nil {
			return err
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}))
}

// identity is who a request acts for and what they may do.
type identity struct {
	Token *store.Token
	User  string
	Admin bool
	// ranks are the user's roles by repo (store.AllRepos for every repo),
	// as store.RoleRank.
	ranks map[string]int
}

type identityKey struct{}

// identityOf returns the identity of an API request; nil outside one.
func identityOf(ctx context.Context) *identity {
	id, _ := ctx.Value(identityKey{}).(*identity)
	return id
}

func (h *Handler) identify(ctx context.Context, tok *store.Token) (*identity, error) {
	id := &identity{Token: tok, User: tok.User, Admin: tok.Admin, ranks: map[string]int{}}
	if id.User == "" {
		id.User = "token:" + tok.Name
	}
	if id.Admin || tok.UserID == 0 {
		return id, nil
	}
	grants, err := h.Store.GrantsOf(ctx, tok.UserID)
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		id.ranks[g.Repo] = max(id.ranks[g.Repo], store.RoleRank(g.Role))
	}
	return id, nil
}

// rank is the caller's role on repo as store.RoleRank: an admin's is the
// highest everywhere; only an admin has one on store.AllRepos itself.
func (id *identity) rank(repo string) int {
	if id.Admin {
		return store.RoleRank(store.RoleAdmin)
	}
	if repo == store.AllRepos {
		return 0
	}
	return max(id.ranks[repo], id.ranks[store.AllRepos])
}

// can reports whether the caller has at least role on repo.
func (id *identity) can(role, repo string) bool { return id.rank(repo) >= store.RoleRank(role) }

// role names the caller's role on repo, or "none".
func (id *identity) role(repo string) string {
	if r := id.rank(repo); r > 0 {
		return store.Roles[r-1]
	}
	return "none"
}

// need returns nil when the caller has role on repo, else a 403 that says
// what was missing.
func (id *identity) need(role, repo string) error {
	if id.can(role, repo) {
		return nil
	}
	if repo == store.AllRepos {
		return &forbidden{fmt.Sprintf("%s may not do this: it needs an admin (a role on every repo)", id.User)}
	}
	return &forbidden{fmt.Sprintf("%s may not do this: it needs role %s on %s, and %s has %s",
		id.User, role, repo, id.User, id.role(repo))}
}

// needOnBuild is need for the repo of build b, which the caller named
// only by its ID: a caller who may not see that repo is not told its name.
func (id *identity) needOnBuild(role string, b *store.Build) error {
	if id.can(role, b.Repo) || id.can(store.RoleViewer, b.Repo) {
		return id.need(role, b.Repo)
	}
	return &forbidden{fmt.Sprintf("%s may not do this: it needs role %s on the repo of build %d, where %s has none",
		id.User, role, b.ID, id.User)}
}

// needAdmin returns nil for an admin, else a 403.
func (id *identity) needAdmin() error {
	if id.Admin {
		return nil
	}
	return &forbidden{fmt.Sprintf("%s may not do this: it needs an admin", id.User)}
}

// check enforces rl for a request.
func (h *Handler) check(r *http.Request, id *identity, rl rule) error {
	if rl.role == "" && rl.scope == global {
		return nil
	}
	switch rl.scope {
	case global:
		return id.needAdmin()
	case repoPath:
		return id.need(rl.role, r.PathValue("repo"))
	case buildPath:
		bid, err := buildID(r)
		if err != nil {
			return err
		}
		b, err := h.Store.Build(r.Context(), bid)
		if err != nil {
			return err
		}
		return id.needOnBuild(rl.role, b)
	case repoQuery:
		if repo := r.URL.Query().Get("repo"); repo != "" {
			return id.need(rl.role, repo)
		}
		return nil // the handler shows only what the caller may see
	case repoBody:
		repo, err := peekRepo(r)
		if err != nil {
			return err
		}
		return id.need(rl.role, repo)
	case deploymentPath:
		did, err := pathID(r, "deployment")
		if err != nil {
			return err
		}
		d, err := h.Store.Deployment(r.Context(), did)
		if err != nil {
			return err
		}
		return id.need(rl.role, d.Repo)
	case freezePath:
		fid, err := pathID(r, "freeze")
		if err != nil {
			return err
		}
		fs, err := h.Store.ListFreezes(r.Context(), store.FreezeFilter{ID: fid})
		if err != nil {
			return err
		}
		if len(fs) == 0 {
			return fmt.Errorf("freeze %d: %w", fid, store.ErrNotFound)
		}
		return id.need(rl.role, fs[0].Repo)
	}
	return fmt.Errorf("route rule with unknown scope %d", rl.scope)
}

// peekRepo reads the "repo" field of a JSON body and leaves the body for
// the handler to read again.
func peekRepo(r *http.Request) (string, error) {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	var in struct {
		Repo string `json:"repo"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return "", badRequestf("invalid JSON body: %v", err)
	}
	if in.Repo == "" {
		return "", badRequestf("repo is required")
	}
	return in.Repo, nil
}

// visible keeps the items whose repo the caller may view; outside an API
// request, none.
func visible[T any](ctx context.Context, items []T, repo func(T) string) []T {
	id := identityOf(ctx)
	out := items[:0]
	for _, it := range items {
		if id != nil && id.can(store.RoleViewer, repo(it)) {
			out = append(out, it)
		}
	}
	return out
}

// pathID parses the {id} path value.
func pathID(r *http.Request, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, badRequestf("%s ID %q: want a positive number", what, r.PathValue("id"))
	}
	return id, nil
}
