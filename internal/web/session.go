package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
)

// Cookies: the session's secret, and the sign-in form's token before there
// is a session. Both HttpOnly and SameSite=Lax (a link from the forge to a
// build page keeps the session; another site's form does not carry it),
// and Secure when the request came over TLS.
const (
	sessionCookie = "gantry_session"
	signinCookie  = "gantry_signin"
	csrfField     = "csrf"
)

// session is a signed-in request: who, and the token its forms carry.
type session struct {
	id   *api.Identity
	hash []byte
	csrf string
}

func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// csrfToken is the forms' token of a session: derived from the cookie's
// secret, which only the browser and this server know, so it need not be
// stored; the hash the store keeps does not give it away.
func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("gantry web csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sameToken compares a form's token with the expected one in constant time.
func sameToken(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge.Seconds())
	}
	http.SetCookie(w, c)
}

// current returns the request's session, or nil when it has none that is
// valid: no cookie, an unknown or expired session, or a token that was
// revoked or expired since.
func (h *Handler) current(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	hash := hashSecret(c.Value)
	se, tok, err := h.Store.Session(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(se.Hash, hash) != 1 || !time.Now().Before(se.ExpiresAt) {
		return nil, nil
	}
	id, err := h.API.Resume(r.Context(), tok)
	if err != nil {
		if status, _ := api.StatusOf(err); status == http.StatusUnauthorized {
			return nil, nil
		}
		return nil, err
	}
	return &session{id: id, hash: hash, csrf: csrfToken(c.Value)}, nil
}

// page wraps a handler of a signed-in user. Without a valid session a
// GET goes to the sign-in page (and back after it) and anything else is
// refused. Every POST must carry the session's form token.
func (h *Handler) page(fn func(w http.ResponseWriter, r *http.Request, s *session) error) http.Handler {
	return secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := h.current(r)
		if err != nil {
			h.fail(w, r, nil, err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" && r.URL.Query().Get("fragment") != "1" {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.fail(w, r, nil, errForbidden("not signed in, or the session ended: sign in again"))
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil {
				h.fail(w, r, s, badf("cannot read the form: %v", err))
				return
			}
			if !sameToken(r.PostForm.Get(csrfField), s.csrf) {
				h.fail(w, r, s, errForbidden("the form's token is missing or wrong: reload the page and try again"))
				return
			}
		}
		if err := fn(w, r, s); err != nil {
			h.fail(w, r, s, err)
		}
	}))
}

// next is where to go after signing in: a path on this server, else the
// dashboard. A control character anywhere sends it to the dashboard:
// browsers drop tabs and line breaks from a URL, so "/<TAB>/host" would
// be "//host", another server.
func next(v string) string {
	if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") ||
		strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "/"
	}
	return v
}

type signinData struct {
	base
	Next    string
	Message string
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) error {
	if s, err := h.current(r); err == nil && s != nil {
		http.Redirect(w, r, next(r.URL.Query().Get("next")), http.StatusSeeOther)
		return nil
	}
	return h.signinForm(w, r, http.StatusOK, "")
}

// signinForm shows the sign-in form with a fresh form token, which the
// POST must send back both as a field and in its cookie.
func (h *Handler) signinForm(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	tok := newSecret()
	h.setCookie(w, r, signinCookie, tok, time.Hour)
	d := signinData{Next: next(r.FormValue("next")), Message: msg}
	d.Title, d.CSRF = "Sign in", tok
	return h.render(w, status, "signin", "layout", d)
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return badf("cannot read the form: %v", err)
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || !sameToken(r.PostForm.Get(csrfField), c.Value) {
		return errForbidden("the sign-in form's token is missing or wrong: open the sign-in page and try again")
	}
	id, err := h.API.SignIn(r, strings.TrimSpace(r.PostForm.Get("token")))
	if err != nil {
		status, msg := api.StatusOf(err)
		switch status {
		case http.StatusUnauthorized:
			return h.signinForm(w, r, status, "That token is not a valid API token: it is wrong, revoked or expired, or it is an agent token.")
		case http.StatusTooManyRequests:
			return h.signinForm(w, r, status, "Too many wrong tokens from this address: "+msg)
		}
		return err
	}
	secret := newSecret()
	se := &store.Session{Hash: hashSecret(secret), TokenID: id.TokenID(), ExpiresAt: time.Now().Add(h.SessionLife)}
	if err := h.Store.CreateSession(r.Context(), se); err != nil {
		return err
	}
	// Housekeeping: sessions that ran out go now.
	if _, err := h.Store.DeleteExpiredSessions(context.WithoutCancel(r.Context()), time.Now()); err != nil {
		h.Log.LogAttrs(r.Context(), slog.LevelWarn, "delete expired sessions", slog.Any("err", err))
	}
	h.setCookie(w, r, signinCookie, "", -1)
	h.setCookie(w, r, sessionCookie, secret, h.SessionLife)
	if err := h.API.Audit(r, id, "session.signin", fmt.Sprintf("token:%d", id.TokenID()), map[string]string{"via": "web"}); err != nil {
		return err
	}
	http.Redirect(w, r, next(r.PostForm.Get("next")), http.StatusSeeOther)
	return nil
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := h.Store.DeleteSession(r.Context(), s.hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := h.API.Audit(r, s.id, "session.signout", fmt.Sprintf("token:%d", s.id.TokenID()), map[string]string{"via": "web"}); err != nil {
		return err
	}
	h.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// baseOf is the layout's data for a signed-in page.
func baseOf(s *session, title, active string) base {
	items := nav
	if s.id.Admin() {
		items = append(slices.Clip(nav), adminNav...)
	}
	return base{Title: title, User: s.id.User(), Admin: s.id.Admin(), CSRF: s.csrf, Nav: items, Active: active}
}
