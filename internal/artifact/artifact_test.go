package artifact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-ci/gantry/internal/artifact"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newStore(t *testing.T) (*artifact.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := artifact.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestPutOpen(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t)
	data := []byte("the binary\n")
	var recorded string
	digest, size, err := s.Put(bytes.NewReader(data), digestOf(data), func(d string, n int64) error {
		recorded = d
		return nil
	})
	if err != nil || digest != digestOf(data) || size != int64(len(data)) || recorded != digest {
		t.Fatalf("Put() = %s, %d, %v (recorded %s); want %s, %d", digest, size, err, recorded, digestOf(data), len(data))
	}
	if _, err := os.Stat(filepath.Join(dir, "sha256", digest[:2], digest)); err != nil {
		t.Errorf("the file is not where the layout says: %v", err)
	}
	f, err := s.Open(digest)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer f.Close()
	var got bytes.Buffer
	if _, err := artifact.Verify(&got, f, digest); err != nil || got.String() != string(data) {
		t.Errorf("Verify(Open()) = %q, %v; want %q", got.String(), err, data)
	}
	// Without a wanted digest, the store computes it.
	if d, _, err := s.Put(strings.NewReader("x"), "", nil); err != nil || d != digestOf([]byte("x")) {
		t.Errorf("Put(no digest) = %s, %v", d, err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp holds %d files after the uploads, want none", len(tmp))
	}
}

func TestPutDigestMismatch(t *testing.T) {
	t.Parallel()
	s, dir := newStore(t)
	want := digestOf([]byte("what the sender hashed"))
	called := false
	_, _, err := s.Put(strings.NewReader("what arrived"), want, func(string, int64) error { called = true; return nil })
	if !errors.Is(err, artifact.ErrDigest) || !strings.Contains(err.Error(), want) {
		t.Errorf("Put(wrong bytes) = %v, want ErrDigest naming %s", err, want)
	}
	if called {
		t.Error("Put(wrong bytes) recorded the artifact")
	}
	for _, sub := range []string{"tmp", "sha256/" + digestOf([]byte("what arrived"))[:2]} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) != 0 {
			t.Errorf("%s holds %d files after a refused upload, want none", sub, len(entries))
		}
	}
	if _, _, err := s.Put(strings.NewReader("x"), "../../etc/passwd", nil); err == nil {
		t.Error("Put(want not a digest) = nil, want an error")
	}
	if _, err := s.Open("../../etc/passwd"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(not a digest) = %v, want ErrNotExist", err)
	}
	if _, err := s.Open(want); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}

// TestPutRepairs: putting bytes whose file was damaged on disk replaces it.
func TestPutRepairs(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	data := []byte("good bytes")
	d, _, err := s.Put(bytes.NewReader(data), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(d), []byte("rotten"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _ := s.Open(d)
	if _, err := artifact.Verify(io.Discard, f, d); !errors.Is(err, artifact.ErrDigest) {
		t.Errorf("Verify(damaged file) = %v, want ErrDigest", err)
	}
	f.Close()
	if _, _, err := s.Put(bytes.NewReader(data), d, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(s.Path(d)); string(got) != string(data) {
		t.Errorf("after a second Put the file holds %q, want %q", got, data)
	}
}

func TestPutRecordError(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	boom := errors.New("database gone")
	if _, _, err := s.Put(strings.NewReader("x"), "", func(string, int64) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Put() with a failing record = %v, want its error", err)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	var digests []string
	for _, c := range []string{"keep", "drop", "also drop"} {
		d, _, err := s.Put(strings.NewReader(c), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	keep := digests[0]
	n, err := s.Sweep(ctx, func(_ context.Context, d string) (bool, error) { return d == keep, nil })
	if err != nil || n != 2 {
		t.Errorf("Sweep() = %d, %v; want 2", n, err)
	}
	if _, err := os.Stat(s.Path(keep)); err != nil {
		t.Errorf("the file in use is gone: %v", err)
	}
	for _, d := range digests[1:] {
		if _, err := os.Stat(s.Path(d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("unused file %s: %v, want removed", d, err)
		}
	}
	boom := errors.New("database gone")
	if _, err := s.Sweep(ctx, func(context.Context, string) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("Sweep() with a failing inUse = %v, want its error", err)
	}
	if _, err := os.Stat(s.Path(keep)); err != nil {
		t.Errorf("a failed sweep removed a file: %v", err)
	}
}

// TestSweepDuringPut: a sweep that runs while files are put never removes
// one whose record was made, however the two interleave.
func TestSweepDuringPut(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	var mu sync.Mutex
	recorded := map[string]bool{}
	inUse := func(_ context.Context, d string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return recorded[d], nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := s.Sweep(ctx, inUse); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for i := range 200 {
		data := []byte(strings.Repeat("x", i+1))
		d, _, err := s.Put(bytes.NewReader(data), "", func(d string, _ int64) error {
			mu.Lock()
			recorded[d] = true
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.Path(d)); err != nil {
			t.Fatalf("file %d was swept after its record: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestNewClearsUnfinishedUploads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := artifact.New(dir); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, "tmp", "upload-123")
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.New(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unfinished upload after New: %v, want removed", err)
	}
}

func TestValidPath(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"dist/app": true, "app": true, "dist/a b.tar.gz": true, ".hidden/x": true, "dist/..x": true,
		"": false, "/etc/passwd": false, "../x": false, "dist/../../x": false, "dist/./x": false, "./x": false,
		"dist//x": false, "dist/": false, ".": false, "..": false, "a\\b": false, "a\x00b": false, "a\nb": false,
		strings.Repeat("a", 1025): false,
	} {
		if got := artifact.ValidPath(p); got != want {
			t.Errorf("ValidPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// FuzzValidPath: a path ValidPath accepts never leaves the directory it is
// joined to.
func FuzzValidPath(f *testing.F) {
	for _, s := range []string{"dist/app", "../x", "a/../../b", "/abs", "a//b", "..", "a\\..\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !artifact.ValidPath(p) {
			return
		}
		root := "/work/space"
		j := filepath.Join(root, filepath.FromSlash(p))
		if !strings.HasPrefix(j, root+"/") || !filepath.IsLocal(p) {
			t.Errorf("ValidPath(%q) = true, but it joins to %s", p, j)
		}
	})
}
