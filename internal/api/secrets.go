package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ci/gantry/internal/secret"
	"github.com/gantry-ci/gantry/internal/store"
)

// The secret routes, mounted by Register. A repo name may have several
// parts (GitLab subgroups), so it is the pattern's last wildcard and the
// secret's name travels in the body or the query. No answer ever holds a
// value: the types below have no field for one.
//
//	GET    /api/v1/secrets/{repo...}                          list, without values
//	PUT    /api/v1/secrets/{repo...}                          set {name, environment, value}
//	DELETE /api/v1/secrets/{repo...}?name=N&environment=E     remove
//	POST   /api/v1/secret-keys/rotate                         re-encrypt everything under a new key (admin)

// Secret is a secret as the API shows it: never its value.
type Secret struct {
	Repo string `json:"repo"`
	Name string `json:"name"`
	// Environment is the deployment environment the secret is scoped
	// to; empty for unscoped, the only ones build jobs receive.
	Environment string `json:"environment"`
	// KeyID names the key the value is encrypted under.
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SetSecret is the body of PUT /api/v1/secrets/{repo...}.
type SetSecret struct {
	Name        string `json:"name"`
	Environment string `json:"environment,omitempty"`
	Value       string `json:"value"`
}

// KeyRotation is the answer of POST /api/v1/secret-keys/rotate.
type KeyRotation struct {
	// KeyID is the key every secret is now encrypted under, but those
	// that Failed.
	KeyID       string `json:"key_id"`
	Reencrypted int    `json:"reencrypted"`
	// Retired are keys no secret needs any more: dropped from the key
	// file, or to be removed from GANTRY_SECRET_KEY.
	Retired []string `json:"retired"`
	// Kept are older keys a secret that Failed still needs.
	Kept []string `json:"kept"`
	// Failed names each secret that could not be re-encrypted, and why.
	Failed []string `json:"failed"`
	// KeyFile is the server's key file, or empty when its keys come
	// from GANTRY_SECRET_KEY.
	KeyFile string `json:"key_file,omitempty"`
}

// SecretOf converts a stored secret, dropping its ciphertext.
func SecretOf(s *store.Secret) Secret {
	return Secret{Repo: s.Repo, Name: s.Name, Environment: s.Environment, KeyID: s.KeyID,
		CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC()}
}

var errNoVault = errors.New("this server keeps no secrets (no secret key configured)")

// secretRepo is the repo a secret route names, checked.
func (h *Handler) secretRepo(r *http.Request) (string, error) {
	if h.Secrets == nil {
		return "", errNoVault
	}
	repo := r.PathValue("repo")
	if !validRepoName(repo) {
		return "", badRequestf("repo name %q: want OWNER/NAME", repo)
	}
	return repo, nil
}

func (h *Handler) listSecrets(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.secretRepo(r)
	if err != nil {
		return err
	}
	list, err := h.Secrets.List(r.Context(), repo)
	if err != nil {
		return err
	}
	return writeList(w, list, SecretOf)
}

func (h *Handler) setSecret(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.secretRepo(r)
	if err != nil {
		return err
	}
	var in SetSecret
	if err := readJSON(r, &in); err != nil {
		return err
	}
	for _, err := range []error{secret.CheckName(in.Name), secret.CheckEnvironment(in.Environment), secret.CheckValue(in.Value)} {
		if err != nil {
			return badRequestf("%v", err)
		}
	}
	s, created, err := h.Secrets.Set(r.Context(), repo, in.Name, in.Environment, in.Value)
	if err != nil {
		return err
	}
	action := "secret.update"
	if created {
		action = "secret.add"
	}
	if err := h.audit(r, action, "repo:"+repo, map[string]string{"name": in.Name, "environment": in.Environment}); err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return WriteJSON(w, status, SecretOf(s))
}

func (h *Handler) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	repo, err := h.secretRepo(r)
	if err != nil {
		return err
	}
	name, env := r.URL.Query().Get("name"), r.URL.Query().Get("environment")
	if err := secret.CheckName(name); err != nil {
		return badRequestf("%v", err)
	}
	if err := secret.CheckEnvironment(env); err != nil {
		return badRequestf("%v", err)
	}
	if err := h.Secrets.Delete(r.Context(), repo, name, env); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s has no secret %s%s: %w", repo, name, inEnvironment(env), store.ErrNotFound)
		}
		return err
	}
	if err := h.audit(r, "secret.rm", "repo:"+repo, map[string]string{"name": name, "environment": env}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// inEnvironment is " in environment E", or "" for unscoped.
func inEnvironment(env string) string {
	if env == "" {
		return " (unscoped)"
	}
	return " in environment " + env
}

func (h *Handler) rotateSecretKey(w http.ResponseWriter, r *http.Request) error {
	if h.Secrets == nil {
		return errNoVault
	}
	rot, err := h.Secrets.Rotate(r.Context())
	if errors.Is(err, secret.ErrSingleEnvKey) {
		return badRequestf("%v", err)
	}
	if err != nil {
		return err
	}
	if err := h.audit(r, "secret.rotate-key", "key:"+rot.KeyID, map[string]string{"reencrypted": strconv.Itoa(rot.Reencrypted),
		"retired": strings.Join(rot.Retired, " "), "failed": strconv.Itoa(len(rot.Failed))}); err != nil {
		return err
	}
	out := KeyRotation{KeyID: rot.KeyID, Reencrypted: rot.Reencrypted, Retired: rot.Retired, Kept: rot.Kept,
		Failed: rot.Failed, KeyFile: h.Secrets.Keys().Path()}
	for _, l := range []*[]string{&out.Retired, &out.Kept, &out.Failed} {
		if *l == nil {
			*l = []string{}
		}
	}
	return WriteJSON(w, http.StatusOK, out)
}
