package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// origin is a repository standing in for the forge's.
type origin struct {
	t   testing.TB
	dir string
}

func newOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{t: t, dir: t.TempDir()}
	o.git("-c", "init.defaultBranch=main", "init", "--quiet")
	return o
}

func (o *origin) git(args ...string) string {
	o.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", o.dir}, args...)...)
	cmd.Env = append(gitEnv(),
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		o.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (a name ending in .sh is executable), removes the
// paths in remove, commits on the current branch and returns the hash.
func (o *origin) commit(files map[string]string, remove ...string) string {
	o.t.Helper()
	for name, content := range files {
		p := filepath.Join(o.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			o.t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			o.t.Fatal(err)
		}
	}
	for _, name := range remove {
		o.git("rm", "--quiet", "--", name)
	}
	o.git("add", "--all")
	o.git("commit", "--quiet", "--allow-empty", "-m", "test")
	return o.git("rev-parse", "HEAD")
}

// workTree returns the files of the work tree at dir, without .git.
func workTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func hasRef(t *testing.T, m *Mirror, ref string) bool {
	t.Helper()
	_, err := m.run(t.Context(), "", "--git-dir="+m.dir, "show-ref", "--verify", "--quiet", ref)
	return err == nil
}

const absent = "0123456789abcdef0123456789abcdef01234567"

func TestFetchReadFile(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c := o.commit(map[string]string{".gantry.yml": "jobs: {}\n", "deep/er/file.txt": "deep\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{".gantry.yml": "jobs: {}\n", "deep/er/file.txt": "deep\n"} {
		got, err := m.ReadFile(ctx, c, name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("ReadFile(%s) (-want +got):\n%s", name, diff)
		}
	}
	// Upper case is the same commit.
	if got, err := m.ReadFile(ctx, strings.ToUpper(c), ".gantry.yml"); err != nil || string(got) != "jobs: {}\n" {
		t.Errorf("ReadFile(upper-case hash) = %q, %v, want the file", got, err)
	}
}

func TestFetchKnownCommitStaysOffline(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c := o.commit(map[string]string{"a": "a\n"})
	dir := filepath.Join(t.TempDir(), "mirror")
	ctx := t.Context()
	if err := NewMirror(dir, o.dir).Fetch(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(o.dir); err != nil {
		t.Fatal(err)
	}
	gone := NewMirror(dir, filepath.Join(t.TempDir(), "gone"))
	if err := gone.Fetch(ctx, c); err != nil {
		t.Fatalf("Fetch(known commit) with the origin gone = %v, want nil (no fetch)", err)
	}
	// The URL is truly dead: a commit the mirror lacks cannot be had.
	if err := gone.Fetch(ctx, absent); err == nil || errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Fetch(unknown commit) with the origin gone = %v, want an error reaching it", err)
	}
}

func TestFetchNewCommit(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c1 := o.commit(map[string]string{"v": "1\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), "file://"+o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c1); err != nil {
		t.Fatal(err)
	}
	c2 := o.commit(map[string]string{"v": "2\n"})
	o.git("tag", "v2")
	if err := m.Fetch(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if got, err := m.ReadFile(ctx, c2, "v"); err != nil || string(got) != "2\n" {
		t.Errorf("ReadFile(c2, v) = %q, %v, want \"2\\n\"", got, err)
	}
	if got, err := m.ReadFile(ctx, c1, "v"); err != nil || string(got) != "1\n" {
		t.Errorf("ReadFile(c1, v) = %q, %v, want \"1\\n\"", got, err)
	}
	if !hasRef(t, m, "refs/tags/v2") {
		t.Errorf("mirror has no refs/tags/v2 after fetching")
	}
	// A branch deleted on the forge is pruned from the mirror.
	o.git("branch", "gone")
	c3 := o.commit(map[string]string{"v": "3\n"})
	if err := m.Fetch(ctx, c3); err != nil {
		t.Fatal(err)
	}
	if !hasRef(t, m, "refs/heads/gone") {
		t.Fatalf("mirror has no refs/heads/gone")
	}
	o.git("branch", "-D", "gone")
	c4 := o.commit(map[string]string{"v": "4\n"})
	if err := m.Fetch(ctx, c4); err != nil {
		t.Fatal(err)
	}
	if hasRef(t, m, "refs/heads/gone") {
		t.Errorf("refs/heads/gone not pruned")
	}
}

func TestFetchPullRequestAndHiddenCommits(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	base := o.commit(map[string]string{"f": "base\n"})
	o.git("checkout", "--quiet", "--detach")
	pr := o.commit(map[string]string{"f": "github pr\n"})
	o.git("update-ref", "refs/pull/7/head", pr)
	o.git("checkout", "--quiet", "--detach", base)
	mr := o.commit(map[string]string{"f": "gitlab mr\n"})
	o.git("update-ref", "refs/merge-requests/3/head", mr)
	o.git("checkout", "--quiet", "--detach", base)
	hidden := o.commit(map[string]string{"f": "hidden\n"})
	o.git("update-ref", "refs/custom/x", hidden)
	o.git("checkout", "--quiet", "main")

	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	for _, tc := range []struct{ name, commit, want, ref string }{
		{"pull request", pr, "github pr\n", "refs/pull/7/head"},
		{"merge request", mr, "gitlab mr\n", "refs/merge-requests/3/head"},
		{"by hash", hidden, "hidden\n", "refs/gantry/commits/" + hidden},
	} {
		if err := m.Fetch(ctx, tc.commit); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, err := m.ReadFile(ctx, tc.commit, "f"); err != nil || string(got) != tc.want {
			t.Errorf("%s: ReadFile = %q, %v, want %q", tc.name, got, err, tc.want)
		}
		if !hasRef(t, m, tc.ref) {
			t.Errorf("%s: mirror has no %s", tc.name, tc.ref)
		}
	}
}

func TestFetchMissingCommit(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	o.commit(map[string]string{"a": "a\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	err := m.Fetch(t.Context(), absent)
	if !errors.Is(err, ErrCommitNotFound) {
		t.Fatalf("Fetch(absent) = %v, want ErrCommitNotFound", err)
	}
	for _, want := range []string{absent, o.dir, "git: fatal: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Fetch(absent) = %q, want it to contain %q", err, want)
		}
	}
}

func TestBadCommitNeverReachesGit(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	o.commit(map[string]string{"a": "a\n"})
	root := t.TempDir()
	m := NewMirror(filepath.Join(root, "mirror"), o.dir)
	ctx := t.Context()
	for _, c := range []string{"", "main", "HEAD", "--upload-pack=touch x", "0123abc", absent + "0", strings.Repeat("g", 40)} {
		if err := m.Fetch(ctx, c); err == nil {
			t.Errorf("Fetch(%q) = nil, want an error", c)
		}
		if _, err := m.ReadFile(ctx, c, "a"); err == nil {
			t.Errorf("ReadFile(%q) = nil error, want one", c)
		}
		if err := m.Checkout(ctx, c, filepath.Join(root, "wt")); err == nil {
			t.Errorf("Checkout(%q) = nil, want an error", c)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "mirror")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bad hashes created the mirror (stat: %v)", err)
	}
}

func TestReadFileErrors(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c := o.commit(map[string]string{"dir/file": "x\n"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		commit, name string
		want         error // errors.Is; nil: any error but the two below
	}{
		{c, ".gantry.yml", fs.ErrNotExist},
		{c, "dir/nope", fs.ErrNotExist},
		{c, "dir", nil},
		{c, "../dir/file", fs.ErrInvalid},
		{c, "/dir/file", fs.ErrInvalid},
		{c, ".", fs.ErrInvalid},
		{absent, "dir/file", ErrCommitNotFound},
	} {
		_, err := m.ReadFile(ctx, tc.commit, tc.name)
		switch {
		case err == nil:
			t.Errorf("ReadFile(%.7s, %q) = nil error, want one", tc.commit, tc.name)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("ReadFile(%.7s, %q) = %v, want %v", tc.commit, tc.name, err, tc.want)
		case tc.want == nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCommitNotFound)):
			t.Errorf("ReadFile(%.7s, %q) = %v, want neither not-exist nor commit-not-found", tc.commit, tc.name, err)
		}
	}
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	want := map[string]string{
		".gantry.yml":  "jobs: {}\n",
		"build.sh":     "#!/bin/sh\necho hi\n",
		"src/a/b/c.go": "package b\n",
	}
	c1 := o.commit(want)
	c2 := o.commit(map[string]string{"later": "not in c1\n"})
	o.git("tag", "v1", c1)
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c2); err != nil {
		t.Fatal(err)
	}
	wt := filepath.Join(t.TempDir(), "build", "src")
	if err := m.Checkout(ctx, c1, wt); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, workTree(t, wt)); diff != "" {
		t.Errorf("work tree (-want +got):\n%s", diff)
	}
	head, err := ReadHead(wt)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Head{Root: wt, Commit: c1}, head); diff != "" {
		t.Errorf("ReadHead (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(wt, "build.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("build.sh = %v, %v, want executable", fi.Mode(), err)
	}
	wtGit := &origin{t: t, dir: wt}
	if st := wtGit.git("status", "--porcelain"); st != "" {
		t.Errorf("git status in work tree = %q, want clean", st)
	}
	if d := wtGit.git("describe", "--tags"); d != "v1" {
		t.Errorf("git describe --tags = %q, want v1", d)
	}
	// The work tree borrows objects rather than copying them.
	if b, err := os.ReadFile(filepath.Join(wt, ".git", "objects", "info", "alternates")); err != nil || !strings.Contains(string(b), m.Dir()) {
		t.Errorf("alternates = %q, %v, want the mirror's objects", b, err)
	}
	// What a build does in its work tree stays there.
	wtGit.git("tag", "from-build")
	if hasRef(t, m, "refs/tags/from-build") {
		t.Errorf("a tag made in the work tree reached the mirror")
	}

	if err := m.Checkout(ctx, c2, wt); err == nil {
		t.Errorf("Checkout into a non-empty dir = nil, want an error")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if err := m.Checkout(ctx, absent, missing); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Checkout(absent) = %v, want ErrCommitNotFound", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Checkout left %s behind (stat: %v)", missing, err)
	}
	empty := t.TempDir()
	if err := m.Checkout(ctx, absent, empty); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Checkout(absent) = %v, want ErrCommitNotFound", err)
	}
	if ents, err := os.ReadDir(empty); err != nil || len(ents) != 0 {
		t.Errorf("failed Checkout into an empty dir left %v, %v; want it empty", ents, err)
	}
}

func TestCheckoutConcurrent(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	const n = 10
	var commits []string
	for i := range n {
		commits = append(commits, o.commit(map[string]string{"n": fmt.Sprint(i), fmt.Sprintf("only/%d", i): "x"}))
	}
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range commits {
		wg.Go(func() {
			// Each goroutine fetches too: the first of them creates the
			// mirror and fetches, the rest wait or find it there.
			if errs[i] = m.Fetch(ctx, c); errs[i] == nil {
				errs[i] = m.Checkout(ctx, c, filepath.Join(root, fmt.Sprint(i)))
			}
		})
	}
	wg.Wait()
	for i, c := range commits {
		if errs[i] != nil {
			t.Errorf("checkout %d: %v", i, errs[i])
			continue
		}
		wt := filepath.Join(root, fmt.Sprint(i))
		want := map[string]string{"n": fmt.Sprint(i)}
		for j := 0; j <= i; j++ {
			want[fmt.Sprintf("only/%d", j)] = "x"
		}
		if diff := cmp.Diff(want, workTree(t, wt)); diff != "" {
			t.Errorf("work tree %d (-want +got):\n%s", i, diff)
		}
		if h, err := ReadHead(wt); err != nil || h.Commit != c {
			t.Errorf("ReadHead(%d) = %+v, %v, want commit %s", i, h, err, c)
		}
	}
}

func TestConcurrentFetchAndRead(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c1 := o.commit(map[string]string{"f": "1"})
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c1); err != nil {
		t.Fatal(err)
	}
	c2 := o.commit(map[string]string{"f": "2"})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c, want := c1, "1"
			if i%2 == 1 {
				c, want = c2, "2"
			}
			if err := m.Fetch(ctx, c); err != nil {
				t.Error(err)
				return
			}
			if got, err := m.ReadFile(ctx, c, "f"); err != nil || string(got) != want {
				t.Errorf("ReadFile(%.7s) = %q, %v, want %q", c, got, err, want)
			}
		})
	}
	wg.Wait()
}

func TestChangedPaths(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	c1 := o.commit(map[string]string{"keep": "k", "mod": "1", "del": "d", "old/name": "rename me, I am long enough\n"})
	c2 := o.commit(map[string]string{"mod": "2", "add/ed": "a", "new/name": "rename me, I am long enough\n"}, "del", "old/name")
	c3 := o.commit(nil) // empty commit
	m := NewMirror(filepath.Join(t.TempDir(), "mirror"), o.dir)
	ctx := t.Context()
	if err := m.Fetch(ctx, c3); err != nil {
		t.Fatal(err)
	}
	zeros := strings.Repeat("0", 40)
	for _, tc := range []struct {
		name, before, after string
		want                []string
	}{
		{"push", c1, c2, []string{"add/ed", "del", "mod", "new/name", "old/name"}},
		{"force push back", c2, c1, []string{"add/ed", "del", "mod", "new/name", "old/name"}},
		{"nothing changed", c2, c3, []string{}},
		{"new branch", zeros, c2, nil},
		{"no before", "", c2, nil},
		{"deleted branch", c2, zeros, nil},
		{"before never seen", absent, c2, nil},
	} {
		got, err := m.ChangedPaths(ctx, tc.before, tc.after)
		if err != nil {
			t.Errorf("%s: ChangedPaths = %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: ChangedPaths (-want +got):\n%s", tc.name, diff)
		}
		if (got == nil) != (tc.want == nil) {
			t.Errorf("%s: ChangedPaths = %#v, want %#v (nil means unknown)", tc.name, got, tc.want)
		}
	}
	if _, err := m.ChangedPaths(ctx, c1, absent); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("ChangedPaths(c1, absent) = %v, want ErrCommitNotFound", err)
	}
}

func TestCredentialsRedacted(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-t0ken"
	ctx := t.Context()
	for _, u := range []string{
		"http://alice:" + secret + "@127.0.0.1:1/repo.git", // connection refused at once
		"http://" + secret + "@127.0.0.1:1/repo.git",       // a token as the user name
	} {
		m := NewMirror(filepath.Join(t.TempDir(), "mirror"), u)
		err := m.Fetch(ctx, absent)
		if err == nil {
			t.Fatalf("Fetch from %s = nil, want an error", redactURL(u))
		}
		for _, s := range []string{err.Error(), m.String(), fmt.Sprintf("%v %+v", m, m)} {
			if strings.Contains(s, secret) {
				t.Errorf("%q leaks the credentials", s)
			}
			if !strings.Contains(s, "127.0.0.1:1/repo.git") {
				t.Errorf("%q does not name the URL", s)
			}
		}
		if !strings.Contains(err.Error(), absent) {
			t.Errorf("Fetch = %q, want it to name the commit", err)
		}
		// Whatever git writes, the credentials are scrubbed from it.
		if got := m.redact("fatal: unable to access '" + u + "': nope"); strings.Contains(got, secret) {
			t.Errorf("redact(...) = %q, leaks the credentials", got)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"https://alice:pw@github.com/o/r.git", "https://***@github.com/o/r.git"},
		{"https://x-access-token:ghs_abc@github.com/o/r.git", "https://***@github.com/o/r.git"},
		{"https://ghp_abc@github.com/o/r.git", "https://***@github.com/o/r.git"},
		{"ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"},
		{"ssh://git:pw@example.com/o/r.git", "ssh://***@example.com/o/r.git"},
		{"git@github.com:o/r.git", "git@github.com:o/r.git"},
		{"https://github.com/o/r.git", "https://github.com/o/r.git"},
		{"/srv/git/r.git", "/srv/git/r.git"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMirrorsGet(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	root := filepath.Join(parent, "mirrors")
	ms := NewMirrors(root)
	o := newOrigin(t)
	c := o.commit(map[string]string{"a": "a\n"})
	ctx := t.Context()

	names := []string{
		"owner/name", "owner%2Fname", "../../etc", "a/b/../../c", "..", ".", "", "~",
		"/etc/passwd", `a\..\..\b`, ".git", "a\x00b", "ünïcode/repo", strings.Repeat("long/", 300),
	}
	dirs := map[string]string{}
	for _, name := range names {
		m := ms.Get(name, o.dir)
		rel, err := filepath.Rel(root, m.Dir())
		if err != nil || rel == "." || rel == ".." || strings.ContainsAny(rel, `/\`) || strings.HasPrefix(rel, ".") || len(rel) > 255 {
			t.Errorf("Get(%q).Dir() = %s, want one plain element under %s", name, m.Dir(), root)
		}
		if prev, ok := dirs[rel]; ok {
			t.Errorf("Get(%q) and Get(%q) share %s", name, prev, rel)
		}
		dirs[rel] = name
		if ms.Get(name, o.dir) != m {
			t.Errorf("Get(%q) twice gave two mirrors", name)
		}
		if err := m.Fetch(ctx, c); err != nil {
			t.Errorf("Get(%q).Fetch: %v", name, err)
		}
	}
	if got := ms.Get("owner/name", o.dir).Dir(); got != filepath.Join(root, "owner%2Fname") {
		t.Errorf("Get(owner/name).Dir() = %s, want %s", got, filepath.Join(root, "owner%2Fname"))
	}
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) != 1 || ents[0].Name() != "mirrors" {
		t.Errorf("%s holds %v, %v; want only mirrors/", parent, ents, err)
	}
	ents, err = os.ReadDir(root)
	if err != nil || len(ents) != len(names) {
		t.Errorf("%s holds %d entries, %v; want %d mirrors", root, len(ents), err, len(names))
	}

	// A later Get's URL wins: a rotated token reaches the mirror.
	m := ms.Get("owner/name", "https://new@example.com/o/r.git")
	if got := m.currentURL(); got != "https://new@example.com/o/r.git" {
		t.Errorf("after a second Get, URL = %q, want the new one", got)
	}
}

func TestDirName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"owner/name", "owner%2Fname"},
		{"group/sub/pro.ject_1-x", "group%2Fsub%2Fpro.ject_1-x"},
		{"..", "%2E."},
		{".", "%2E"},
		{"", "~"},
		{"~", "%7E"},
		{"a%b", "a%25b"},
	} {
		if got := dirName(tc.in); got != tc.want {
			t.Errorf("dirName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCauseLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"fatal: remote error: upload-pack: not our ref abc\nfatal: the remote end hung up unexpectedly\n", "fatal: remote error: upload-pack: not our ref abc"},
		{"git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n", "git@github.com: Permission denied (publickey)."},
		{"warning: something\nerror: RPC failed\nfatal: early EOF\n", "error: RPC failed"},
		{"just a line\nlast line\n", "last line"},
		{"", ""},
	} {
		if got := causeLine(tc.in); got != tc.want {
			t.Errorf("causeLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// benchOrigin is a repository of a middling project: 300 files of 2 KiB in
// 20 directories.
func benchOrigin(b *testing.B) (*origin, string) {
	o := newOrigin(b)
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("d%d/f%d.txt", i%20, i)] = strings.Repeat(fmt.Sprintf("line %d\n", i), 256)
	}
	return o, o.commit(files)
}

// BenchmarkFetchKnownCommit is the hot path of every build after the first
// of a commit: one git cat-file.
func BenchmarkFetchKnownCommit(b *testing.B) {
	o, c := benchOrigin(b)
	m := NewMirror(filepath.Join(b.TempDir(), "mirror"), o.dir)
	ctx := b.Context()
	if err := m.Fetch(ctx, c); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := m.Fetch(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFile(b *testing.B) {
	o, c := benchOrigin(b)
	m := NewMirror(filepath.Join(b.TempDir(), "mirror"), o.dir)
	ctx := b.Context()
	if err := m.Fetch(ctx, c); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.ReadFile(ctx, c, "d1/f1.txt"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckout is Checkout as it is: git clone --shared --no-checkout,
// then git checkout --detach.
func BenchmarkCheckout(b *testing.B) {
	benchCheckout(b, func(ctx context.Context, m *Mirror, c, dir string) error {
		return m.Checkout(ctx, c, dir)
	})
}

// BenchmarkCheckoutWorktree is the road not taken, kept to measure against:
// git worktree add --detach (and the prune it needs afterwards).
func BenchmarkCheckoutWorktree(b *testing.B) {
	benchCheckout(b, func(ctx context.Context, m *Mirror, c, dir string) error {
		_, err := m.run(ctx, "", "--git-dir="+m.dir, "worktree", "add", "--quiet", "--detach", dir, c)
		return err
	})
}

func benchCheckout(b *testing.B, checkout func(ctx context.Context, m *Mirror, c, dir string) error) {
	o, c := benchOrigin(b)
	m := NewMirror(filepath.Join(b.TempDir(), "mirror"), o.dir)
	ctx := b.Context()
	if err := m.Fetch(ctx, c); err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		if err := checkout(ctx, m, c, filepath.Join(root, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	first := o.commit(map[string]string{"a.txt": "one"})
	m := NewMirror(filepath.Join(t.TempDir(), "m.git"), o.dir)
	got, err := m.Resolve(context.Background(), "refs/heads/main")
	if err != nil || got != first {
		t.Fatalf("Resolve(main) = %q, %v; want %s", got, err, first)
	}
	second := o.commit(map[string]string{"a.txt": "two"})
	if got, err := m.Resolve(context.Background(), "refs/heads/main"); err != nil || got != second {
		t.Errorf("Resolve(main) after a new commit = %q, %v; want %s", got, err, second)
	}
	if _, err := m.Resolve(context.Background(), "refs/heads/nope"); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Resolve(nope) = %v, want ErrCommitNotFound", err)
	}
	if _, err := m.Resolve(context.Background(), "--upload-pack=x"); err == nil {
		t.Error("Resolve(--upload-pack=x) = nil error")
	}
}

func TestResolveCommit(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	full := o.commit(map[string]string{"a.txt": "one"})
	m := NewMirror(filepath.Join(t.TempDir(), "m.git"), o.dir)
	got, err := m.ResolveCommit(context.Background(), full[:12])
	if err != nil || got != full {
		t.Fatalf("ResolveCommit(%s) = %q, %v; want %s", full[:12], got, err, full)
	}
	if _, err := m.ResolveCommit(context.Background(), "0000000deadbeef"); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("ResolveCommit(unknown) = %v, want ErrCommitNotFound", err)
	}
	if _, err := m.ResolveCommit(context.Background(), "--all"); err == nil {
		t.Error("ResolveCommit(--all) = nil error")
	}
}

// A reused work tree gets exactly the new commit's files, and what a job
// did to it (files, hooks, config, alternates) does not reach the next job.
func TestRefreshReusesAndCleans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newOrigin(t)
	first := o.commit(map[string]string{"a.txt": "one", "gone.txt": "x"})
	second := o.commit(map[string]string{"a.txt": "two", "b.txt": "new"}, "gone.txt")
	m := NewMirror(filepath.Join(t.TempDir(), "m.git"), o.dir)
	if err := m.Fetch(ctx, second); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ws")
	if err := m.Refresh(ctx, first, dir); err != nil {
		t.Fatal(err)
	}
	// What a job might leave behind.
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("edited"), 0o644)
	os.WriteFile(filepath.Join(dir, "untracked.o"), []byte("junk"), 0o644)
	os.MkdirAll(filepath.Join(dir, ".git", "hooks"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "hooks", "post-checkout"), []byte("#!/bin/sh\ntouch \"$PWD/hook-ran\"\n"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "objects", "info", "alternates"), []byte("/nonexistent/objects\n"), 0o644)
	if err := m.Clean(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(ctx, second, dir); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.txt": "two", "b.txt": "new"}
	if diff := cmp.Diff(want, workTree(t, dir)); diff != "" {
		t.Errorf("work tree after Refresh (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, "hook-ran")); err == nil {
		t.Error("a hook left by the previous job ran")
	}
}

// TestFetchWhileFetching: many callers fetch the same new commit at once
// and read a file of it, as the webhooks of a push storm do; each must
// find the file whole, never a commit whose tree a running fetch has not
// written yet. Each round commits several files, so that the fetch
// unpacks loose objects one at a time.
func TestFetchWhileFetching(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	m := NewMirrors(t.TempDir()).Get("acme/web", o.dir)
	for round := range 15 {
		files := map[string]string{".gantry.yml": fmt.Sprintf("round %d\n", round)}
		for i := range 20 {
			files[fmt.Sprintf("dir%d/file%d", i%5, i)] = fmt.Sprintf("%d %d\n", round, i)
		}
		c := o.commit(files)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				// Spread over the time a fetch takes, so that some ask while
				// one runs.
				time.Sleep(time.Duration(i) * 2 * time.Millisecond)
				if err := m.Fetch(t.Context(), c); err != nil {
					errs <- err
					return
				}
				data, err := m.ReadFile(t.Context(), c, ".gantry.yml")
				if err == nil && string(data) != files[".gantry.yml"] {
					err = fmt.Errorf("read %q", data)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func TestDefaultBranch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	o := newOrigin(t)
	o.commit(map[string]string{"a.txt": "one"})
	if got, err := DefaultBranch(ctx, o.dir); err != nil || got != "main" {
		t.Errorf("DefaultBranch(origin on main) = %q, %v; want main", got, err)
	}
	o.git("branch", "-m", "main", "trunk")
	if got, err := DefaultBranch(ctx, o.dir); err != nil || got != "trunk" {
		t.Errorf("DefaultBranch(origin on trunk) = %q, %v; want trunk", got, err)
	}
	empty := newOrigin(t)
	if got, err := DefaultBranch(ctx, empty.dir); err != nil || got != "" {
		t.Errorf("DefaultBranch(empty repository) = %q, %v; want none and no error", got, err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := DefaultBranch(ctx, missing); err == nil || !strings.Contains(err.Error(), "does not appear to be a git repository") {
		t.Errorf("DefaultBranch(missing) = %v, want git's reason", err)
	}
	// Credentials never reach the error. (A port nothing listens on: no
	// traffic leaves the machine.)
	if _, err := DefaultBranch(ctx, "http://user:s3cret-token@127.0.0.1:1/acme/app.git"); err == nil || strings.Contains(err.Error(), "s3cret-token") {
		t.Errorf("DefaultBranch(with credentials) = %v, want an error without them", err)
	}
}

// The probe asks the URL alone: run inside a repository, it does not take
// that repository's remote names or config.
func TestDefaultBranchIgnoresTheWorkingDirectory(t *testing.T) {
	o := newOrigin(t)
	o.commit(map[string]string{"a.txt": "one"})
	o.git("branch", "-m", "main", "trunk")
	here := newOrigin(t)
	here.git("remote", "add", "prod", o.dir)
	t.Chdir(here.dir)
	if got, err := DefaultBranch(t.Context(), "prod"); err == nil {
		t.Errorf("DefaultBranch(prod) inside a repository with a remote prod = %q, want an error: prod is no URL", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := DefaultBranch(ctx, o.dir); err == nil || !strings.Contains(err.Error(), "no answer in time") {
		t.Errorf("DefaultBranch past its deadline = %v, want no answer in time", err)
	}
}
