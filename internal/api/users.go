package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// User is a user as the API shows it.
type User struct {
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Token, in the answer that created the user, is their first API
	// token: it is shown only then.
	Token *APIToken `json:"token,omitempty"`
}

// NewUser is the body of POST /api/v1/users.
type NewUser struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
	// Expires is how long the user's first token lasts, as for NewToken.
	Expires string `json:"expires,omitempty"`
}

// APIToken is a user's API token as the API shows it; Token (the secret)
// is set only in the answer that created it.
type APIToken struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	User      string     `json:"user"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	Token     string     `json:"token,omitempty"`
}

// NewToken is the body of POST /api/v1/tokens.
type NewToken struct {
	Name string `json:"name"`
	// User, for an admin, makes the token for another user; empty is the
	// caller.
	User string `json:"user,omitempty"`
	// Expires is how long the token lasts: a number of days ("30d"), a Go
	// duration ("12h"), or "never"; empty is DefaultTokenLife.
	Expires string `json:"expires,omitempty"`
}

// DefaultTokenLife is how long a user token lasts unless asked otherwise.
const DefaultTokenLife = 90 * 24 * time.Hour

// Whoami is the answer to GET /api/v1/whoami.
type Whoami struct {
	User  string `json:"user"`
	Admin bool   `json:"admin"`
	Token string `json:"token"`
	// Roles are the caller's roles by repo ("*" for every repo), from
	// their own grants and their groups'.
	Roles map[string]string `json:"roles"`
}

// Group is a group of users.
type Group struct {
	Name      string    `json:"name"`
	Members   []string  `json:"members"`
	CreatedAt time.Time `json:"created_at"`
}

// GroupMembers is the body of the calls that change a group.
type GroupMembers struct {
	Users []string `json:"users"`
}

// Grant is a role on a repo ("*" for every repo) for a user or a group.
type Grant struct {
	Repo      string     `json:"repo"`
	User      string     `json:"user,omitempty"`
	Group     string     `json:"group,omitempty"`
	Role      string     `json:"role,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

func (h *Handler) registerUsers(mux *http.ServeMux) {
	h.route(mux, "GET /api/v1/whoami", anyUser, h.whoami)
	h.route(mux, "GET /api/v1/users", adminOnly, h.listUsers)
	h.route(mux, "POST /api/v1/users", adminOnly, h.addUser)
	h.route(mux, "DELETE /api/v1/users/{name}", adminOnly, h.deleteUser)
	// Tokens are the caller's own; an admin may name another user.
	h.route(mux, "GET /api/v1/tokens", anyUser, h.listTokens)
	h.route(mux, "POST /api/v1/tokens", anyUser, h.createToken)
	h.route(mux, "POST /api/v1/tokens/{id}/revoke", anyUser, h.revokeToken)
	h.route(mux, "GET /api/v1/groups", anyUser, h.listGroups)
	h.route(mux, "POST /api/v1/groups/{name}/add", adminOnly, h.addMembers)
	h.route(mux, "POST /api/v1/groups/{name}/remove", adminOnly, h.removeMembers)
	h.route(mux, "DELETE /api/v1/groups/{name}", adminOnly, h.deleteGroup)
	// Who may see and change roles on a repo: its maintainers see them,
	// its admins change them; only an admin may grant on every repo.
	h.route(mux, "GET /api/v1/grants", rule{store.RoleMaintainer, repoQuery}, h.listGrants)
	h.route(mux, "POST /api/v1/grants", rule{store.RoleAdmin, repoBody}, h.setGrant)
	h.route(mux, "POST /api/v1/grants/revoke", rule{store.RoleAdmin, repoBody}, h.deleteGrant)
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request) error {
	id := identityOf(r.Context())
	out := Whoami{User: id.User, Admin: id.Admin, Token: id.Token.Name, Roles: map[string]string{}}
	for repo := range id.ranks {
		out.Roles[repo] = store.Roles[id.ranks[repo]-1]
	}
	return WriteJSON(w, http.StatusOK, out)
}

func userOf(u *store.User) User { return User{Name: u.Name, Admin: u.Admin, CreatedAt: u.CreatedAt} }

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := h.Store.Users(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, users, userOf)
}

// validName checks a user or group name: what a repo owner may be.
func validName(what, name string) error {
	if len(name) > 64 || !spec.NamePattern.MatchString(name) {
		return badRequestf("%s name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

func (h *Handler) addUser(w http.ResponseWriter, r *http.Request) error {
	var in NewUser
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if err := validName("user", in.Name); err != nil {
		return err
	}
	life, err := ParseExpiry(in.Expires)
	if err != nil {
		return err
	}
	u := &store.User{Name: in.Name, Admin: in.Admin}
	if err := h.Store.CreateUser(r.Context(), u); err != nil {
		return err
	}
	tok, err := h.newToken(r, u, "first", life)
	if err != nil {
		return err
	}
	if err := h.audit(r, "user.add", "user:"+u.Name, map[string]string{"admin": strconv.FormatBool(u.Admin),
		"token": strconv.FormatInt(tok.ID, 10)}); err != nil {
		return err
	}
	out := userOf(u)
	out.Token = tok
	return WriteJSON(w, http.StatusCreated, out)
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	u, err := h.Store.User(r.Context(), name)
	if err != nil {
		return err
	}
	if u.Admin {
		users, err := h.Store.Users(r.Context())
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(users, func(o *store.User) bool { return o.Admin && o.Name != name }) {
			return &forbidden{fmt.Sprintf("%s is the last admin: make another user an admin first", name)}
		}
	}
	if err := h.Store.DeleteUser(r.Context(), name); err != nil {
		return err
	}
	if err := h.audit(r, "user.rm", "user:"+name, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ParseExpiry reads a token's life: "30d", a Go duration such as "12h",
// or "never" (0); "" is DefaultTokenLife.
func ParseExpiry(s string) (time.Duration, error) {
	switch s {
	case "":
		return DefaultTokenLife, nil
	case "never":
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 3650 {
			return 0, badRequestf("expires %q: want a number of days from 1 to 3650, such as 30d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < time.Minute || d > 3650*24*time.Hour {
			return 0, badRequestf("expires %q: want days (30d), a duration of at least a minute (12h), or never", s)
		}
	}
	return d, nil
}

func apiToken(t *store.Token) *APIToken {
	out := &APIToken{ID: t.ID, Name: t.Name, User: t.User, CreatedAt: t.CreatedAt}
	if !t.ExpiresAt.IsZero() {
		out.ExpiresAt = &t.ExpiresAt
	}
	if !t.RevokedAt.IsZero() {
		out.RevokedAt = &t.RevokedAt
	}
	return out
}

// newToken creates an API token for u that lasts life (0: for ever) and
// returns it with its secret.
func (h *Handler) newToken(r *http.Request, u *store.User, name string, life time.Duration) (*APIToken, error) {
	if name == "" || len(name) > 128 {
		return nil, badRequestf("token name %q: want 1 to 128 characters", name)
	}
	secret := NewSecret("gantry_")
	t := &store.Token{Name: name, Hash: HashToken(secret), Kind: store.TokenAPI, UserID: u.ID, User: u.Name}
	if life > 0 {
		t.ExpiresAt = time.Now().Add(life).UTC().Truncate(time.Second)
	}
	if err := h.Store.CreateToken(r.Context(), t); err != nil {
		return nil, err
	}
	out := apiToken(t)
	out.Token = secret
	return out, nil
}

// tokenUser is the user whose tokens a request is about: the caller, or
// for an admin the one ?user= (or the body) names.
func (h *Handler) tokenUser(r *http.Request, name string) (*store.User, error) {
	id := identityOf(r.Context())
	if name == "" || name == id.User {
		if id.Token.UserID == 0 {
			return nil, badRequestf("token %q belongs to no user", id.Token.Name)
		}
		return &store.User{ID: id.Token.UserID, Name: id.User, Admin: id.Admin}, nil
	}
	if err := id.needAdmin(); err != nil {
		return nil, err
	}
	return h.Store.User(r.Context(), name)
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request) error {
	u, err := h.tokenUser(r, r.URL.Query().Get("user"))
	if err != nil {
		return err
	}
	ts, err := h.Store.TokensOf(r.Context(), u.ID)
	if err != nil {
		return err
	}
	return writeList(w, ts, apiToken)
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request) error {
	var in NewToken
	if err := readJSON(r, &in); err != nil {
		return err
	}
	life, err := ParseExpiry(in.Expires)
	if err != nil {
		return err
	}
	u, err := h.tokenUser(r, in.User)
	if err != nil {
		return err
	}
	if in.Name == "" {
		in.Name = "token"
	}
	tok, err := h.newToken(r, u, in.Name, life)
	if err != nil {
		return err
	}
	if err := h.audit(r, "token.create", fmt.Sprintf("token:%d", tok.ID), map[string]string{
		"kind": store.TokenAPI, "name": tok.Name, "user": tok.User, "expires": in.Expires}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, tok)
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	tid, err := pathID(r, "token")
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	// Agent tokens have their own route.
	tokens, err := h.Store.Tokens(r.Context(), store.TokenAPI)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(tokens, func(t *store.Token) bool { return t.ID == tid })
	if i < 0 {
		return fmt.Errorf("token %d: %w", tid, store.ErrNotFound)
	}
	if tokens[i].UserID != id.Token.UserID || tokens[i].UserID == 0 {
		if err := id.needAdmin(); err != nil {
			return &forbidden{fmt.Sprintf("%s may not do this: token %d is %s's, and revoking another user's token needs an admin",
				id.User, tid, tokens[i].User)}
		}
	}
	t, err := h.Store.RevokeToken(r.Context(), tid)
	if err != nil {
		return err
	}
	if err := h.audit(r, "token.revoke", fmt.Sprintf("token:%d", t.ID), map[string]string{
		"kind": t.Kind, "name": t.Name, "user": t.User}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, apiToken(t))
}

func groupOf(g *store.Group) Group {
	return Group{Name: g.Name, Members: append([]string{}, g.Members...), CreatedAt: g.CreatedAt}
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) error {
	groups, err := h.Store.Groups(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, groups, groupOf)
}

func (h *Handler) addMembers(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "group.add", h.Store.AddGroupMembers)
}

func (h *Handler) removeMembers(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "group.remove", h.Store.RemoveGroupMembers)
}

func (h *Handler) changeGroup(w http.ResponseWriter, r *http.Request, action string, change func(ctx context.Context, group string, users []string) (*store.Group, error)) error {
	name := r.PathValue("name")
	if err := validName("group", name); err != nil {
		return err
	}
	var in GroupMembers
	if err := readJSON(r, &in); err != nil {
		return err
	}
	g, err := change(r.Context(), name, in.Users)
	if err != nil {
		return err
	}
	if err := h.audit(r, action, "group:"+name, map[string]string{"users": strings.Join(in.Users, " ")}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, groupOf(g))
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := h.Store.DeleteGroup(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	if err := h.audit(r, "group.rm", "group:"+r.PathValue("name"), nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func grantOf(g *store.Grant) Grant {
	return Grant{Repo: g.Repo, User: g.User, Group: g.Group, Role: g.Role, CreatedAt: &g.CreatedAt}
}

func (h *Handler) listGrants(w http.ResponseWriter, r *http.Request) error {
	grants, err := h.Store.Grants(r.Context(), r.URL.Query().Get("repo"))
	if err != nil {
		return err
	}
	// Without ?repo=, the grants on the repos the caller maintains.
	id := identityOf(r.Context())
	out := []Grant{}
	for _, g := range grants {
		if id.can(store.RoleMaintainer, g.Repo) {
			out = append(out, grantOf(g))
		}
	}
	return WriteJSON(w, http.StatusOK, out)
}

// readGrant reads and checks the body of a grant call.
func (h *Handler) readGrant(r *http.Request, needRole bool) (*store.Grant, error) {
	var in Grant
	if err := readJSON(r, &in); err != nil {
		return nil, err
	}
	if (in.User == "") == (in.Group == "") {
		return nil, badRequestf("name exactly one user or one group")
	}
	if in.Repo != store.AllRepos {
		if _, err := h.Store.Repo(r.Context(), in.Repo); err != nil {
			return nil, err
		}
	}
	if needRole && store.RoleRank(in.Role) == 0 {
		return nil, badRequestf("role %q: want one of %s", in.Role, strings.Join(store.Roles, ", "))
	}
	return &store.Grant{Repo: in.Repo, User: in.User, Group: in.Group, Role: in.Role}, nil
}

func (h *Handler) setGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := h.readGrant(r, true)
	if err != nil {
		return err
	}
	if err := h.Store.SetGrant(r.Context(), g); err != nil {
		return err
	}
	if err := h.audit(r, "role.grant", "repo:"+g.Repo, map[string]string{"subject": grantSubject(g), "role": g.Role}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, grantOf(g))
}

func (h *Handler) deleteGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := h.readGrant(r, false)
	if err != nil {
		return err
	}
	if err := h.Store.DeleteGrant(r.Context(), g); err != nil {
		return err
	}
	if err := h.audit(r, "role.revoke", "repo:"+g.Repo, map[string]string{"subject": grantSubject(g)}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// grantSubject names a grant's user or group: user:NAME or group:NAME.
func grantSubject(g *store.Grant) string {
	if g.Group != "" {
		return "group:" + g.Group
	}
	return "user:" + g.User
}
