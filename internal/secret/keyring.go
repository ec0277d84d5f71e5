package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// KeySize is the size of a secret key: 32 bytes, for AES-256.
const KeySize = 32

// nonceSize is GCM's standard nonce size, 96 bits: random per value.
const nonceSize = 12

// maxKeyFile bounds what is read as a key file.
const maxKeyFile = 1 << 20

// Errors of Keyring.Open, wrapped with what failed.
var (
	// ErrUnknownKey: the value was encrypted under a key the keyring does
	// not hold.
	ErrUnknownKey = errors.New("encrypted under a key this server does not have")
	// ErrDecrypt: the key named does not decrypt the value. GCM
	// authenticates, so this is never garbage: the key is not the one the
	// value was encrypted with, or the stored row was altered, or copied
	// from another secret.
	ErrDecrypt = errors.New("the key does not decrypt it: it is not the key the value was encrypted with, or the stored row was altered or copied from another secret")
	// ErrNotFile: only a keyring read from a key file can add and drop
	// keys itself.
	ErrNotFile = errors.New("the keys come from GANTRY_SECRET_KEY, not a key file")
)

// Keyring holds the keys secret values are encrypted with, newest first:
// the newest encrypts, any of them decrypts. Each key has a short ID,
// derived from the key, that is stored with every value encrypted under it,
// so a keyring in the middle of a rotation knows which key each value needs.
//
// A Keyring comes from GANTRY_SECRET_KEY (ParseKeys, then NewKeyring) or
// from a key file (OpenKeyFile); only one from a file can add and drop keys
// (Add, Retire), rewriting the file. It is safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys []*aeadKey // newest first
	path string     // the key file, or "" when the keys came from the environment
}

type aeadKey struct {
	id   string
	raw  []byte
	aead cipher.AEAD
}

func newKey(raw []byte) (*aeadKey, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("key of %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &aeadKey{id: KeyID(raw), raw: bytes.Clone(raw), aead: aead}, nil
}

// KeyID is the short ID of a key: 16 hex digits of an HMAC of a constant
// under the key. It names the key in the database and in messages without
// revealing anything about it, and is the same wherever the key is used.
func KeyID(raw []byte) string {
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("gantry secret key id v1"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// NewKeyring returns a keyring of raw keys, newest first, each KeySize
// bytes.
func NewKeyring(raw ...[]byte) (*Keyring, error) {
	if len(raw) == 0 {
		return nil, errors.New("keyring: no key")
	}
	k := &Keyring{}
	for i, r := range raw {
		key, err := newKey(r)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %d: %w", i+1, err)
		}
		k.keys = append(k.keys, key)
	}
	return k, nil
}

// NewKey returns a new random key.
func NewKey() []byte {
	b := make([]byte, KeySize)
	rand.Read(b) // never fails; it crashes the program rather than return weak bytes
	return b
}

// encodings are the base64 forms a key may be written in.
var encodings = []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}

// makeKey says how to make a key, for error messages.
const makeKey = "make one with: openssl rand -base64 32"

// decodeKey reads one key written in base64. Its errors never quote s.
func decodeKey(s string) ([]byte, error) {
	n := -1
	for _, enc := range encodings {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) == KeySize {
			return b, nil
		}
		n = max(n, len(b))
	}
	if n >= 0 {
		return nil, fmt.Errorf("decodes to %d bytes, want %d (%s)", n, KeySize, makeKey)
	}
	return nil, fmt.Errorf("not base64 of %d bytes (%s)", KeySize, makeKey)
}

// ParseKeys reads the keys of GANTRY_SECRET_KEY: base64 (standard or
// URL-safe, padding optional) of 32 bytes each, separated by commas,
// newest first. Spaces around a key are ignored. Its errors say which
// key is wrong and how, and never quote a key.
func ParseKeys(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("no key: want base64 of %d random bytes, several separated by commas, newest first (%s)", KeySize, makeKey)
	}
	parts := strings.Split(s, ",")
	var keys [][]byte
	for i, p := range parts {
		where := fmt.Sprintf("key %d of %d", i+1, len(parts))
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("%s is empty", where)
		}
		k, err := decodeKey(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if j := slices.IndexFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }); j >= 0 {
			return nil, fmt.Errorf("%s is the same as key %d", where, j+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ParseKeyFile reads a key file: one key per line in base64 (as
// ParseKeys takes them), newest first; blank lines and lines that begin
// with # are ignored. Its errors name the line and never quote it.
func ParseKeyFile(data []byte) ([][]byte, error) {
	var keys [][]byte
	var lines []int
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if j := slices.IndexFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }); j >= 0 {
			return nil, fmt.Errorf("line %d: the same key as line %d", i+1, lines[j])
		}
		keys = append(keys, k)
		lines = append(lines, i+1)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key in it: want a line with base64 of %d random bytes (%s)", KeySize, makeKey)
	}
	return keys, nil
}

// keyFileHeader opens every key file Gantry writes.
const keyFileHeader = `# Gantry's secret keys: each line is one key, base64 of 32 random bytes.
# The first encrypts secrets; every one decrypts. Keep this file readable by
# the server's user only (mode 0600), and back it up apart from the
# database: without it the secrets in the database cannot be read.
# 'gantry secret rotate-key' adds a key here and drops the old one.
`

// FormatKeyFile is the key file of keys, newest first.
func FormatKeyFile(keys [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(keyFileHeader)
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// OpenKeyFile returns the keyring of the key file at path, creating the
// file with one new key, readable by this user only, when there is none
// (created is then true). It refuses a file that group or others may
// access, since anyone who reads it can decrypt every secret; a file
// that is not a regular file; and a symlink to nothing (a key file on a
// volume that is not mounted), rather than replace it with a new key.
func OpenKeyFile(path string) (k *Keyring, created bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Lstat(path); lerr == nil {
			return nil, false, fmt.Errorf("secret key file %s is a symlink to a file that does not exist", path)
		}
		raw := NewKey()
		if err := writeKeyFile(path, FormatKeyFile([][]byte{raw})); err != nil {
			return nil, false, fmt.Errorf("create secret key file: %w", err)
		}
		k, err := NewKeyring(raw)
		if err != nil {
			return nil, false, err
		}
		k.path = path
		return k, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("secret key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("secret key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, false, fmt.Errorf("secret key file %s may be read by other users (mode %04o): anyone who can read it can decrypt every secret; make it readable by this user only: chmod 600 %s", path, perm, path)
	}
	if fi.Size() > maxKeyFile {
		return nil, false, fmt.Errorf("secret key file %s is %d bytes: not a key file", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("secret key file: %w", err)
	}
	raw, err := ParseKeyFile(data)
	if err != nil {
		return nil, false, fmt.Errorf("secret key file %s: %w", path, err)
	}
	k, err = NewKeyring(raw...)
	if err != nil {
		return nil, false, err
	}
	k.path = path
	return k, false, nil
}

// writeKeyFile replaces the file at path with data, atomically and
// durably: a crash leaves the old file or the new one, never a part.
func writeKeyFile(path string, data []byte) error {
	tmp := path + ".new"
	os.Remove(tmp) // a leftover of a crash, whatever its mode
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Path is the key file the keyring was read from, or "" when its keys
// came from the environment.
func (k *Keyring) Path() string { return k.path }

// IDs returns the IDs of the keys, newest first.
func (k *Keyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// Newest returns the ID of the key that encrypts.
func (k *Keyring) Newest() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[0].id
}

// Seal encrypts plaintext under the newest key with a random nonce,
// authenticating ad along with it (the value cannot be opened with other
// ad), and returns the key's ID and the nonce followed by the sealed value.
func (k *Keyring) Seal(ad, plaintext []byte) (keyID string, ciphertext []byte) {
	k.mu.RLock()
	key := k.keys[0]
	k.mu.RUnlock()
	nonce := make([]byte, nonceSize, nonceSize+len(plaintext)+key.aead.Overhead())
	rand.Read(nonce)
	return key.id, key.aead.Seal(nonce, nonce, plaintext, ad)
}

// Open decrypts what Seal returned under key keyID with the same ad. It
// fails with ErrUnknownKey when the keyring lacks the key, and with
// ErrDecrypt when the key, the ciphertext or ad is not the one sealed.
func (k *Keyring) Open(keyID string, ad, ciphertext []byte) ([]byte, error) {
	k.mu.RLock()
	var key *aeadKey
	for _, c := range k.keys {
		if c.id == keyID {
			key = c
		}
	}
	k.mu.RUnlock()
	if key == nil {
		return nil, fmt.Errorf("%w: it was encrypted under key %s, and this server has %s", ErrUnknownKey, keyID, strings.Join(k.IDs(), ", "))
	}
	if len(ciphertext) < nonceSize+key.aead.Overhead() {
		return nil, fmt.Errorf("key %s: %w (the stored value is too short)", keyID, ErrDecrypt)
	}
	pt, err := key.aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", keyID, ErrDecrypt)
	}
	return pt, nil
}

// Add makes a new random key the newest, writing it to the key file
// before it is used, with the older keys after it: until they are
// retired, a crash at any point leaves every value decryptable. It
// returns the new key's ID. ErrNotFile for a keyring from the
// environment.
func (k *Keyring) Add() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path == "" {
		return "", ErrNotFile
	}
	key, err := newKey(NewKey())
	if err != nil {
		return "", err
	}
	keys := append([]*aeadKey{key}, k.keys...)
	if err := writeKeyFile(k.path, FormatKeyFile(raws(keys))); err != nil {
		return "", fmt.Errorf("write secret key file: %w", err)
	}
	k.keys = keys
	return key.id, nil
}

// Retire drops the keys of these IDs from the keyring and the key file;
// the newest key is never dropped. ErrNotFile for a keyring from the
// environment.
func (k *Keyring) Retire(ids []string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path == "" {
		return ErrNotFile
	}
	keys := []*aeadKey{k.keys[0]}
	for _, key := range k.keys[1:] {
		if !slices.Contains(ids, key.id) {
			keys = append(keys, key)
		}
	}
	if len(keys) == len(k.keys) {
		return nil
	}
	if err := writeKeyFile(k.path, FormatKeyFile(raws(keys))); err != nil {
		return fmt.Errorf("write secret key file: %w", err)
	}
	k.keys = keys
	return nil
}

func raws(keys []*aeadKey) [][]byte {
	out := make([][]byte, len(keys))
	for i, key := range keys {
		out[i] = key.raw
	}
	return out
}
