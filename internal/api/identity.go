package api

import (
	"context"
	"fmt"

	"github.com/gantry-ci/gantry/internal/store"
)

// identityKey is the request context's key of who makes the request.
type identityKey struct{}

// withIdentity returns ctx carrying tok as the identity that makes the
// request; adapt puts it there once the token is authenticated.
func withIdentity(ctx context.Context, tok *store.Token) context.Context {
	return context.WithValue(ctx, identityKey{}, tok)
}

// identityFrom returns the identity withIdentity put in ctx, or nil for a
// request that was not authenticated.
func identityFrom(ctx context.Context) *store.Token {
	tok, _ := ctx.Value(identityKey{}).(*store.Token)
	return tok
}

// actor names an identity in the audit log, and is the one place that
// does: "token:NAME#ID". The ID tells apart tokens of one name.
func actor(tok *store.Token) string {
	if tok == nil {
		return "anonymous"
	}
	return fmt.Sprintf("token:%s#%d", tok.Name, tok.ID)
}
