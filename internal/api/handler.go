package api

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/delivery"
	"github.com/gantry-ci/gantry/internal/deploy"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/logstream"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Forges are the forge names a repo may have.
var Forges = []string{"github", "gitea", "gitlab", "bitbucket"}

// Handler serves /api/v1.
type Handler struct {
	Store   store.Store
	Builds  *build.Service
	Mirrors *git.Mirrors
	Broker  *logstream.Broker
	Log     *slog.Logger
	// Queue hands jobs to remote agents and knows them.
	Queue *queue.Dispatcher
	// LongPoll is how long an idle agent's request for work is held; 0
	// means queue.LongPoll.
	LongPoll time.Duration
	// Secrets keeps the repositories' secrets; nil refuses the secret
	// routes.
	Secrets *secret.Vault
	// Delivery runs releases and deployments; Artifacts keeps the bytes
	// of artifacts.
	Delivery  *delivery.Service
	Artifacts *artifact.Store
	// MaxArtifactSize is the most bytes one artifact may have; 0 means
	// DefaultMaxArtifactSize.
	MaxArtifactSize int64

	reqID  atomic.Int64
	routes []Route
	// limiter slows down guessing tokens, per address.
	limiter authLimiter
}

// badRequest is an error in what the client sent; its message is safe to show.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, args ...any) error {
	return &badRequest{fmt.Sprintf(format, args...)}
}

var errUnauthorized = errors.New("missing or invalid API token: send Authorization: Bearer TOKEN")

// HashToken is how tokens are stored: a SHA-256 of the secret. Tokens are
// long random strings, so a fast hash is as good as a slow one.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Register mounts the API on mux. Each route names who may call it (see
// access.go); the test of roles walks Routes.
func (h *Handler) Register(mux *http.ServeMux) {
	viewer := func(s scope) rule { return rule{store.RoleViewer, s} }
	developer := func(s scope) rule { return rule{store.RoleDeveloper, s} }
	admin := func(s scope) rule { return rule{store.RoleAdmin, s} }
	h.route(mux, "GET /api/v1/repos", anyUser, h.listRepos)
	h.route(mux, "POST /api/v1/repos", adminOnly, h.addRepo)
	h.route(mux, "PATCH /api/v1/repos/{repo...}", admin(repoPath), h.updateRepo)
	h.route(mux, "DELETE /api/v1/repos/{repo...}", admin(repoPath), h.deleteRepo)
	h.route(mux, "POST /api/v1/builds", developer(repoBody), h.trigger)
	h.route(mux, "GET /api/v1/builds", viewer(repoQuery), h.listBuilds)
	h.route(mux, "GET /api/v1/builds/{id}", viewer(buildPath), h.getBuild)
	h.route(mux, "POST /api/v1/builds/{id}/cancel", developer(buildPath), h.cancel)
	h.route(mux, "POST /api/v1/builds/{id}/retry", developer(buildPath), h.retry)
	h.route(mux, "GET /api/v1/builds/{id}/logs", viewer(buildPath), h.logs)
	h.route(mux, "GET /api/v1/events", anyUser, h.events)
	h.route(mux, "POST /api/v1/agent-tokens", adminOnly, h.createAgentToken)
	h.route(mux, "GET /api/v1/agent-tokens", adminOnly, h.listAgentTokens)
	h.route(mux, "POST /api/v1/agent-tokens/{id}/revoke", adminOnly, h.revokeAgentToken)
	h.route(mux, "GET /api/v1/agents", anyUser, h.listAgents)
	h.route(mux, "GET /api/v1/queue", anyUser, h.listQueue)
	h.route(mux, "POST /api/v1/locks", adminOnly, h.addLock)
	h.route(mux, "GET /api/v1/locks", anyUser, h.listLocks)
	h.route(mux, "DELETE /api/v1/locks/{name}", adminOnly, h.deleteLock)
	h.route(mux, "GET /api/v1/audit", adminOnly, h.listAudit)
	h.route(mux, "GET /api/v1/audit/verify", adminOnly, h.verifyAudit)
	maintainer := func(s scope) rule { return rule{store.RoleMaintainer, s} }
	h.route(mux, "GET /api/v1/secrets/{repo...}", maintainer(repoPath), h.listSecrets)
	h.route(mux, "PUT /api/v1/secrets/{repo...}", maintainer(repoPath), h.setSecret)
	h.route(mux, "DELETE /api/v1/secrets/{repo...}", maintainer(repoPath), h.deleteSecret)
	h.route(mux, "POST /api/v1/secret-keys/rotate", adminOnly, h.rotateSecretKey)
	h.route(mux, "GET /api/v1/deliveries", viewer(repoQuery), h.listDeliveries)
	h.route(mux, "POST /api/v1/hooks", adminOnly, h.addHook)
	h.route(mux, "GET /api/v1/hooks", adminOnly, h.listHooks)
	h.route(mux, "DELETE /api/v1/hooks/{id}", adminOnly, h.deleteHook)
	h.route(mux, "GET /api/v1/issues/{key}/builds", viewer(repoQuery), h.issueBuilds)
	h.route(mux, "GET /api/v1/issues/{key}/releases", viewer(repoQuery), h.issueReleases)
	// Status badges, for READMEs: no token.
	mux.Handle("GET /badge/{repo...}", h.handle(h.badge))
	h.registerUsers(mux)
	h.registerArtifacts(mux, viewer)
	h.registerDelivery(mux, viewer)
	h.registerFreezes(mux, viewer, admin)
	// What agents call, with agent tokens.
	h.registerAgents(mux)
}

// adaptKind turns a handler that returns an error into an http.Handler
// that takes a token of one kind: this is the one place errors become
// statuses.
func (h *Handler) adaptKind(kind string, fn func(w http.ResponseWriter, r *http.Request, tok *store.Token) error) http.Handler {
	return h.handle(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := h.authenticate(r, kind)
		if err != nil {
			return err
		}
		if kind == store.TokenAgent {
			if v := r.Header.Get(protocolHeader); v != AgentProtocol {
				return badRequestf("agent protocol %q: this server speaks version %s; run an agent of the server's version", v, AgentProtocol)
			}
		}
		return fn(w, r, tok)
	})
}

func (h *Handler) handle(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			WriteError(w, r, h.Log, err, &h.reqID)
		}
	})
}

// WriteError answers with the status err maps to and a safe message; the
// log gets the cause with a request ID.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, seq *atomic.Int64) {
	status, msg := StatusOf(err)
	var tm *tooManyRequests
	if errors.As(err, &tm) {
		w.Header().Set("Retry-After", strconv.Itoa(int(tm.wait.Seconds()+1)))
	}
	id := fmt.Sprintf("%d-%d", time.Now().Unix(), seq.Add(1))
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	if log != nil {
		log.LogAttrs(r.Context(), level, "request failed", slog.String("request_id", id), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", status), slog.Any("err", err))
	}
	WriteJSON(w, status, Error{Error: msg, RequestID: id})
}

// StatusOf is the HTTP status an error maps to and a message safe to show
// the client: the one mapping of errors to statuses, for the API and the
// web pages alike.
func StatusOf(err error) (status int, msg string) {
	var br *badRequest
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest, br.msg
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit)
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, err.Error()
	case errors.As(err, new(*forbidden)), errors.Is(err, deploy.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.As(err, new(*tooManyRequests)):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, store.ErrStaleLease):
		// The agent must stop the job: the message is what it logs.
		return http.StatusConflict, staleLease
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, build.ErrNotFinished), errors.Is(err, build.ErrDeployment), errors.Is(err, deploy.ErrRefused):
		return http.StatusConflict, err.Error()
	case errors.Is(err, queue.ErrNoArtifacts):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrConflict):
		// The store's message may carry the driver's words.
		return http.StatusConflict, "already exists"
	}
	return http.StatusInternalServerError, "internal error"
}

// staleLease is the message of a 409 to an agent call: the job was taken
// away from the agent.
const staleLease = "lease is no longer held: the job was cancelled or handed to another agent"

// authenticate returns the request's token when it is valid and of kind:
// an agent token cannot call the API, nor an API token lease jobs. The
// answer never says which part was wrong. An address that keeps sending
// wrong tokens is refused for a while (429) before its tokens are looked at.
func (h *Handler) authenticate(r *http.Request, kind string) (*store.Token, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		secret = ""
	}
	return h.authenticateSecret(r, secret, kind)
}

// authenticateSecret is authenticate for a secret however it came: the
// Authorization header, or the web UI's sign-in form.
func (h *Handler) authenticateSecret(r *http.Request, secret, kind string) (*store.Token, error) {
	addr := remoteHost(r)
	if wait := h.limiter.blocked(addr); wait > 0 {
		return nil, &tooManyRequests{wait}
	}
	tok, err := h.token(r.Context(), secret, kind)
	if errors.Is(err, errUnauthorized) {
		h.limiter.failed(addr)
	}
	return tok, err
}

func (h *Handler) token(ctx context.Context, secret, kind string) (*store.Token, error) {
	if secret == "" || len(secret) > 256 {
		return nil, errUnauthorized
	}
	hash := HashToken(secret)
	tok, err := h.Store.TokenByHash(ctx, hash)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnauthorized
		}
		return nil, err
	}
	// The lookup found the row by this very hash; comparing again in
	// constant time keeps the check itself free of timing, whatever the
	// database's index does.
	if subtle.ConstantTimeCompare(tok.Hash, hash) != 1 || !tokenValid(tok, kind, time.Now()) {
		return nil, errUnauthorized
	}
	return tok, nil
}

// streamCheck is how often a stream (the event stream, a followed log)
// checks that its token still holds: a revoked or expired token, or a
// removed user, ends it within this.
const streamCheck = 5 * time.Second

// streamEnded is the error event a stream ends with when its token no
// longer holds.
const streamEnded = "the token of this stream was revoked or has expired"

// stillValid reports whether the token of the request's identity is still
// valid: not revoked, not expired, its user not removed.
func (h *Handler) stillValid(ctx context.Context) bool {
	id := identityOf(ctx)
	if id == nil || id.Token == nil {
		return true // not a token's stream (the web UI checks its sessions itself)
	}
	tok, err := h.Store.TokenByHash(ctx, id.Token.Hash)
	if err != nil {
		return !errors.Is(err, store.ErrNotFound) // a passing database error does not end it
	}
	return tokenValid(tok, id.Token.Kind, time.Now())
}

// writeList answers with items as a JSON array (never null), each as conv
// shows it.
func writeList[T, U any](w http.ResponseWriter, items []T, conv func(T) U) error {
	out := make([]U, 0, len(items))
	for _, it := range items {
		out = append(out, conv(it))
	}
	return WriteJSON(w, http.StatusOK, out)
}

// tokenValid reports whether tok is of kind, not revoked and not expired
// at now.
func tokenValid(tok *store.Token, kind string, now time.Time) bool {
	return tok.Kind == kind && tok.RevokedAt.IsZero() && (tok.ExpiresAt.IsZero() || now.Before(tok.ExpiresAt))
}

// WriteJSON answers with v as indented JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

func readJSON(r *http.Request, v any) error { return readJSONMax(r, v, 1<<20) }

// readJSONLarge reads an agent's batch of log output.
func readJSONLarge(r *http.Request, v any) error { return readJSONMax(r, v, 16<<20) }

func readJSONMax(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequestf("invalid JSON body: %v", err)
	}
	return nil
}

func (h *Handler) listRepos(w http.ResponseWriter, r *http.Request) error {
	repos, err := h.Store.Repos(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, visible(r.Context(), repos, func(r *store.Repo) string { return r.Name }), RepoOf)
}

// validRepoName is OWNER/NAME, with GitLab subgroups allowed.
func validRepoName(name string) bool {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || !spec.NamePattern.MatchString(p) {
			return false
		}
	}
	return true
}

// probeTimeout bounds how long adding a repository waits for the forge.
const probeTimeout = 20 * time.Second

func (h *Handler) addRepo(w http.ResponseWriter, r *http.Request) error {
	var in NewRepo
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if in.Forge == "" {
		in.Forge = "github"
	}
	if !validRepoName(in.Name) {
		return badRequestf("repo name %q: want OWNER/NAME", in.Name)
	}
	if err := checkRepo(in.CloneURL, in.WebhookSecret, in.Forge, in.APIURL); err != nil {
		return err
	}
	// A name taken is refused before the forge is asked, which may take a
	// while.
	if _, err := h.Store.Repo(r.Context(), in.Name); err == nil {
		return fmt.Errorf("repo %q: %w", in.Name, store.ErrConflict)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	head, warning := probeRepo(r.Context(), in.CloneURL)
	if in.DefaultBranch == "" {
		in.DefaultBranch = cmp.Or(head, "main")
	}
	rp := &store.Repo{Name: in.Name, CloneURL: in.CloneURL, Forge: in.Forge, WebhookSecret: in.WebhookSecret, DefaultBranch: in.DefaultBranch,
		APIURL: strings.TrimSuffix(in.APIURL, "/")}
	if err := h.Store.CreateRepo(r.Context(), rp); err != nil {
		return err
	}
	detail := map[string]string{"clone_url": git.RedactURL(rp.CloneURL), "forge": rp.Forge, "default_branch": rp.DefaultBranch}
	if rp.APIURL != "" {
		detail["api_url"] = rp.APIURL // where the forge token goes
	}
	if err := h.audit(r, "repo.add", "repo:"+rp.Name, detail); err != nil {
		return err
	}
	h.warnUnreadable(r, rp.Name, warning)
	return WriteJSON(w, http.StatusCreated, RepoAnswer{Repo: RepoOf(rp), Warning: warning})
}

// updateRepo changes the settings a RepoChange gives, and keeps the
// repository's builds: a rotated token or webhook secret, a moved forge.
func (h *Handler) updateRepo(w http.ResponseWriter, r *http.Request) error {
	var in RepoChange
	if err := readJSON(r, &in); err != nil {
		return err
	}
	rp, err := h.Store.Repo(r.Context(), r.PathValue("repo"))
	if err != nil {
		return err
	}
	if in == (RepoChange{}) {
		return badRequestf("nothing to change: give clone_url, webhook_secret, forge, default_branch or api_url")
	}
	detail := map[string]string{}
	set := func(field string, p *string, to *string, shown string) {
		if p != nil && *p != *to {
			*to, detail[field] = *p, shown
		}
	}
	if in.CloneURL != nil {
		set("clone_url", in.CloneURL, &rp.CloneURL, git.RedactURL(*in.CloneURL))
	}
	if in.WebhookSecret != nil {
		set("webhook_secret", in.WebhookSecret, &rp.WebhookSecret, "changed")
	}
	if in.Forge != nil {
		set("forge", in.Forge, &rp.Forge, *in.Forge)
	}
	if in.DefaultBranch != nil {
		if *in.DefaultBranch == "" {
			return badRequestf("default_branch cannot be empty")
		}
		set("default_branch", in.DefaultBranch, &rp.DefaultBranch, *in.DefaultBranch)
	}
	if in.APIURL != nil {
		u := strings.TrimSuffix(*in.APIURL, "/")
		set("api_url", &u, &rp.APIURL, cmp.Or(u, "(from the clone URL)"))
	}
	if err := checkRepo(rp.CloneURL, rp.WebhookSecret, rp.Forge, rp.APIURL); err != nil {
		return err
	}
	warning := ""
	if _, changed := detail["clone_url"]; changed {
		_, warning = probeRepo(r.Context(), rp.CloneURL)
	}
	if len(detail) > 0 {
		if err := h.Store.UpdateRepo(r.Context(), rp); err != nil {
			return err
		}
		if err := h.audit(r, "repo.update", "repo:"+rp.Name, detail); err != nil {
			return err
		}
	}
	h.warnUnreadable(r, rp.Name, warning)
	return WriteJSON(w, http.StatusOK, RepoAnswer{Repo: RepoOf(rp), Warning: warning})
}

// checkRepo refuses the settings of a repository that could not work.
func checkRepo(cloneURL, webhookSecret, forge, apiURL string) error {
	switch {
	case cloneURL == "":
		return badRequestf("clone_url is required")
	case webhookSecret == "":
		return badRequestf("webhook_secret is required: unsigned webhooks are never accepted")
	case !slices.Contains(Forges, forge):
		return badRequestf("forge %q: want one of %s", forge, strings.Join(Forges, ", "))
	}
	return checkAPIURL(apiURL)
}

// probeRepo asks the forge, as builds will, whether the URL and its
// credentials work, and which branch is its default; warning says why
// not, when they do not.
func probeRepo(ctx context.Context, cloneURL string) (head, warning string) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	head, err := git.DefaultBranch(ctx, cloneURL)
	if err != nil {
		return "", fmt.Sprintf("the server cannot read the repository: %v; its builds fail until it can", err)
	}
	return head, ""
}

func (h *Handler) warnUnreadable(r *http.Request, repo, warning string) {
	if warning != "" && h.Log != nil {
		h.Log.LogAttrs(r.Context(), slog.LevelWarn, "repository not readable", slog.String("repo", repo), slog.String("reason", warning))
	}
}

func (h *Handler) deleteRepo(w http.ResponseWriter, r *http.Request) error {
	if err := h.Store.DeleteRepo(r.Context(), r.PathValue("repo")); err != nil {
		return err
	}
	if err := h.audit(r, "repo.rm", "repo:"+r.PathValue("repo"), nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) trigger(w http.ResponseWriter, r *http.Request) error {
	var in Trigger
	if err := readJSON(r, &in); err != nil {
		return err
	}
	b, err := h.Trigger(r.Context(), identityOf(r.Context()).User, in)
	if err != nil {
		return err
	}
	if err := h.audit(r, "build.trigger", fmt.Sprintf("build:%d", b.ID), map[string]string{
		"repo": b.Repo, "number": strconv.FormatInt(b.Number, 10), "branch": b.Branch, "commit": b.Commit}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, BuildOf(b))
}

// Trigger starts a manual build of in.Branch (the repo's default branch
// when empty) at in.Commit (the branch's head when empty) for author. The
// caller has checked that author may.
func (h *Handler) Trigger(ctx context.Context, author string, in Trigger) (*store.Build, error) {
	if in.Repo == "" {
		return nil, badRequestf("repo is required")
	}
	if c := in.Commit; c != "" && (len(c) != 40 && len(c) != 64 || strings.Trim(strings.ToLower(c), "0123456789abcdef") != "") {
		return nil, badRequestf("commit %q: want a full hash (40 or 64 hex digits)", c)
	}
	repo, err := h.Store.Repo(ctx, in.Repo)
	if err != nil {
		return nil, err
	}
	if in.Branch == "" {
		in.Branch = repo.DefaultBranch
	}
	m := h.Mirrors.Get(repo.Name, repo.CloneURL)
	head, err := m.Resolve(ctx, "refs/heads/"+in.Branch)
	if err != nil {
		return nil, badRequestf("branch %q of %s: %v", in.Branch, repo.Name, err)
	}
	if in.Commit == "" {
		in.Commit = head
	} else if in.Commit != head {
		// A build says it is of the branch: its commit must be on it, or
		// any commit (a fork's too) could pass for the branch's and make
		// its releases.
		if err := m.Fetch(ctx, in.Commit); err != nil {
			return nil, badRequestf("commit %s of %s: %v", in.Commit, repo.Name, err)
		}
		on, err := m.IsAncestor(ctx, in.Commit, head)
		if err != nil {
			return nil, err
		}
		if !on {
			return nil, badRequestf("commit %s is not on branch %s of %s", in.Commit, in.Branch, repo.Name)
		}
	}
	b, _, err := h.Builds.Create(ctx, repo, build.Trigger{
		Trigger: plan.Trigger{Event: plan.EventManual, Branch: in.Branch, Commit: in.Commit, Repo: repo.Name},
		Author:  author,
	})
	return b, err
}

func (h *Handler) listBuilds(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.BuildFilter{Repo: q.Get("repo"), Branch: q.Get("branch"), Status: q.Get("status")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequestf("limit %q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	builds, err := h.Store.Builds(r.Context(), f)
	if err != nil {
		return err
	}
	return writeList(w, visible(r.Context(), builds, func(b *store.Build) string { return b.Repo }), BuildOf)
}

func buildID(r *http.Request) (int64, error) { return pathID(r, "build") }

func (h *Handler) getBuild(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	b, err := h.Store.Build(r.Context(), id)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, BuildOf(b))
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	b, err := h.Builds.Cancel(r.Context(), id, "cancelled by "+identityOf(r.Context()).User)
	if err != nil {
		return err
	}
	if err := h.audit(r, "build.cancel", fmt.Sprintf("build:%d", id), map[string]string{
		"repo": b.Repo, "number": strconv.FormatInt(b.Number, 10), "status": b.Status}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, BuildOf(b))
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	failed := r.URL.Query().Get("failed")
	failedOnly := failed == "1" || failed == "true"
	b, err := h.Builds.Retry(r.Context(), id, failedOnly)
	if err != nil {
		return err
	}
	if err := h.audit(r, "build.retry", fmt.Sprintf("build:%d", id), map[string]string{
		"repo": b.Repo, "new_build": strconv.FormatInt(b.ID, 10), "failed_only": strconv.FormatBool(failedOnly)}); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, BuildOf(b))
}

// logs returns a build's log lines as JSON, or with ?follow=1 streams them
// as Server-Sent Events until the build has finished and every line is out.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	b, err := h.Store.Build(r.Context(), id)
	if err != nil {
		return err
	}
	jobName := r.URL.Query().Get("job")
	var jobs []*store.Job
	for _, j := range b.Jobs {
		if jobName == "" || j.Name == jobName {
			jobs = append(jobs, j)
		}
	}
	if jobName != "" && len(jobs) == 0 {
		return fmt.Errorf("build %d has no job %q: %w", id, jobName, store.ErrNotFound)
	}
	follow := r.URL.Query().Get("follow")
	if follow != "1" && follow != "true" {
		return h.writeLogs(w, r, jobs)
	}
	return h.followLogs(w, r, id, jobs)
}

// writeLogs streams the jobs' log lines as one JSON array, a page of
// chunks at a time, so a log of gigabytes costs the server a page of memory.
func (h *Handler) writeLogs(w http.ResponseWriter, r *http.Request, jobs []*store.Job) error {
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("[")
	first := true
	for _, j := range jobs {
		var after int64
		for {
			chunks, err := h.Store.Logs(r.Context(), j.ID, after, 64)
			if err != nil {
				if first {
					return err // nothing sent yet: a proper error answer
				}
				return nil
			}
			for _, c := range chunks {
				for _, line := range strings.SplitAfter(string(c.Data), "\n") {
					if line == "" {
						continue
					}
					if !first {
						bw.WriteString(",\n")
					}
					first = false
					b, _ := json.Marshal(LogLine{Job: j.Name, Step: c.Step, Seq: c.Seq, Line: strings.TrimSuffix(line, "\n")})
					bw.Write(b)
				}
				after = c.Seq
			}
			if len(chunks) < 64 {
				break
			}
		}
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

func (h *Handler) readLogs(ctx context.Context, j *store.Job, after int64) ([]LogLine, int64, error) {
	var out []LogLine
	for {
		chunks, err := h.Store.Logs(ctx, j.ID, after, 500)
		if err != nil {
			return nil, after, err
		}
		for _, c := range chunks {
			for _, line := range strings.SplitAfter(string(c.Data), "\n") {
				if line != "" {
					out = append(out, LogLine{Job: j.Name, Step: c.Step, Seq: c.Seq, Line: strings.TrimSuffix(line, "\n")})
				}
			}
			after = c.Seq
		}
		if len(chunks) < 500 {
			return out, after, nil
		}
	}
}

// SSEHeaders starts a Server-Sent Events answer, for the API's streams
// and the web UI's.
func SSEHeaders(w http.ResponseWriter) (http.Flusher, error) {
	fl, ok := w.(http.Flusher)
	if !ok {
		return nil, errors.New("streaming unsupported")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	return fl, nil
}

func (h *Handler) followLogs(w http.ResponseWriter, r *http.Request, buildID int64, jobs []*store.Job) error {
	msgs, stop := h.Broker.Subscribe()
	defer stop()
	fl, err := SSEHeaders(w)
	if err != nil {
		return err
	}
	after := map[int64]int64{}
	ctx := r.Context()
	checked := time.Now()
	for {
		if time.Since(checked) >= streamCheck {
			if !h.stillValid(ctx) {
				fmt.Fprintf(w, "event: error\ndata: %q\n\n", streamEnded)
				fl.Flush()
				return nil
			}
			checked = time.Now()
		}
		// Whether the build had finished before this read: then this read
		// is the last one needed.
		b, err := h.Store.Build(ctx, buildID)
		if err != nil {
			return nil
		}
		finished := store.Finished(b.Status)
		for _, j := range jobs {
			lines, last, err := h.readLogs(ctx, j, after[j.ID])
			if err != nil {
				return nil
			}
			after[j.ID] = last
			for _, l := range lines {
				data, _ := json.Marshal(l)
				fmt.Fprintf(w, "event: log\ndata: %s\n\n", data)
			}
		}
		if finished {
			data, _ := json.Marshal(BuildOf(b))
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", data)
			fl.Flush()
			return nil
		}
		fl.Flush()
		wait := time.NewTimer(2 * time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				wait.Stop()
				return nil
			case m := <-msgs:
				if m.BuildID == buildID {
					break wait
				}
			case <-wait.C:
				break wait
			}
		}
		wait.Stop()
	}
}

// events streams build state changes as Server-Sent Events until the
// client goes away.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	msgs, stop := h.Broker.Subscribe()
	defer stop()
	fl, err := SSEHeaders(w)
	if err != nil {
		return err
	}
	ctx := r.Context()
	id := identityOf(ctx)
	keepalive := time.NewTicker(streamCheck)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keepalive.C:
			if !h.stillValid(ctx) {
				fmt.Fprintf(w, "event: error\ndata: %q\n\n", streamEnded)
				fl.Flush()
				return nil
			}
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case m := <-msgs:
			if m.Kind != "build" {
				continue
			}
			snap := m.Snapshot
			if snap == nil {
				b, err := h.Store.Build(ctx, m.BuildID)
				if err != nil {
					continue
				}
				snap = BuildOf(b)
			}
			if b, ok := snap.(Build); !ok || !id.can(store.RoleViewer, b.Repo) {
				continue
			}
			data, _ := json.Marshal(snap)
			fmt.Fprintf(w, "event: build\ndata: %s\n\n", data)
			fl.Flush()
		}
	}
}
