package agent

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
	"slices"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/console"
	"github.com/gantry-ci/gantry/internal/queue"
)

// errArtifacts marks an artifact problem that is the job's doing (a
// pattern that matches nothing, bytes that do not match their digest): the
// job fails with it, rather than errs.
type errArtifacts struct{ msg string }

func (e *errArtifacts) Error() string { return e.msg }

// collect finds the files the artifact patterns of a job match in the
// workspace ws: regular files only, a directory standing for every file
// under it. Symbolic links are not followed (one may point anywhere on
// this machine): they are reported in skipped. Every pattern must match
// at least one file.
func collect(ws string, patterns []string) (files, skipped []string, err error) {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	fsys := root.FS()
	seen := map[string]bool{}
	add := func(p string) int {
		if !seen[p] {
			seen[p] = true
			files = append(files, p)
		}
		return 1
	}
	for _, pat := range patterns {
		matches, err := doublestar.Glob(fsys, pat, doublestar.WithNoFollow())
		if err != nil {
			return nil, nil, fmt.Errorf("artifacts: %s: %w", pat, err)
		}
		found := 0
		for _, m := range matches {
			info, err := root.Lstat(m)
			if err != nil {
				return nil, nil, fmt.Errorf("artifacts: %s: %w", m, err)
			}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				skipped = append(skipped, m)
			case info.Mode().IsRegular():
				found += add(m)
			case info.IsDir():
				err := fs.WalkDir(fsys, m, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					switch {
					case d.Type()&fs.ModeSymlink != 0:
						skipped = append(skipped, p)
					case d.Type().IsRegular():
						found += add(p)
					}
					return nil
				})
				if err != nil {
					return nil, nil, fmt.Errorf("artifacts: %s: %w", m, err)
				}
			}
		}
		if found == 0 {
			return nil, nil, &errArtifacts{fmt.Sprintf("artifacts: %q matches no file in the workspace", pat)}
		}
	}
	for _, f := range files {
		if !artifact.ValidPath(f) {
			return nil, nil, &errArtifacts{fmt.Sprintf("artifacts: %q cannot be an artifact's path", f)}
		}
	}
	slices.Sort(files)
	slices.Sort(skipped)
	return files, slices.Compact(skipped), nil
}

// upload sends the files the job's artifact patterns match to the server,
// each hashed first; say writes a line to the job's log.
func (a *Agent) upload(ctx context.Context, as *queue.Assignment, ws string, patterns []string, say func(string)) error {
	files, skipped, err := collect(ws, patterns)
	for _, s := range skipped {
		say(fmt.Sprintf("gantry: artifact %s is a symbolic link: not uploaded", s))
	}
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(ws)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range files {
		f, err := digestFile(root, p)
		if err != nil {
			return fmt.Errorf("artifact %s: %w", p, err)
		}
		if err := a.server.UploadArtifact(ctx, as, f); err != nil {
			return fmt.Errorf("upload artifact %s: %w", p, err)
		}
		say(fmt.Sprintf("gantry: uploaded artifact %s (%s, sha256 %s)", p, console.Bytes(f.Size), f.SHA256))
	}
	return nil
}

// digestFile reads a file of root once for its size, mode and SHA-256.
func digestFile(root *os.Root, p string) (*queue.ArtifactFile, error) {
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	mode := uint32(0o644)
	if info.Mode()&0o111 != 0 {
		mode = 0o755
	}
	return &queue.ArtifactFile{Path: p, Size: n, Mode: mode, SHA256: hex.EncodeToString(h.Sum(nil)),
		Open: func() (io.ReadCloser, error) { return root.Open(p) }}, nil
}

// place puts the artifacts of the release a deployment deploys into the
// workspace, each checked against its recorded SHA-256 as it arrives: a
// file that does not match is not placed, and the job fails before its
// first step.
func (a *Agent) place(ctx context.Context, as *queue.Assignment, ws string, say func(string)) error {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, ref := range as.Artifacts {
		if !artifact.ValidPath(ref.Path) || !artifact.ValidDigest(ref.SHA256) {
			return fmt.Errorf("artifact %q (sha256 %q): not a path or digest an agent accepts", ref.Path, ref.SHA256)
		}
		if err := a.placeOne(ctx, as, root, ref); err != nil {
			return err
		}
		say(fmt.Sprintf("gantry: placed artifact %s (%s, sha256 %s, verified)", ref.Path, console.Bytes(ref.Size), ref.SHA256))
	}
	return nil
}

func (a *Agent) placeOne(ctx context.Context, as *queue.Assignment, root *os.Root, ref queue.ArtifactRef) error {
	if dir := path.Dir(ref.Path); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("artifact %s: %w", ref.Path, err)
		}
	}
	part := ref.Path + ".gantry-part"
	out, err := root.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	done := false
	defer func() {
		out.Close()
		if !done {
			root.Remove(part)
		}
	}()
	rc, err := a.server.OpenArtifact(ctx, as, ref)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	_, err = artifact.Verify(out, rc, ref.SHA256)
	rc.Close()
	if errors.Is(err, artifact.ErrDigest) {
		return &errArtifacts{fmt.Sprintf("artifact %s: %v; nothing was run: a deployment runs only the bytes its release recorded", ref.Path, err)}
	}
	if err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	mode := fs.FileMode(ref.Mode & 0o777)
	if mode == 0 {
		mode = 0o644
	}
	if err := root.Chmod(part, mode); err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	if err := root.Rename(part, ref.Path); err != nil {
		return fmt.Errorf("artifact %s: %w", ref.Path, err)
	}
	done = true
	return nil
}
