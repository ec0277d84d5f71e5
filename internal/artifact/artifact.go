// Package artifact keeps the bytes of artifacts on disk, each file named
// by its SHA-256, so that a file built once and kept by many builds and
// releases is stored once, and what a name promises can be checked by
// anyone who reads it. It streams: no artifact is ever held in memory.
//
// It does not know which artifacts exist: the store records them, and
// Sweep asks the store which digests are still in use.
//
// Layout under the directory it is given:
//
//	sha256/ab/abcdef...   one file per digest (the first two hex digits name the folder)
//	tmp/                  uploads in progress; emptied by New
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// ErrDigest means bytes did not hash to the SHA-256 they were meant to.
var ErrDigest = errors.New("SHA-256 mismatch")

// Store is a directory of files named by their SHA-256. It is safe for
// concurrent use within one process; one directory belongs to one Store.
type Store struct {
	dir string
	// mu keeps Sweep from removing a file between the moment Put puts it
	// in place and the moment its record exists: Put holds it shared,
	// Sweep exclusively.
	mu sync.RWMutex
}

// New returns the Store in dir, creating it, and removes the uploads a
// crash left unfinished.
func New(dir string) (*Store, error) {
	for _, d := range []string{"sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("artifact store: %w", err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	for _, e := range entries {
		os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	return &Store{dir: dir}, nil
}

// ValidDigest reports whether s is a SHA-256 as the store names files:
// 64 lowercase hex digits.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Path is where the bytes of digest live.
func (s *Store) Path(digest string) string {
	return filepath.Join(s.dir, "sha256", digest[:2], digest)
}

// Put streams r into the store: into a temporary file, hashed on the way,
// synced, then renamed to its digest's name (over a file of that name, so
// a damaged copy is replaced). When want is not empty and the bytes hash
// to something else, nothing is kept and the error wraps ErrDigest.
//
// record, when not nil, is called with the digest and size once the file
// is in place, before Sweep may look at it: record the artifact there. Put
// returns record's error; the file then stays until a Sweep finds it
// unused.
func (s *Store) Put(r io.Reader, want string, record func(digest string, size int64) error) (digest string, size int64, err error) {
	if want != "" && !ValidDigest(want) {
		return "", 0, fmt.Errorf("put artifact: %q is not a SHA-256 (64 lowercase hex digits)", want)
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-")
	if err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	digest = hex.EncodeToString(h.Sum(nil))
	if want != "" && digest != want {
		return "", 0, fmt.Errorf("put artifact: the bytes received have SHA-256 %s, the sender said %s: %w", digest, want, ErrDigest)
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	path := s.Path(digest)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := os.Rename(tmp, path); err != nil {
		return "", 0, fmt.Errorf("put artifact: %w", err)
	}
	if record != nil {
		if err := record(digest, size); err != nil {
			return digest, size, err
		}
	}
	return digest, size, nil
}

// Open opens the bytes of digest; an error wrapping fs.ErrNotExist when
// the store does not have them. The reader should check what it reads
// against the digest: a file on disk can be damaged.
func (s *Store) Open(digest string) (*os.File, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("open artifact %q: not a SHA-256: %w", digest, fs.ErrNotExist)
	}
	f, err := os.Open(s.Path(digest))
	if err != nil {
		return nil, fmt.Errorf("open artifact %s: %w", digest, err)
	}
	return f, nil
}

// Sweep removes every file whose digest inUse reports unused, and returns
// how many it removed. A file being put is never removed before its
// record is made.
func (s *Store) Sweep(ctx context.Context, inUse func(ctx context.Context, digest string) (bool, error)) (int, error) {
	removed := 0
	dirs, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return 0, fmt.Errorf("sweep artifacts: %w", err)
	}
	for _, d := range dirs {
		files, err := os.ReadDir(filepath.Join(s.dir, "sha256", d.Name()))
		if err != nil {
			continue
		}
		for _, f := range files {
			if ctx.Err() != nil {
				return removed, ctx.Err()
			}
			digest := f.Name()
			if !ValidDigest(digest) {
				continue
			}
			gone, err := s.sweepOne(ctx, digest, inUse)
			if err != nil {
				return removed, fmt.Errorf("sweep artifacts: %w", err)
			}
			if gone {
				removed++
			}
		}
	}
	return removed, nil
}

func (s *Store) sweepOne(ctx context.Context, digest string, inUse func(context.Context, string) (bool, error)) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used, err := inUse(ctx, digest)
	if err != nil || used {
		return false, err
	}
	if err := os.Remove(s.Path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// Verify copies r to w and fails with an error wrapping ErrDigest when
// the bytes, all read, do not hash to want. It is how a reader checks
// what it was sent; what went to w before the end is not taken back.
func Verify(w io.Writer, r io.Reader, want string) (int64, error) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("the bytes have SHA-256 %s, not the %s recorded: %w", got, want, ErrDigest)
	}
	return n, nil
}

// ValidPath reports whether p may name an artifact: a file's path in a
// workspace, relative, with slashes, clean (no "." or ".." parts, no
// doubled or trailing slash), without NUL, backslashes or control
// characters, at most 1024 bytes.
func ValidPath(p string) bool {
	if p == "" || len(p) > 1024 || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return false
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	for part := range strings.SplitSeq(p, "/") {
		if part == "." || part == ".." {
			return false
		}
	}
	return true
}
