package api

// Deliveries, hooks and status badges: the API face of package notify.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/gantry-ci/gantry/internal/notify"
	"github.com/gantry-ci/gantry/internal/store"
)

// Delivery is a delivery as the API shows it: what was (or will be) sent
// where, and how it went. Payloads and secrets are not shown.
type Delivery struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"` // status or hook
	Repo    string `json:"repo,omitempty"`
	BuildID int64  `json:"build_id,omitempty"`
	HookID  int64  `json:"hook_id,omitempty"`
	Forge   string `json:"forge,omitempty"`
	// Event is the status context (gantry/test) or the event name.
	Event string `json:"event"`
	URL   string `json:"url,omitempty"`
	// State is pending, sending, delivered, failed, superseded or skipped.
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// NextAttemptAt is set while the delivery is pending.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastStatus    int        `json:"last_status,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	// FinishedAt is when it was delivered, or given up, or skipped.
	FinishedAt *time.Time `json:"finished_at"`
}

// DeliveryOf converts a stored delivery.
func DeliveryOf(d *store.Delivery) Delivery {
	out := Delivery{ID: d.ID, Kind: d.Kind, Repo: d.Repo, BuildID: d.BuildID, HookID: d.HookID, Forge: d.Forge, Event: d.Event,
		URL: d.URL, State: d.State, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError,
		CreatedAt: d.CreatedAt.UTC(), FinishedAt: timePtr(d.FinishedAt)}
	if d.State == store.DeliveryPending {
		out.NextAttemptAt = timePtr(d.NextAttemptAt)
	}
	return out
}

// DeliveryStates are the states a delivery may be listed by.
var DeliveryStates = []string{store.DeliveryPending, store.DeliverySending, store.DeliveryDelivered,
	store.DeliveryFailed, store.DeliverySuperseded, store.DeliverySkipped}

// Hook is a hook as the API shows it. The secret is shown once, in the
// answer to its creation; the URL of a chat hook, which is its secret
// too, is never shown whole.
type Hook struct {
	ID     int64    `json:"id"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	Repo   string   `json:"repo,omitempty"`
	Branch string   `json:"branch,omitempty"`
	// Environment limits the hook to deployments to matching environments.
	Environment string    `json:"environment,omitempty"`
	Format      string    `json:"format"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret,omitempty"`
}

// HookOf converts a stored hook, without its secret.
func HookOf(h *store.Hook) Hook {
	return Hook{ID: h.ID, URL: notify.Redact(h.URL, h.Format), Events: h.Events, Repo: h.Repo, Branch: h.Branch,
		Environment: h.Environment, Format: h.Format, CreatedAt: h.CreatedAt.UTC()}
}

// NewHook is the body of POST /api/v1/hooks.
type NewHook struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Repo limits the hook to one repository; Branch to branches that
	// match a glob.
	Repo   string `json:"repo,omitempty"`
	Branch string `json:"branch,omitempty"`
	// Environment limits it to deployments (and their builds) to
	// environments that match a glob.
	Environment string `json:"environment,omitempty"`
	// Format is json (signed events, the default) or slack (chat
	// messages for Slack, Mattermost or Zulip's Slack endpoint).
	Format string `json:"format,omitempty"`
	// Secret keys the signature; empty: the server makes one.
	Secret string `json:"secret,omitempty"`
}

// minSecret is the shortest hook secret accepted.
const minSecret = 16

func (h *Handler) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.DeliveryFilter{Repo: q.Get("repo"), State: q.Get("state"), Kind: q.Get("kind")}
	if f.State != "" && !slices.Contains(DeliveryStates, f.State) {
		return badRequestf("state %q: want one of %s", f.State, strings.Join(DeliveryStates, ", "))
	}
	if f.Kind != "" && f.Kind != store.DeliveryStatus && f.Kind != store.DeliveryHook && f.Kind != store.DeliveryDeployment {
		return badRequestf("kind %q: want status, hook or deployment", f.Kind)
	}
	if b := q.Get("build"); b != "" {
		id, err := strconv.ParseInt(b, 10, 64)
		if err != nil || id < 1 {
			return badRequestf("build %q: want a positive build ID", b)
		}
		f.BuildID = id
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequestf("limit %q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	if f.Repo != "" {
		if _, err := h.Store.Repo(r.Context(), f.Repo); err != nil {
			return err
		}
	}
	ds, err := h.Store.Deliveries(r.Context(), f)
	if err != nil {
		return err
	}
	out := []Delivery{}
	for _, d := range visible(r.Context(), ds, func(d *store.Delivery) string { return d.Repo }) {
		out = append(out, DeliveryOf(d))
	}
	return WriteJSON(w, http.StatusOK, out)
}

// checkHookURL accepts an absolute http(s) URL with a host.
func checkHookURL(raw string) error {
	if raw == "" {
		return badRequestf("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return badRequestf("url %q: want an http:// or https:// URL with a host", notify.Redact(raw, ""))
	}
	return nil
}

func (h *Handler) addHook(w http.ResponseWriter, r *http.Request) error {
	var in NewHook
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if err := checkHookURL(in.URL); err != nil {
		return err
	}
	events, err := notify.ParseEvents(in.Events)
	if err != nil {
		return badRequestf("%v", err)
	}
	switch in.Format {
	case "":
		in.Format = store.HookJSON
	case store.HookJSON, store.HookSlack:
	default:
		return badRequestf("format %q: want json or slack", in.Format)
	}
	if in.Branch != "" && !doublestar.ValidatePattern(in.Branch) {
		return badRequestf("branch %q is not a valid glob", in.Branch)
	}
	if in.Environment != "" && !doublestar.ValidatePattern(in.Environment) {
		return badRequestf("environment %q is not a valid glob", in.Environment)
	}
	hook := &store.Hook{URL: in.URL, Events: events, Branch: in.Branch, Environment: in.Environment, Format: in.Format, Secret: in.Secret}
	if in.Repo != "" {
		repo, err := h.Store.Repo(r.Context(), in.Repo)
		if errors.Is(err, store.ErrNotFound) {
			return badRequestf("repo %q is not registered (gantry repo list shows those that are)", in.Repo)
		}
		if err != nil {
			return err
		}
		hook.RepoID = repo.ID
	}
	if hook.Secret == "" {
		var b [24]byte
		rand.Read(b[:])
		hook.Secret = "whsec_" + hex.EncodeToString(b[:])
	} else if len(hook.Secret) < minSecret {
		return badRequestf("secret: want at least %d characters", minSecret)
	}
	if err := h.Store.CreateHook(r.Context(), hook); err != nil {
		return err
	}
	detail := map[string]string{"url": notify.Redact(hook.URL, hook.Format), "events": strings.Join(hook.Events, " "), "format": hook.Format}
	if hook.Repo != "" {
		detail["repo"] = hook.Repo
	}
	if hook.Branch != "" {
		detail["branch"] = hook.Branch
	}
	if hook.Environment != "" {
		detail["environment"] = hook.Environment
	}
	if err := h.audit(r, "hook.add", fmt.Sprintf("hook:%d", hook.ID), detail); err != nil {
		return err
	}
	out := HookOf(hook)
	out.Secret = hook.Secret
	return WriteJSON(w, http.StatusCreated, out)
}

func (h *Handler) listHooks(w http.ResponseWriter, r *http.Request) error {
	hooks, err := h.Store.Hooks(r.Context())
	if err != nil {
		return err
	}
	out := []Hook{}
	for _, hk := range hooks {
		out = append(out, HookOf(hk))
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) deleteHook(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "hook")
	if err != nil {
		return err
	}
	if err := h.Store.DeleteHook(r.Context(), id); err != nil {
		return err
	}
	if err := h.audit(r, "hook.rm", fmt.Sprintf("hook:%d", id), nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// badge serves /badge/OWNER/NAME.svg?branch=B without a token: the state
// of the latest build of the branch (the repo's default branch unless
// given) that passed, failed or errored. An unknown repo gets an
// "unknown" badge with 404, so that a README shows something either way.
func (h *Handler) badge(w http.ResponseWriter, r *http.Request) error {
	status, code := "", http.StatusOK
	name, ok := strings.CutSuffix(r.PathValue("repo"), ".svg")
	repo, err := h.Store.Repo(r.Context(), name)
	switch {
	case !ok || errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case err != nil:
		return err
	default:
		branch := r.URL.Query().Get("branch")
		if branch == "" {
			branch = repo.DefaultBranch
		}
		b, err := h.Store.LatestBuild(r.Context(), repo.Name, branch, 0, notify.BadgeStatuses...)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if b != nil {
			status = b.Status
		}
	}
	svg := notify.Badge(status)
	sum := sha256.Sum256(svg)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("Content-Type", "image/svg+xml; charset=utf-8")
	// Shown on pages that proxy images (GitHub's camo): look again every
	// time, and cheaply, with the ETag.
	w.Header().Set("Cache-Control", "no-cache, max-age=0")
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusOK && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(code)
	_, err = w.Write(svg)
	return err
}

// checkAPIURL accepts an empty API URL, or an absolute http(s) one.
func checkAPIURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return badRequestf("api_url %q: want the forge API's http:// or https:// base URL, such as https://git.example.com/api/v1", raw)
	}
	return nil
}

// Deliveries lists deliveries, newest first.
func (c *Client) Deliveries(ctx context.Context, repo, state, kind string, build int64, limit int) ([]Delivery, error) {
	q := url.Values{}
	for k, v := range map[string]string{"repo": repo, "state": state, "kind": kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if build > 0 {
		q.Set("build", fmt.Sprint(build))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out []Delivery
	return out, c.do(ctx, "GET", "/api/v1/deliveries?"+q.Encode(), nil, &out)
}

// AddHook subscribes a URL to events; the answer holds the secret.
func (c *Client) AddHook(ctx context.Context, h NewHook) (*Hook, error) {
	var out Hook
	return &out, c.do(ctx, "POST", "/api/v1/hooks", h, &out)
}

// Hooks lists hooks, oldest first.
func (c *Client) Hooks(ctx context.Context) ([]Hook, error) {
	var out []Hook
	return out, c.do(ctx, "GET", "/api/v1/hooks", nil, &out)
}

// DeleteHook removes a hook.
func (c *Client) DeleteHook(ctx context.Context, id int64) error {
	return c.do(ctx, "DELETE", fmt.Sprintf("/api/v1/hooks/%d", id), nil, nil)
}
