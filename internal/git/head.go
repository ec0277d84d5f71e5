// Package git reads what Gantry needs to know about a git checkout.
//
// Head reads .git directly rather than running the git CLI: `gantry run`
// pays for every millisecond of its start, and two git processes cost more
// than the whole rest of it. Anything unusual (a ref in a reftable, say)
// falls back to the CLI.
package git

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Head is the state of a checkout.
type Head struct {
	// Root is the top directory of the work tree.
	Root string
	// Branch is the checked-out branch, empty on a detached HEAD.
	Branch string
	// Commit is the full hash of HEAD, empty in a repository with no commits.
	Commit string
}

// ErrNotRepo means the directory is not inside a git work tree.
var ErrNotRepo = errors.New("not inside a git work tree")

// FindRoot returns the top of the work tree that holds dir, and its git dir.
func FindRoot(dir string) (root, gitDir string, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	for d := dir; ; {
		p := filepath.Join(d, ".git")
		fi, err := os.Stat(p)
		if err == nil {
			if fi.IsDir() {
				return d, p, nil
			}
			// A worktree or submodule: ".git" is a file "gitdir: PATH".
			b, err := os.ReadFile(p)
			if err != nil {
				return "", "", err
			}
			g, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
			if !ok {
				return "", "", fmt.Errorf("%s: not a gitdir link", p)
			}
			if !filepath.IsAbs(g) {
				g = filepath.Join(d, g)
			}
			return d, g, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", "", fmt.Errorf("%s: %w", dir, ErrNotRepo)
		}
		d = parent
	}
}

// ReadHead returns the branch and commit checked out in the work tree that
// holds dir.
func ReadHead(dir string) (Head, error) {
	root, gitDir, err := FindRoot(dir)
	if err != nil {
		return Head{}, err
	}
	h := Head{Root: root}
	b, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return Head{}, fmt.Errorf("read HEAD: %w", err)
	}
	head := strings.TrimSpace(string(b))
	ref, isRef := strings.CutPrefix(head, "ref: ")
	if !isRef {
		h.Commit = head
		return h, nil
	}
	h.Branch = strings.TrimPrefix(ref, "refs/heads/")
	common := gitDir
	if c, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common = strings.TrimSpace(string(c))
		if !filepath.IsAbs(common) {
			common = filepath.Join(gitDir, common)
		}
	}
	if c, ok := readRef(gitDir, common, ref); ok {
		h.Commit = c
		return h, nil
	}
	if _, err := os.Stat(filepath.Join(common, "reftable")); err == nil {
		return cliHead(root, h)
	}
	return h, nil // an unborn branch: no commits yet
}

func readRef(gitDir, common, ref string) (string, bool) {
	for _, d := range []string{gitDir, common} {
		if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(ref))); err == nil {
			return strings.TrimSpace(string(b)), true
		}
	}
	f, err := os.Open(filepath.Join(common, "packed-refs"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	suffix := []byte(" " + ref)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasSuffix(line, suffix) && len(line) > len(suffix) {
			return string(line[:len(line)-len(suffix)]), true
		}
	}
	return "", false
}

func cliHead(root string, h Head) (Head, error) {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return h, nil
	}
	h.Commit = strings.TrimSpace(string(out))
	return h, nil
}
