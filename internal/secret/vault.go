package secret

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gantry-ci/gantry/internal/spec"
	"github.com/gantry-ci/gantry/internal/store"
)

// Store is what a Vault needs of the server's store.
type Store interface {
	SetSecret(ctx context.Context, s *store.Secret) (bool, error)
	Secrets(ctx context.Context, repo string) ([]*store.Secret, error)
	AllSecrets(ctx context.Context) ([]*store.Secret, error)
	DeleteSecret(ctx context.Context, repo, name, environment string) error
	RekeySecret(ctx context.Context, old *store.Secret, keyID string, ciphertext []byte) error
}

// Vault keeps repositories' secrets in the store, encrypted with
// AES-256-GCM under its keyring, and hands their values to the jobs that
// name them. Each value is bound to its repo, name and environment as
// GCM's additional data, so a ciphertext copied to another row fails to
// decrypt instead of handing one secret out as another.
//
// Values leave a Vault only through Values, for a job's lease. It is safe
// for concurrent use.
type Vault struct {
	store Store
	keys  *Keyring
	// sealing is held (read) by each Set from its Seal to its write, and
	// (write) by a rotation while it decides which keys no row needs, so
	// no value is written under a key as it is dropped.
	sealing sync.RWMutex
	// rotating lets one rotation run at a time.
	rotating sync.Mutex
}

// NewVault returns a Vault over st that encrypts with keys.
func NewVault(st Store, keys *Keyring) *Vault {
	return &Vault{store: st, keys: keys}
}

// Keys returns the vault's keyring.
func (v *Vault) Keys() *Keyring { return v.keys }

// MaxValue is the largest secret value: room for a private key or a JSON
// credentials file.
const MaxValue = 64 << 10

var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckName says what is wrong with a secret's name, or nil: it is the
// environment variable a job receives it as, so it must be one, and not
// one Gantry sets itself.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("the secret name is empty")
	case strings.Contains(name, "="):
		// Quoting it would print a value typed as NAME=VALUE.
		return errors.New("the secret name contains '=': give the name alone; the value is read from stdin")
	case len(name) > 256:
		return errors.New("the secret name is longer than 256 bytes")
	case !namePattern.MatchString(name):
		return fmt.Errorf("secret name %q: want an environment variable name (letters, digits and '_', not starting with a digit)", name)
	case name == "CI" || name == "GANTRY" || strings.HasPrefix(name, "GANTRY_"):
		return fmt.Errorf("secret name %q is reserved: Gantry sets CI, GANTRY and GANTRY_* in every step itself", name)
	}
	return nil
}

// CheckEnvironment says what is wrong with the environment a secret is
// scoped to, or nil; "" (unscoped) is right.
func CheckEnvironment(env string) error {
	if env != "" && (len(env) > 128 || !spec.NamePattern.MatchString(env)) {
		return fmt.Errorf("environment %q: want a name of letters, digits, '.', '-' and '_', as in the pipeline file", env)
	}
	return nil
}

// CheckValue says what is wrong with a secret's value, or nil. Its
// messages never quote the value.
func CheckValue(value string) error {
	switch {
	case value == "":
		return errors.New("the value is empty (to remove a secret, use gantry secret rm)")
	case len(value) > MaxValue:
		return fmt.Errorf("the value is %d bytes, more than the %d a secret may hold", len(value), MaxValue)
	case !utf8.ValidString(value):
		return errors.New("the value is not valid UTF-8: base64-encode a binary value and decode it in the step")
	case strings.IndexByte(value, 0) >= 0:
		return errors.New("the value contains a NUL byte, which no environment variable can hold")
	}
	return nil
}

// additionalData binds a ciphertext to the secret it is the value of.
// Names cannot hold NUL bytes, so the encoding is unambiguous.
func additionalData(repo, name, env string) []byte {
	return []byte("gantry secret v1\x00" + repo + "\x00" + name + "\x00" + env)
}

// describe names a secret in messages.
func describe(s *store.Secret) string {
	if s.Environment == "" {
		return fmt.Sprintf("secret %s of %s", s.Name, s.Repo)
	}
	return fmt.Sprintf("secret %s of %s (environment %s)", s.Name, s.Repo, s.Environment)
}

// Set encrypts value and stores it as the secret name of repo in env (""
// for unscoped), replacing the value it had; created says whether it is
// new. The returned secret carries no ciphertext. store.ErrNotFound when
// there is no such repo.
func (v *Vault) Set(ctx context.Context, repo, name, env, value string) (*store.Secret, bool, error) {
	for _, err := range []error{CheckName(name), CheckEnvironment(env), CheckValue(value)} {
		if err != nil {
			return nil, false, err
		}
	}
	v.sealing.RLock()
	defer v.sealing.RUnlock()
	keyID, ct := v.keys.Seal(additionalData(repo, name, env), []byte(value))
	s := &store.Secret{Repo: repo, Name: name, Environment: env, KeyID: keyID, Ciphertext: ct}
	created, err := v.store.SetSecret(ctx, s)
	if err != nil {
		return nil, false, err
	}
	s.Ciphertext = nil
	return s, created, nil
}

// List returns the secrets of repo, by name then environment, without
// their ciphertexts. store.ErrNotFound when there is no such repo.
func (v *Vault) List(ctx context.Context, repo string) ([]*store.Secret, error) {
	list, err := v.store.Secrets(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		s.Ciphertext = nil
	}
	return list, nil
}

// Delete removes a secret; store.ErrNotFound when there is none.
func (v *Vault) Delete(ctx context.Context, repo, name, env string) error {
	return v.store.DeleteSecret(ctx, repo, name, env)
}

// Values returns the values of the unscoped secrets of repo that a build
// job names, decrypted, by name. It fails, naming them, when any is not set
// (a secret scoped to an environment does not count) or cannot be
// decrypted: a job never runs without a secret it asked for.
func (v *Vault) Values(ctx context.Context, repo string, names []string) (map[string]string, error) {
	return v.ValuesIn(ctx, repo, "", names)
}

// ValuesIn is Values for a job that deploys to environment env (none:
// a build job): of two secrets of one name, the one scoped to env wins
// over the unscoped one; secrets scoped to other environments never count.
func (v *Vault) ValuesIn(ctx context.Context, repo, env string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	list, err := v.store.Secrets(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("secrets of %s: %w", repo, err)
	}
	chosen := map[string]*store.Secret{}
	scoped := map[string][]string{}
	for _, s := range list {
		switch {
		case env != "" && s.Environment == env:
			chosen[s.Name] = s
		case s.Environment == "":
			if chosen[s.Name] == nil {
				chosen[s.Name] = s
			}
		default:
			scoped[s.Name] = append(scoped[s.Name], s.Environment)
		}
	}
	out := make(map[string]string, len(names))
	var missing, onlyScoped []string
	for _, name := range names {
		s := chosen[name]
		if s == nil {
			missing = append(missing, name)
			if len(scoped[name]) > 0 {
				onlyScoped = append(onlyScoped, fmt.Sprintf("%s is set only for environment %s", name, strings.Join(scoped[name], ", ")))
			}
			continue
		}
		pt, err := v.keys.Open(s.KeyID, additionalData(s.Repo, s.Name, s.Environment), s.Ciphertext)
		if err != nil {
			return nil, fmt.Errorf("%s cannot be decrypted: %w", describe(s), err)
		}
		out[name] = string(pt)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		missing = slices.Compact(missing)
		where := repo
		if env != "" {
			where = fmt.Sprintf("%s (environment %s)", repo, env)
		}
		msg := fmt.Sprintf("secret %s is not set for %s", missing[0], where)
		if len(missing) > 1 {
			msg = fmt.Sprintf("secrets %s are not set for %s", strings.Join(missing, ", "), where)
		}
		if len(onlyScoped) > 0 {
			receives := "a build job receives only unscoped secrets"
			if env != "" {
				receives = "a deployment to " + env + " receives those scoped to it and unscoped ones"
			}
			msg += fmt.Sprintf(" (%s, and %s)", strings.Join(onlyScoped, "; "), receives)
		}
		return nil, &notSetError{msg}
	}
	return out, nil
}

// ErrNotSet is what the error of Values is when a named secret is not set.
var ErrNotSet = errors.New("secret not set")

// notSetError is ErrNotSet with a message that names what is missing.
type notSetError struct{ msg string }

func (e *notSetError) Error() string        { return e.msg }
func (e *notSetError) Is(target error) bool { return target == ErrNotSet }

// Rotation is what a key rotation did.
type Rotation struct {
	// KeyID is the key every secret is now encrypted under, but those
	// that Failed.
	KeyID string
	// Reencrypted counts the secrets moved to KeyID.
	Reencrypted int
	// Retired are the keys no secret needs any more: dropped from the key
	// file, or to be removed from GANTRY_SECRET_KEY.
	Retired []string
	// Kept are older keys that a secret still needs (one of those that
	// Failed).
	Kept []string
	// Failed names each secret that could not be re-encrypted, and why.
	Failed []string
}

// ErrSingleEnvKey: a rotation needs a new key, and a keyring from
// GANTRY_SECRET_KEY cannot make one itself.
var ErrSingleEnvKey = errors.New("the secret key comes from GANTRY_SECRET_KEY, which holds one key: put a new key before it (GANTRY_SECRET_KEY=NEW,OLD; " + makeKey + "), restart the server, then rotate again to re-encrypt every secret under the new key")

// Rotate re-encrypts every secret under a new key. With a key file, it
// first adds a new key to the file, keeping the old ones; re-encrypts each
// secret, recording the key with it; and only then drops from the file the
// keys no secret needs. A crash at any point leaves every secret
// decryptable, and Resume at the next start finishes the work. With keys
// from GANTRY_SECRET_KEY, the newest key there is the new one (the operator
// put it first; ErrSingleEnvKey when there is only one), and the keys no
// secret needs any more are reported for the operator to remove.
func (v *Vault) Rotate(ctx context.Context) (*Rotation, error) {
	v.rotating.Lock()
	defer v.rotating.Unlock()
	if v.keys.Path() != "" {
		if _, err := v.keys.Add(); err != nil {
			return nil, fmt.Errorf("rotate secret key: %w", err)
		}
	} else if len(v.keys.IDs()) < 2 {
		return nil, ErrSingleEnvKey
	}
	return v.reencrypt(ctx)
}

// Resume finishes a rotation that a crash interrupted: when the key file
// holds more than one key, the secrets under older keys are re-encrypted
// under the newest and the keys no secret needs are dropped. It returns
// nil when there was nothing to finish.
func (v *Vault) Resume(ctx context.Context) (*Rotation, error) {
	v.rotating.Lock()
	defer v.rotating.Unlock()
	if v.keys.Path() == "" || len(v.keys.IDs()) < 2 {
		return nil, nil
	}
	return v.reencrypt(ctx)
}

func (v *Vault) reencrypt(ctx context.Context) (*Rotation, error) {
	newest := v.keys.Newest()
	all, err := v.store.AllSecrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotate secret key: %w", err)
	}
	r := &Rotation{KeyID: newest}
	for _, s := range all {
		if s.KeyID == newest {
			continue
		}
		ad := additionalData(s.Repo, s.Name, s.Environment)
		pt, err := v.keys.Open(s.KeyID, ad, s.Ciphertext)
		if err != nil {
			r.Failed = append(r.Failed, fmt.Sprintf("%s: %v", describe(s), err))
			continue
		}
		keyID, ct := v.keys.Seal(ad, pt)
		switch err := v.store.RekeySecret(ctx, s, keyID, ct); {
		case err == nil:
			r.Reencrypted++
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			// Set anew (under the newest key) or removed meanwhile.
		default:
			return nil, fmt.Errorf("rotate secret key: %w", err)
		}
	}
	// Which older keys does a row still need? No Set may write under an
	// old key between this look and the retirement.
	v.sealing.Lock()
	defer v.sealing.Unlock()
	all, err = v.store.AllSecrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotate secret key: %w", err)
	}
	used := map[string]bool{}
	for _, s := range all {
		used[s.KeyID] = true
	}
	for _, id := range v.keys.IDs()[1:] {
		if used[id] {
			r.Kept = append(r.Kept, id)
		} else {
			r.Retired = append(r.Retired, id)
		}
	}
	if v.keys.Path() != "" && len(r.Retired) > 0 {
		if err := v.keys.Retire(r.Retired); err != nil {
			return nil, fmt.Errorf("rotate secret key: %w", err)
		}
	}
	return r, nil
}

// Unreadable counts, by key ID, the secrets encrypted under keys this
// vault does not have: a server started with the wrong key, or one of
// several servers over one database with a key file of its own.
func (v *Vault) Unreadable(ctx context.Context) (map[string]int, error) {
	all, err := v.store.AllSecrets(ctx)
	if err != nil {
		return nil, err
	}
	have := v.keys.IDs()
	out := map[string]int{}
	for _, s := range all {
		if !slices.Contains(have, s.KeyID) {
			out[s.KeyID]++
		}
	}
	return out, nil
}
