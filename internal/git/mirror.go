package git

// The mirror: one bare repository per forge repo, shared by every build of
// it on this machine, so that a build fetches only what changed since the
// last one and a second build of a known commit never touches the network.
//
// Layout on disk (Mirrors, under its root):
//
//	ROOT/owner%2Fname/            bare repository, no remote in its config
//	    refs/heads/*, refs/tags/*     as on the forge (fetched with --prune)
//	    refs/pull/*/head              GitHub pull requests, when published
//	    refs/merge-requests/*/head    GitLab merge requests, when published
//	    refs/gantry/commits/SHA       commits fetched by hash, kept reachable
//
// The URL lives in the Mirror value, not in the repository's config: a token
// embedded in it is never written to disk and can be rotated by handing the
// next Get a new URL.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrCommitNotFound means a commit is not in the mirror, or, from Fetch, that
// the forge does not have it either (a bad hash, or history force-pushed
// away). It is bad input, not a broken machine: retrying will not help.
var ErrCommitNotFound = errors.New("commit not found")

// Mirror is a cached bare clone of one repository, from which builds read
// their pipeline file and check out their work trees.
//
// All methods are safe for concurrent use. Fetches of one Mirror are
// serialized (git would trip over its own ref locks otherwise); reads
// (ReadFile, Checkout, ChangedPaths, and Fetch of a commit already present)
// take no lock once the mirror exists, and run beside each other and beside
// a fetch: git writes objects before it moves refs, and the mirror is never
// garbage collected (gc.auto is 0), so a reader never sees an object vanish.
// ReadFile and Fetch's check for the commit ask one long-running git
// cat-file --batch of the mirror, one question at a time, each a fraction
// of a millisecond (see catFile).
//
// A directory belongs to one Mirror value in one process: use Mirrors to
// share them. Two processes fetching into one directory may fail on git's
// ref locks; they do not corrupt it.
type Mirror struct {
	dir string
	env []string

	// fetch is a one-slot semaphore around fetches, a channel rather than
	// a mutex so that waiting for another fetch honours ctx.
	fetch chan struct{}

	initMu sync.Mutex
	ready  bool // dir holds a repository; guarded by initMu

	urlMu sync.Mutex
	url   string // guarded by urlMu

	// objects answers has and ReadFile without a git process per call.
	objects *catFile
}

// NewMirror returns the mirror of the repository at url, kept in dir. Nothing
// happens on disk until the first call; dir is created then, as a bare
// repository, unless it already holds one.
//
// url is anything git fetch takes: https (credentials may be embedded as
// user:token@; they appear in no error and are never written to disk), ssh,
// a file:// URL or a local path.
func NewMirror(dir, url string) *Mirror {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	env := gitEnv()
	return &Mirror{dir: dir, url: url, env: env, fetch: make(chan struct{}, 1),
		objects: &catFile{dir: dir, env: env, idle: catFileIdle}}
}

// Dir returns the mirror's directory. Work trees made by Checkout refer to
// its objects by this absolute path, so a container that runs git in such a
// work tree must see the mirror at the same path.
func (m *Mirror) Dir() string { return m.dir }

// String describes the mirror with its URL's credentials removed, so that
// logging a Mirror cannot leak them.
func (m *Mirror) String() string {
	return "mirror of " + redactURL(m.currentURL()) + " at " + m.dir
}

// currentURL returns the URL the mirror fetches from, credentials and all.
func (m *Mirror) currentURL() string {
	m.urlMu.Lock()
	defer m.urlMu.Unlock()
	return m.url
}

func (m *Mirror) setURL(u string) {
	m.urlMu.Lock()
	defer m.urlMu.Unlock()
	m.url = u
}

// Fetch makes sure commit (a full hash) is in the mirror.
//
// If it already is, Fetch asks the mirror's cat-file --batch process and
// returns: no network, and no git process started (it waits for a fetch
// of the mirror that is running, whose objects may not all be written).
// Otherwise it fetches every branch, tag and pull/merge request head from the
// forge, pruning what the forge deleted, and if the commit is still missing
// asks for it by hash (it may be reachable only from a ref Gantry does not
// mirror). A commit the forge does not have is an error wrapping
// ErrCommitNotFound; an error reaching the forge is not.
func (m *Mirror) Fetch(ctx context.Context, commit string) error {
	c, err := checkCommit(commit)
	if err != nil {
		return fmt.Errorf("fetch %q: %w", commit, err)
	}
	if err := m.init(ctx); err != nil {
		return fmt.Errorf("fetch %s: %w", c, err)
	}
	// A commit is whole only when no fetch is running: a small fetch
	// unpacks loose objects in pack order, commits before their trees and
	// blobs, so a commit seen during one may lack its files for a while.
	// So the check is made under the fetch lock, which costs a wait only
	// while a fetch runs (and that fetch may bring the commit).
	select {
	case m.fetch <- struct{}{}:
		defer func() { <-m.fetch }()
	case <-ctx.Done():
		return fmt.Errorf("fetch %s: %w", c, context.Cause(ctx))
	}
	if m.has(ctx, c) {
		return nil
	}
	u := m.currentURL()
	if err := m.fetchAll(ctx, u); err != nil {
		return fmt.Errorf("fetch %s from %s: %w", c, redactURL(u), err)
	}
	if m.has(ctx, c) {
		return nil
	}
	// Not on any mirrored ref: ask for it by hash (protocol v2 servers, and
	// GitHub, GitLab and Gitea, serve any reachable commit), and keep a ref
	// to it so that it stays in the mirror.
	_, err = m.run(ctx, "", "--git-dir="+m.dir, "fetch", "--quiet", "--no-tags", "--", u, "+"+c+":refs/gantry/commits/"+c)
	if err == nil && m.has(ctx, c) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("fetch %s from %s: %w", c, redactURL(u), context.Cause(ctx))
	}
	if err == nil {
		err = errors.New("git: fetched object is not a commit")
	}
	return fmt.Errorf("fetch %s from %s: %w (%w)", c, redactURL(u), ErrCommitNotFound, err)
}

// fetchAll fetches every branch and tag, and the pull/merge request heads
// of the forges that publish them (a glob that matches nothing is no
// error): a commit of a pull request from a fork is reachable only from
// those. The caller holds m.fetch.
func (m *Mirror) fetchAll(ctx context.Context, u string) error {
	_, err := m.run(ctx, "", "--git-dir="+m.dir, "fetch", "--quiet", "--prune", "--no-tags", "--", u,
		"+refs/heads/*:refs/heads/*",
		"+refs/tags/*:refs/tags/*",
		"+refs/pull/*/head:refs/pull/*/head",                     // GitHub, Gitea
		"+refs/merge-requests/*/head:refs/merge-requests/*/head", // GitLab
	)
	return err
}

// refetch fetches every mirrored ref under the fetch lock. what names the
// operation in errors.
func (m *Mirror) refetch(ctx context.Context, what string) error {
	select {
	case m.fetch <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	u := m.currentURL()
	err := m.fetchAll(ctx, u)
	<-m.fetch
	if err != nil {
		return fmt.Errorf("%s from %s: %w", what, redactURL(u), err)
	}
	return nil
}

// Local returns the commit a ref (refs/heads/NAME, refs/tags/NAME) points
// at in the mirror as last fetched, without asking the forge: what every
// push's fetch brought.
func (m *Mirror) Local(ctx context.Context, ref string) (string, bool) {
	if !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/") || strings.Contains(ref, "..") {
		return "", false
	}
	if err := m.init(ctx); err != nil {
		return "", false
	}
	return m.revParse(ctx, ref)
}

// IsAncestor reports whether commit is head or one of its ancestors: both
// must be in the mirror (see Fetch).
func (m *Mirror) IsAncestor(ctx context.Context, commit, head string) (bool, error) {
	c, err := checkCommit(commit)
	if err != nil {
		return false, err
	}
	h, err := checkCommit(head)
	if err != nil {
		return false, err
	}
	_, err = m.run(ctx, "", "--git-dir="+m.dir, "merge-base", "--is-ancestor", c, h)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	return err == nil, err
}

// revParse returns the commit rev names in the mirror, if any.
func (m *Mirror) revParse(ctx context.Context, rev string) (string, bool) {
	out, err := m.run(ctx, "", "--git-dir="+m.dir, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	return strings.TrimSpace(string(out)), err == nil
}

// Resolve fetches from the forge and returns the commit a branch
// (refs/heads/NAME) or tag (refs/tags/NAME) points at now. An unknown ref
// is an error wrapping ErrCommitNotFound.
func (m *Mirror) Resolve(ctx context.Context, ref string) (string, error) {
	if !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/") || strings.Contains(ref, "..") {
		return "", fmt.Errorf("resolve %q: want refs/heads/NAME or refs/tags/NAME", ref)
	}
	if err := m.init(ctx); err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	if err := m.refetch(ctx, "resolve "+ref); err != nil {
		return "", err
	}
	if c, ok := m.revParse(ctx, ref); ok {
		return c, nil
	}
	return "", fmt.Errorf("resolve %s: %w", ref, ErrCommitNotFound)
}

// ResolveCommit returns the full hash of an abbreviated one (Bitbucket
// sends pull request heads with 12 hex digits), fetching first when the
// mirror does not know it. An abbreviation that matches no commit, or
// more than one, is an error wrapping ErrCommitNotFound.
func (m *Mirror) ResolveCommit(ctx context.Context, abbrev string) (string, error) {
	if len(abbrev) < 7 || len(abbrev) > 64 || strings.Trim(strings.ToLower(abbrev), "0123456789abcdef") != "" {
		return "", fmt.Errorf("resolve commit %q: want 7 to 64 hex digits", abbrev)
	}
	if err := m.init(ctx); err != nil {
		return "", fmt.Errorf("resolve commit %s: %w", abbrev, err)
	}
	if full, ok := m.revParse(ctx, abbrev); ok {
		return full, nil
	}
	if err := m.refetch(ctx, "resolve commit "+abbrev); err != nil {
		return "", err
	}
	if full, ok := m.revParse(ctx, abbrev); ok {
		return full, nil
	}
	return "", fmt.Errorf("resolve commit %s from %s: %w (or it is ambiguous)", abbrev, redactURL(m.currentURL()), ErrCommitNotFound)
}

// ReadFile returns the content of the file at name (slash-separated, relative
// to the repository's top) in commit, which must be in the mirror (see
// Fetch). A file that commit does not have is an error wrapping
// fs.ErrNotExist; a commit the mirror does not have wraps ErrCommitNotFound.
func (m *Mirror) ReadFile(ctx context.Context, commit, name string) ([]byte, error) {
	c, err := checkCommit(commit)
	if err != nil {
		return nil, fmt.Errorf("read %s at %q: %w", name, commit, err)
	}
	if !fs.ValidPath(name) || name == "." {
		return nil, fmt.Errorf("read %q at %s: %w", name, c, fs.ErrInvalid)
	}
	if err := m.init(ctx); err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", name, c, err)
	}
	if typ, data, found, err := m.objects.object(ctx, c+":"+name); err == nil && found && typ == "blob" {
		return data, nil
	}
	// Anything else, the slow way, which says why.
	out, err := m.run(ctx, "", "--git-dir="+m.dir, "cat-file", "blob", c+":"+name)
	if err == nil {
		return out, nil
	}
	// The failure path pays for finding out why.
	switch {
	case ctx.Err() != nil:
	case !m.has(ctx, c):
		err = ErrCommitNotFound
	default:
		typ, terr := m.run(ctx, "", "--git-dir="+m.dir, "cat-file", "-t", c+":"+name)
		switch t := string(bytes.TrimSpace(typ)); {
		case terr != nil:
			err = fs.ErrNotExist
		case t == "tree":
			err = errors.New("is a directory")
		case t == "commit":
			err = errors.New("is a submodule")
		}
	}
	return nil, fmt.Errorf("read %s at %s: %w", name, c, err)
}

// Checkout makes dir a work tree of commit, which must be in the mirror (see
// Fetch), with HEAD detached at it. dir must not exist or be empty; if
// Checkout fails it leaves dir as it found it.
//
// The work tree is a clone that shares the mirror's objects (git clone
// --shared: an alternates file, no copy), so it costs the files written and
// little else. Branches are there as origin/*, and tags, so git describe
// works. It is an independent repository: what a build does to it (commit,
// tag, config, gc) does not touch the mirror. Because the mirror is never
// garbage collected, the objects it lends cannot disappear under a work
// tree; whoever prunes a mirror by hand must first remove its work trees.
//
// A container that runs git in the work tree must see the mirror at Dir():
// the alternates file names it by absolute path.
//
// Submodules are not checked out, and neither is Git LFS content (the work
// tree has the pointer files).
func (m *Mirror) Checkout(ctx context.Context, commit, dir string) (err error) {
	c, err := checkCommit(commit)
	if err != nil {
		return fmt.Errorf("checkout %q: %w", commit, err)
	}
	if err := m.init(ctx); err != nil {
		return fmt.Errorf("checkout %s: %w", c, err)
	}
	created := false
	switch ents, err := os.ReadDir(dir); {
	case errors.Is(err, fs.ErrNotExist):
		created = true
	case err != nil:
		return fmt.Errorf("checkout %s: %w", c, err)
	case len(ents) > 0:
		return fmt.Errorf("checkout %s: %s is not empty", c, dir)
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(dir)
			return
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}()
	if _, err := m.run(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", "--template=", "--", m.dir, dir); err != nil {
		return fmt.Errorf("checkout %s: %w", c, err)
	}
	if _, err := m.run(ctx, dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", c); err != nil {
		if ctx.Err() == nil && !m.has(ctx, c) {
			err = ErrCommitNotFound
		}
		return fmt.Errorf("checkout %s: %w", c, err)
	}
	return nil
}

// Refresh makes dir a work tree of commit. When dir is a work tree that
// Checkout made from this mirror for an earlier job, and Clean cleaned
// since, that is much cheaper than a new clone: only the files that differ
// are written. It first undoes what a job may have done to the clone's
// .git that would reach the next job (hooks, config, the alternates link
// to the mirror), then checks out with hooks off. When dir does not exist,
// or anything fails, it falls back to a fresh Checkout.
//
// Reuse is for jobs of one repository and one trust domain: a job on the
// local backend runs as the agent's user and could reach the mirror anyway.
func (m *Mirror) Refresh(ctx context.Context, commit, dir string) error {
	c, err := checkCommit(commit)
	if err != nil {
		return fmt.Errorf("checkout %q: %w", commit, err)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return m.Checkout(ctx, commit, dir)
	}
	if err := m.reset(ctx, c, dir); err != nil {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return fmt.Errorf("checkout %s: %w", c, rmErr)
		}
		return m.Checkout(ctx, commit, dir)
	}
	return nil
}

func (m *Mirror) reset(ctx context.Context, c, dir string) error {
	gitDir := filepath.Join(dir, ".git")
	if fi, err := os.Lstat(gitDir); err != nil || !fi.IsDir() {
		return errors.New("no .git directory")
	}
	for _, p := range []string{"hooks", "info", "index.lock", "HEAD.lock", "config.lock"} {
		os.RemoveAll(filepath.Join(gitDir, p))
	}
	alternates := filepath.Join(m.dir, "objects") + "\n"
	if err := os.WriteFile(filepath.Join(gitDir, "objects", "info", "alternates"), []byte(alternates), 0o644); err != nil {
		return err
	}
	config := "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n" +
		"[remote \"origin\"]\n\turl = " + m.dir + "\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
	if err := os.WriteFile(filepath.Join(gitDir, "config"), []byte(config), 0o644); err != nil {
		return err
	}
	_, err := m.run(ctx, dir, "-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", c)
	return err
}

// Clean removes every untracked and ignored file from a work tree after a
// job, so that the next Refresh of it starts from the tree alone. On
// failure it removes the work tree.
func (m *Mirror) Clean(ctx context.Context, dir string) error {
	if _, err := m.run(ctx, dir, "-c", "core.hooksPath=/dev/null", "clean", "--quiet", "-ffdx"); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	return nil
}

// ChangedPaths returns the paths of the files that differ between the trees
// of before and after, both in the mirror: what a push changed, for forges
// whose push payload does not list it. A rename counts as both of its
// paths. The answer is sorted, and empty but not nil when nothing changed.
//
// It returns nil and no error, meaning unknown, when before is empty or all
// zeros (a new branch), after is (a deleted branch), or before is not in the
// mirror (history force-pushed over before Gantry saw it).
func (m *Mirror) ChangedPaths(ctx context.Context, before, after string) ([]string, error) {
	if isNullCommit(before) || isNullCommit(after) {
		return nil, nil
	}
	b, err := checkCommit(before)
	if err != nil {
		return nil, fmt.Errorf("changed paths %q..%q: %w", before, after, err)
	}
	a, err := checkCommit(after)
	if err != nil {
		return nil, fmt.Errorf("changed paths %q..%q: %w", before, after, err)
	}
	if err := m.init(ctx); err != nil {
		return nil, fmt.Errorf("changed paths %s..%s: %w", b, a, err)
	}
	out, err := m.run(ctx, "", "--git-dir="+m.dir, "diff-tree", "-r", "-z", "--name-only", "--no-renames", b, a)
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case !m.has(ctx, a):
			err = fmt.Errorf("%s: %w", a, ErrCommitNotFound)
		case !m.has(ctx, b):
			return nil, nil
		}
		return nil, fmt.Errorf("changed paths %s..%s: %w", b, a, err)
	}
	paths := []string{}
	for p := range strings.SplitSeq(string(out), "\x00") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// init makes m.dir a bare repository unless it already is one. It builds the
// repository beside dir and renames it into place, so that neither a crash
// nor another process ever sees half of one.
func (m *Mirror) init(ctx context.Context) error {
	m.initMu.Lock()
	defer m.initMu.Unlock()
	if m.ready {
		return nil
	}
	if isRepo(m.dir) {
		m.ready = true
		return nil
	}
	parent := filepath.Dir(m.dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("init mirror: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(m.dir)+".init-")
	if err != nil {
		return fmt.Errorf("init mirror: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	cmds := [][]string{
		{"-c", "init.defaultBranch=main", "init", "--quiet", "--bare", "--template=", tmp},
		// No surprise gc pauses on the hot path, and no pruning of objects
		// that Checkout's work trees borrow.
		{"--git-dir=" + tmp, "config", "gc.auto", "0"},
		{"--git-dir=" + tmp, "config", "maintenance.auto", "false"},
	}
	for _, args := range cmds {
		if _, err := m.run(ctx, "", args...); err != nil {
			return fmt.Errorf("init mirror: %w", err)
		}
	}
	if err := os.Rename(tmp, m.dir); err != nil {
		if !isRepo(m.dir) { // else another process won the race
			return fmt.Errorf("init mirror: %w", err)
		}
	}
	m.ready = true
	return nil
}

func isRepo(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "HEAD"))
	return err == nil
}

// has reports whether commit is in the mirror. Any failure counts as no.
// The batch process answers as a git process of its own would; when it
// cannot answer, one is run.
func (m *Mirror) has(ctx context.Context, commit string) bool {
	if typ, _, found, err := m.objects.object(ctx, commit+"^{commit}"); err == nil {
		return found && typ == "commit"
	}
	_, err := m.run(ctx, "", "--git-dir="+m.dir, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// run runs git with args (in dir, if not empty) and returns its standard
// output. The error says what git said, with credentials removed (see
// causeLine).
func (m *Mirror) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = m.env
	// Once git has exited or been killed, its output has this long to drain:
	// an ssh or remote helper left behind by a killed git may hold the pipes.
	// Generous, because a busy machine can stall the copying goroutines.
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	stderr := &capWriter{max: 64 << 10}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("git: %w", context.Cause(ctx))
	}
	line := causeLine(stderr.buf.String())
	if line == "" {
		return nil, fmt.Errorf("git: %w", err)
	}
	return nil, fmt.Errorf("git: %s", m.redact(line))
}

// causeLine picks the line of git's standard error that says what went
// wrong: the first that starts with "fatal:" or "error:" (later ones tend to
// be "the remote end hung up unexpectedly"), except that the generic "Could
// not read from remote repository" gives way to the line before it, which is
// ssh's reason; with neither, the last line.
func causeLine(stderr string) string {
	prev := ""
	for l := range strings.Lines(stderr) {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "fatal:") || strings.HasPrefix(l, "error:") {
			if l == "fatal: Could not read from remote repository." && prev != "" {
				return prev
			}
			return l
		}
		prev = l
	}
	return prev
}

// capWriter keeps the first max bytes written to it.
type capWriter struct {
	buf bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// gitEnv is the environment of every git that Gantry runs: the process's,
// without the GIT_* variables that could point git at another repository,
// and with nothing from the user's or the system's git config (a
// core.autocrlf or url.insteadOf there would change what a build sees), no
// prompts, and messages in English so that errors read the same everywhere.
// Variables that say how to reach a forge (GIT_SSH_COMMAND, GIT_ASKPASS, the
// TLS ones) are kept.
func gitEnv() []string {
	keep := map[string]bool{
		"GIT_SSH": true, "GIT_SSH_COMMAND": true, "GIT_SSH_VARIANT": true,
		"GIT_ASKPASS": true, "GIT_PROXY_COMMAND": true, "GIT_EXEC_PATH": true,
		"GIT_SSL_CAINFO": true, "GIT_SSL_CAPATH": true, "GIT_SSL_NO_VERIFY": true,
	}
	var env []string
	ssh := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_") && !keep[k]:
			continue
		case k == "HOME" || k == "XDG_CONFIG_HOME" || k == "LC_ALL" || k == "LANG" || k == "LANGUAGE":
			continue
		case k == "GIT_SSH" || k == "GIT_SSH_COMMAND":
			ssh = true
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"HOME="+os.DevNull,
		"XDG_CONFIG_HOME="+os.DevNull,
		"LC_ALL=C",
	)
	if !ssh {
		// ssh asks on the terminal, not through git: make it fail instead.
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return env
}

// checkCommit returns commit in lower case if it is a full SHA-1 or SHA-256
// hash. Nothing else reaches git's command line: not a branch name, which
// would move, nor anything that git could take for an option.
func checkCommit(commit string) (string, error) {
	if len(commit) != 40 && len(commit) != 64 {
		return "", errors.New("not a full commit hash")
	}
	for _, r := range commit {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return "", errors.New("not a full commit hash")
		}
	}
	return strings.ToLower(commit), nil
}

func isNullCommit(c string) bool {
	return strings.Trim(c, "0") == ""
}

// redact removes the credentials of m's URL from s, wherever git put them.
func (m *Mirror) redact(s string) string {
	raw := m.currentURL()
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return s
	}
	s = strings.ReplaceAll(s, raw, redactURL(raw))
	s = strings.ReplaceAll(s, u.User.String()+"@", "***@")
	if p, ok := u.User.Password(); ok && p != "" {
		// Wherever it appears: a short password may mangle a message,
		// which is the lesser harm.
		s = strings.ReplaceAll(s, p, "***")
	} else if secretUser(u) {
		s = strings.ReplaceAll(s, u.User.Username()+"@", "***@")
	}
	return s
}

// RedactURL returns a clone URL fit to show: see redactURL.
func RedactURL(raw string) string { return redactURL(raw) }

// redactURL returns u fit for an error or a log: a password goes, and so does
// the user name of an http URL, which may itself be a token
// (https://TOKEN@github.com/...). The user of an ssh URL (git@) stays.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw // a path, or scp-like user@host:path, which has no password
	}
	if _, ok := u.User.Password(); !ok && !secretUser(u) {
		return raw
	}
	u.User = nil
	return strings.Replace(u.String(), "//", "//***@", 1)
}

func secretUser(u *url.URL) bool {
	return u.Scheme == "http" || u.Scheme == "https"
}

// Mirrors is the set of mirrors on one machine, one per repository, under a
// root directory. It is safe for concurrent use.
type Mirrors struct {
	root string

	mu      sync.Mutex
	mirrors map[string]*Mirror // by directory name; guarded by mu
}

// NewMirrors returns the mirrors kept under root, which is created on first
// use.
func NewMirrors(root string) *Mirrors {
	return &Mirrors{root: root, mirrors: map[string]*Mirror{}}
}

// Get returns the mirror of the repository called repoName (as the forge
// names it, owner/name), fetching from url. Every call with the same name
// returns the same Mirror, which fetches from the url of the latest call: a
// token in it can be rotated.
//
// The mirror's directory is one path element under root whatever the name:
// every byte but [A-Za-z0-9_.-] is %-escaped (owner/name is owner%2Fname), a
// leading dot too (so never "." or ".."), and a name too long for a file
// system is shortened and suffixed with a hash of it.
func (ms *Mirrors) Get(repoName, url string) *Mirror {
	name := dirName(repoName)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m, ok := ms.mirrors[name]; ok {
		m.setURL(url)
		return m
	}
	m := NewMirror(filepath.Join(ms.root, name), url)
	ms.mirrors[name] = m
	return m
}

// dirName maps a repository name to a directory name, one to one but for
// names longer than a file system allows. No name maps to "~", so that is
// the empty name's.
// DirName is repo's name made safe as one path element: the name of its
// mirror's directory, and of its workspaces.
func DirName(repo string) string { return dirName(repo) }

func dirName(repo string) string {
	if repo == "" {
		return "~"
	}
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(repo); i++ {
		c := repo[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	s := b.String()
	if len(s) > 200 { // most file systems stop at 255 bytes
		sum := sha256.Sum256([]byte(repo))
		s = s[:100] + "~" + hex.EncodeToString(sum[:])
	}
	return s
}
