package secret_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/secret"
)

// TestValuesIn: a deployment's job gets the secrets scoped to its
// environment, else the unscoped ones; never another environment's.
func TestValuesIn(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	kr, _ := secret.NewKeyring(key(1))
	v := secret.NewVault(st, kr)
	ctx := t.Context()
	mustSet(t, v, "acme/web", "DEPLOY_KEY", "production", "prod-key")
	mustSet(t, v, "acme/web", "DEPLOY_KEY", "staging", "staging-key")
	mustSet(t, v, "acme/web", "DEPLOY_KEY", "", "shared-key")
	mustSet(t, v, "acme/web", "PROD_ONLY", "production", "p")
	mustSet(t, v, "acme/web", "NPM_TOKEN", "", "npm")

	for _, c := range []struct {
		env   string
		names []string
		want  map[string]string
	}{
		{"production", []string{"DEPLOY_KEY", "PROD_ONLY", "NPM_TOKEN"}, map[string]string{"DEPLOY_KEY": "prod-key", "PROD_ONLY": "p", "NPM_TOKEN": "npm"}},
		{"staging", []string{"DEPLOY_KEY", "NPM_TOKEN"}, map[string]string{"DEPLOY_KEY": "staging-key", "NPM_TOKEN": "npm"}},
		{"qa", []string{"DEPLOY_KEY"}, map[string]string{"DEPLOY_KEY": "shared-key"}},
		{"", []string{"DEPLOY_KEY"}, map[string]string{"DEPLOY_KEY": "shared-key"}},
	} {
		got, err := v.ValuesIn(ctx, "acme/web", c.env, c.names)
		if err != nil {
			t.Fatalf("ValuesIn(%q, %v) = %v", c.env, c.names, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ValuesIn(%q, %v) (-want +got):\n%s", c.env, c.names, diff)
		}
	}
	_, err := v.ValuesIn(ctx, "acme/web", "staging", []string{"PROD_ONLY"})
	want := "secret PROD_ONLY is not set for acme/web (environment staging) (PROD_ONLY is set only for environment production, and a deployment to staging receives those scoped to it and unscoped ones)"
	if err == nil || err.Error() != want {
		t.Errorf("ValuesIn(staging, PROD_ONLY) = %v, want %q", err, want)
	}
}
