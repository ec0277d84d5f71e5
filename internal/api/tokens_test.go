package api_test

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/store"
)

// Every kind of bad token gets the same 401: nothing says which part was
// wrong.
func TestBadTokensAreRefusedAlike(t *testing.T) {
	origin, _ := gitOrigin(t)
	e := newAccessEnv(t, origin)
	ctx := t.Context()
	u, err := e.st.User(ctx, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, tok *store.Token) {
		tok.Name, tok.Hash = name, api.HashToken("secret-"+name)
		if err := e.st.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		e.tokens[name] = "secret-" + name
	}
	mk("expired", &store.Token{UserID: u.ID, ExpiresAt: time.Now().Add(-time.Second)})
	mk("revoked", &store.Token{UserID: u.ID})
	mk("agent", &store.Token{Kind: store.TokenAgent})
	mk("valid", &store.Token{UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)})
	var revoked *store.Token
	toks, _ := e.st.TokensOf(ctx, u.ID)
	for _, tk := range toks {
		if tk.Name == "revoked" {
			revoked = tk
		}
	}
	if _, err := e.st.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	e.tokens["unknown"] = "gantry_0000"
	e.tokens["malformed"] = "not\ta token"
	reqID := regexp.MustCompile(`"request_id": "[^"]*"`)
	var first string
	for _, who := range []string{"", "unknown", "malformed", "expired", "revoked", "agent"} {
		code, body := e.call(t, who, "GET", "/api/v1/whoami", nil)
		body = reqID.ReplaceAllString(body, "")
		if code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", who, code)
		}
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("token %q: answer %q differs from %q: it must not say what was wrong", who, body, first)
		}
	}
	if code, body := e.call(t, "valid", "GET", "/api/v1/whoami", nil); code != 200 {
		t.Errorf("a valid token that expires in an hour: %d %s", code, body)
	}
}

// An address that sends many wrong tokens is refused for a while, right
// tokens included, so guessing gets nowhere; it is told when to come back.
func TestGuessingTokensIsSlowedDown(t *testing.T) {
	origin, _ := gitOrigin(t)
	e := newAccessEnv(t, origin)
	e.tokens["guess"] = "gantry_guess"
	for i := range 20 {
		if code, _ := e.call(t, "guess", "GET", "/api/v1/repos", nil); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", e.url+"/api/v1/repos", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["root"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || wait < 1 || wait > 10 {
		t.Errorf("after 20 wrong tokens: %d Retry-After %q, want 429 and a few seconds", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The allowance comes back: one more try after the wait.
	time.Sleep(time.Duration(wait) * time.Second)
	if code, body := e.call(t, "root", "GET", "/api/v1/repos", nil); code != 200 {
		t.Errorf("after waiting: %d %s, want 200", code, body)
	}
}
