// Package web is Gantry's web UI: pages rendered by the server with
// html/template from embedded files, live updates over Server-Sent Events,
// and a little plain JavaScript that only makes the pages live (every
// form is a real form that posts and redirects, so the pages work without
// it). No front-end build step.
//
// People sign in with one of their API tokens. Who they are and what they
// may do comes from the API's own identity and role logic (api.Identity):
// a page shows what the API would let the same user read, and a button only
// when the API would let them make the call. The package keeps no state of
// its own but the sessions, which live in the store.
//
// The environments page shows what runs where, what waits and why, and
// lets those allowed approve, reject, promote and roll back, through the
// same calls as the API (api.Handler.Decide, Promote, Rollback).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/build"
	"github.com/gantry-ci/gantry/internal/logstream"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

//go:embed templates static
var files embed.FS

// Handler serves the web UI.
type Handler struct {
	// API knows who a token acts for and what they may do, and triggers
	// builds: the web UI checks nothing the API does not.
	API    *api.Handler
	Store  store.Store
	Builds *build.Service
	Queue  *queue.Dispatcher
	Broker *logstream.Broker
	Log    *slog.Logger
	// SessionLife is how long a sign-in lasts; 0 means DefaultSessionLife.
	SessionLife time.Duration

	pages  map[string]*template.Template
	static map[string]string // file name -> its URL with a content hash
	reqID  atomic.Int64
}

// DefaultSessionLife is how long a sign-in lasts unless configured
// otherwise. A session ends sooner when its token is revoked or expires.
const DefaultSessionLife = 7 * 24 * time.Hour

// navItem is an entry of the navigation bar.
type navItem struct {
	Name, Href string
}

// nav is the navigation bar; adminNav is added to it for admins.
var (
	nav = []navItem{
		{"Dashboard", "/"},
		{"Environments", "/environments"},
	}
	adminNav = []navItem{{"Audit", "/audit"}}
)

// Register parses the templates and mounts the UI on mux, at / and below,
// next to /api/v1, /hooks, /healthz and /metrics.
func (h *Handler) Register(mux *http.ServeMux) {
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if h.SessionLife <= 0 {
		h.SessionLife = DefaultSessionLife
	}
	h.parse()
	static, _ := fs.Sub(files, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// URLs carry a hash of the content: they may be kept for ever.
		if r.URL.RawQuery != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		fileServer.ServeHTTP(w, r)
	})))
	mux.Handle("GET /signin", secure(h.handle(h.signinPage)))
	mux.Handle("POST /signin", secure(h.handle(h.signin)))
	mux.Handle("POST /signout", h.page(h.signout))
	mux.Handle("GET /{$}", h.page(h.dashboard))
	mux.Handle("GET /repos/{repo...}", h.page(h.repo))
	mux.Handle("POST /trigger", h.page(h.trigger))
	mux.Handle("GET /builds/{id}", h.page(h.buildPage))
	mux.Handle("GET /builds/{id}/log", h.page(h.logFragment))
	mux.Handle("GET /builds/{id}/raw", h.page(h.raw))
	mux.Handle("GET /builds/{id}/events", h.page(h.buildEvents))
	mux.Handle("POST /builds/{id}/cancel", h.page(h.cancel))
	mux.Handle("POST /builds/{id}/retry", h.page(h.retry))
	mux.Handle("GET /events", h.page(h.events))
	mux.Handle("GET /audit", h.page(h.audit))
	mux.Handle("GET /environments", h.page(h.environmentsIndex))
	mux.Handle("GET /environments/{repo...}", h.page(h.environments))
	mux.Handle("POST /deployments/{id}/approve", h.page(h.decide(store.VerdictApprove)))
	mux.Handle("POST /deployments/{id}/reject", h.page(h.decide(store.VerdictReject)))
	mux.Handle("POST /deployments/{id}/withdraw", h.page(h.withdraw))
	mux.Handle("POST /promote", h.page(h.promote))
	mux.Handle("POST /rollback", h.page(h.rollback))
}

// parse reads every page's template with the layout, once.
func (h *Handler) parse() {
	h.static = map[string]string{}
	for _, name := range []string{"style.css", "app.js"} {
		data, err := files.ReadFile("static/" + name)
		if err != nil {
			panic(err) // embedded: cannot happen in a built binary
		}
		sum := sha256.Sum256(data)
		h.static[name] = "/static/" + name + "?v=" + hex.EncodeToString(sum[:6])
	}
	funcs := template.FuncMap{
		"static": func(name string) string { return h.static[name] },
		"icon":   icon,
		"dur":    duration,
		"ago":    ago,
		"short":  short,
		"exit":   exitCode,
		"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"envs":   envsPath,
		"by":     requestedBy,
		"stepname": func(j *store.Job, i int) string {
			return fmt.Sprintf("%d: %s", i+1, stepName(j, i))
		},
	}
	h.pages = map[string]*template.Template{}
	for _, page := range []string{"signin", "dashboard", "repo", "build", "audit", "error", "environments", "envindex"} {
		h.pages[page] = template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+page+".html"))
	}
}

// base is what every page's layout needs.
type base struct {
	Title string
	User  string
	Admin bool
	CSRF  string
	Nav   []navItem
	// Active is the Href of the navigation entry this page belongs to.
	Active string
	// Live is the Server-Sent Events URL that makes this page live.
	Live string
	// Self is the URL a live page re-reads itself from, when it is not
	// the page's own (a form's answer).
	Self string
}

// render executes a page's template (or one of its named fragments) into
// a buffer, then writes it: a template error becomes a proper 500, not
// half a page.
func (h *Handler) render(w http.ResponseWriter, status int, page, name string, data any) error {
	var buf bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("render %s/%s: %w", page, name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// fragment executes a named template into a string.
func (h *Handler) fragment(page, name string, data any) (string, error) {
	var buf strings.Builder
	if err := h.pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		return "", fmt.Errorf("render %s/%s: %w", page, name, err)
	}
	return buf.String(), nil
}

// secure sets the headers every answer of the UI carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// Scripts only from this server; styles inline too, for the
		// colours of logs in 256 and true colour.
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// handle turns a handler that returns an error into an http.Handler: the
// one place the UI turns errors into statuses, through api.StatusOf.
func (h *Handler) handle(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			h.fail(w, r, nil, err)
		}
	})
}

// fail answers with an error page (plain text to scripts' requests).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, msg := statusOf(err)
	id := fmt.Sprintf("%d-%d", time.Now().Unix(), h.reqID.Add(1))
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	h.Log.LogAttrs(r.Context(), level, "web request failed", slog.String("request_id", id), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", status), slog.Any("err", err))
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "3")
	}
	if r.Header.Get("Accept") == "text/event-stream" || r.URL.Query().Get("fragment") == "1" {
		http.Error(w, msg, status)
		return
	}
	data := struct {
		base
		Status    int
		Text      string
		Message   string
		RequestID string
	}{Status: status, Text: http.StatusText(status), Message: msg, RequestID: id}
	data.Title = http.StatusText(status)
	data.Nav = nav
	if s != nil {
		data.User, data.Admin, data.CSRF = s.id.User(), s.id.Admin(), s.csrf
	}
	if err := h.render(w, status, "error", "layout", data); err != nil {
		http.Error(w, msg, status)
	}
}

// errForbidden is a request the UI refuses on its own: a form posted
// without its token.
type errForbidden string

func (e errForbidden) Error() string { return string(e) }

// errBad is a request with a value the UI cannot use.
type errBad string

func (e errBad) Error() string { return string(e) }

func badf(format string, args ...any) error { return errBad(fmt.Sprintf(format, args...)) }

// statusOf maps the UI's own errors, and defers to api.StatusOf for the
// rest, so a page and an API call refuse the same thing the same way.
func statusOf(err error) (int, string) {
	var f errForbidden
	var b errBad
	switch {
	case errors.As(err, &f):
		return http.StatusForbidden, string(f)
	case errors.As(err, &b):
		return http.StatusBadRequest, string(b)
	}
	return api.StatusOf(err)
}
