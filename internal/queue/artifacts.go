package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"

	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/store"
)

// ArtifactRef is an artifact of the release a deployment deploys, which
// the agent places in the workspace before the first step.
type ArtifactRef struct {
	ID     int64  `json:"id"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
	SHA256 string `json:"sha256"`
}

// ArtifactFile is a file of a passed job to upload as an artifact.
type ArtifactFile struct {
	// Path is where it is in the workspace: relative, with slashes.
	Path   string
	Size   int64
	Mode   uint32
	SHA256 string
	// Open opens the file, once per try.
	Open func() (io.ReadCloser, error)
}

// ErrNoArtifacts: the server was started without an artifact store.
var ErrNoArtifacts = errors.New("this server keeps no artifacts")

// addArtifacts tells the agent of a deployment's job which artifacts to
// place: those of the release it deploys.
func (d *Dispatcher) addArtifacts(ctx context.Context, b *store.Build, a *Assignment) error {
	if b.Event != plan.EventDeploy {
		return nil
	}
	refs, err := d.releaseArtifacts(ctx, b.ID)
	if err != nil {
		return fmt.Errorf("the artifacts of the release to deploy: %w", err)
	}
	a.Artifacts = refs
	return nil
}

// releaseArtifacts lists the artifacts of the release the deployment
// build buildID deploys.
func (d *Dispatcher) releaseArtifacts(ctx context.Context, buildID int64) ([]ArtifactRef, error) {
	dep, err := d.store.DeploymentOfBuild(ctx, buildID)
	if err != nil {
		return nil, err
	}
	rel, err := d.store.ReleaseByID(ctx, dep.ReleaseID)
	if err != nil {
		return nil, err
	}
	refs := []ArtifactRef{}
	for _, x := range rel.Artifacts {
		refs = append(refs, ArtifactRef{ID: x.ID, Path: x.Path, Size: x.Size, Mode: x.Mode, SHA256: x.SHA256})
	}
	return refs, nil
}

// UploadArtifact stores a file of a job that passed, under the job's
// lease: its bytes in the artifact store (checked against f.SHA256 on the
// way in), its record in the store. store.ErrStaleLease means the job was
// taken from the agent; the bytes, unrecorded, go at the next sweep.
func (d *Dispatcher) UploadArtifact(ctx context.Context, a *Assignment, f *ArtifactFile) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return d.PutArtifact(ctx, a, f.Path, f.Mode, f.SHA256, rc)
}

// PutArtifact is UploadArtifact with the bytes in r.
func (d *Dispatcher) PutArtifact(ctx context.Context, a *Assignment, path string, mode uint32, digest string, r io.Reader) error {
	if d.opts.Artifacts == nil {
		return ErrNoArtifacts
	}
	if !artifact.ValidPath(path) {
		return fmt.Errorf("artifact path %q: want a relative path with slashes, inside the workspace", path)
	}
	if !artifact.ValidDigest(digest) {
		return fmt.Errorf("artifact %s: SHA-256 %q: want 64 lowercase hex digits", path, digest)
	}
	// Refuse before reading a byte when the lease is gone.
	if err := d.store.Renew(ctx, a.JobID, a.Token, d.opts.LeaseTTL); err != nil {
		return err
	}
	_, _, err := d.opts.Artifacts.Put(r, digest, func(sum string, size int64) error {
		return d.store.AddArtifact(ctx, &store.Artifact{BuildID: a.BuildID, JobID: a.JobID, Path: path, Size: size,
			Mode: mode & 0o777, SHA256: sum}, a.Token)
	})
	return err
}

// OpenArtifact opens artifact ref.ID of the release a deployment's job,
// running under its lease, deploys (only the ID of ref counts). The agent
// checks the bytes against the recorded SHA-256; the server sends them as
// they are on its disk.
func (d *Dispatcher) OpenArtifact(ctx context.Context, a *Assignment, ref ArtifactRef) (io.ReadCloser, error) {
	if d.opts.Artifacts == nil {
		return nil, ErrNoArtifacts
	}
	if err := d.store.Renew(ctx, a.JobID, a.Token, d.opts.LeaseTTL); err != nil {
		return nil, err
	}
	// The lease names the job; the build ID comes from the caller. The
	// release whose artifacts may be read is that of the job's own build,
	// never of another build the caller names.
	b, err := d.store.Build(ctx, a.BuildID)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(b.Jobs, func(j *store.Job) bool { return j.ID == a.JobID }) {
		return nil, fmt.Errorf("job %d is not of build %d: %w", a.JobID, a.BuildID, store.ErrStaleLease)
	}
	refs, err := d.releaseArtifacts(ctx, a.BuildID)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if r.ID != ref.ID {
			continue
		}
		f, err := d.opts.Artifacts.Open(r.SHA256)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("artifact %s (sha256 %s): its bytes are not on this server: %w", r.Path, r.SHA256, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("artifact %d is not of the release this job deploys: %w", ref.ID, store.ErrNotFound)
}
