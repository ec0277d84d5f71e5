package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
)

// batchPID is the process ID of m's cat-file --batch, or 0 when none runs.
func batchPID(m *Mirror) int {
	m.objects.mu.Lock()
	defer m.objects.mu.Unlock()
	if m.objects.cmd == nil {
		return 0
	}
	return m.objects.cmd.Process.Pid
}

// One batch process answers for a mirror across fetches: it sees commits
// and files that a fetch brought after it started, loose (a small fetch)
// and packed (a big one), and says so for a commit the mirror lacks.
func TestBatchSeesFetchedObjects(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c1 := o.commit(map[string]string{".gantry.yml": "v: 1\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c1); err != nil {
		t.Fatal(err)
	}
	if got, err := m.ReadFile(ctx, c1, ".gantry.yml"); err != nil || string(got) != "v: 1\n" {
		t.Fatalf("ReadFile(c1) = %q, %v", got, err)
	}
	pid := batchPID(m)
	if pid == 0 {
		t.Fatal("no cat-file --batch runs after ReadFile")
	}

	// A few objects arrive loose, a few hundred in a pack (git unpacks
	// fewer than fetch.unpackLimit, 100).
	many := map[string]string{".gantry.yml": "v: 3\n"}
	for i := range 300 {
		many[fmt.Sprintf("many/%03d", i)] = fmt.Sprintf("%d\n", i)
	}
	var big string
	for _, c := range []struct {
		files map[string]string
		want  string
	}{{map[string]string{".gantry.yml": "v: 2\n"}, "v: 2\n"}, {many, "v: 3\n"}} {
		commit := o.commit(c.files)
		if m.has(ctx, commit) {
			t.Fatalf("has(%s) before the fetch = true", commit)
		}
		if err := m.Fetch(ctx, commit); err != nil {
			t.Fatal(err)
		}
		if !m.has(ctx, commit) {
			t.Errorf("has(%s) after the fetch = false", commit)
		}
		if got, err := m.ReadFile(ctx, commit, ".gantry.yml"); err != nil || string(got) != c.want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", commit, got, err, c.want)
		}
		big = commit
	}
	if got, err := m.ReadFile(ctx, big, "many/007"); err != nil || string(got) != "7\n" {
		t.Errorf("ReadFile(big, many/007) = %q, %v; want \"7\\n\"", got, err)
	}
	if got := batchPID(m); got != pid {
		t.Errorf("cat-file --batch is process %d, was %d: the answers above did not all come from it", got, pid)
	}
	packs, _ := filepath.Glob(filepath.Join(m.dir, "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Errorf("the big fetch left no pack: the packed case was not tested")
	}
	if m.has(ctx, absent) {
		t.Errorf("has(absent) = true")
	}
	// Failures still say why (the slow path).
	if _, err := m.ReadFile(ctx, big, "many"); err == nil {
		t.Errorf("ReadFile(a directory) = nil error")
	}
	if _, err := m.ReadFile(ctx, big, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(no such file) = %v, want fs.ErrNotExist", err)
	}
}

// A batch process that dies, is stopped for idling, or whose caller's
// context ends, is replaced on the next question; meanwhile answers come
// from a git process per call, and are the same.
func TestBatchRestarts(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c := o.commit(map[string]string{".gantry.yml": "v: 1\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c); err != nil {
		t.Fatal(err)
	}
	read := func(what string) {
		t.Helper()
		if got, err := m.ReadFile(ctx, c, ".gantry.yml"); err != nil || string(got) != "v: 1\n" {
			t.Fatalf("ReadFile %s = %q, %v", what, got, err)
		}
		if !m.has(ctx, c) {
			t.Fatalf("has %s = false", what)
		}
	}
	read("at first")
	first := batchPID(m)

	// Killed from outside: the next question fails over, the one after
	// starts a new process.
	m.objects.mu.Lock()
	m.objects.cmd.Process.Kill()
	m.objects.mu.Unlock()
	read("after the batch process was killed")
	read("again")
	second := batchPID(m)
	if second == 0 || second == first {
		t.Errorf("batch process after a kill = %d, first was %d: want a new one", second, first)
	}

	// Idle: stopped, then started again when asked.
	m.objects.expire()
	if pid := batchPID(m); pid != 0 {
		t.Errorf("batch process %d still runs after expiry", pid)
	}
	read("after expiry")
	if pid := batchPID(m); pid == 0 || pid == second {
		t.Errorf("batch process after expiry = %d, want a new one", pid)
	}

	// A context that already ended gets its error and changes nothing.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.ReadFile(done, c, ".gantry.yml"); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadFile(ended context) = %v, want context.Canceled", err)
	}
	read("after an ended context")
}
