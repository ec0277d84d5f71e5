package api

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gantry-ci/gantry/internal/artifact"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

// Artifacts travel as the bodies of their requests, never inside JSON:
// an agent PUTs a file to /api/v1/agent/jobs/{id}/artifacts?path=P with
// the lease in headers, and GETs a release's file for a deployment from
// /api/v1/agent/jobs/{id}/artifacts/{artifact}; people GET
// /api/v1/builds/{id}/artifacts/{path...}. Every answer with bytes names
// their recorded SHA-256 in a header, and the reader checks it.
const (
	headerBuild  = "Gantry-Build"
	headerToken  = "Gantry-Lease-Token"
	headerKey    = "Gantry-Lease-Key"
	headerSHA256 = "Gantry-Artifact-SHA256"
	headerMode   = "Gantry-Artifact-Mode"
	// artifactIdle is how long an upload may send nothing before the
	// server gives up on it; the server's read timeout does not apply.
	artifactIdle = time.Minute
)

// Artifact is an artifact as the API shows it.
type Artifact struct {
	BuildID int64  `json:"build_id"`
	Job     string `json:"job"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	// Mode is the file's permission bits, in octal ("0755").
	Mode      string    `json:"mode"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// ArtifactOf converts a stored artifact.
func ArtifactOf(a *store.Artifact) Artifact {
	return Artifact{BuildID: a.BuildID, Job: a.Job, Path: a.Path, Size: a.Size, Mode: fmt.Sprintf("%04o", a.Mode),
		SHA256: a.SHA256, CreatedAt: a.CreatedAt.UTC()}
}

func (h *Handler) registerArtifacts(mux *http.ServeMux, viewer func(scope) rule) {
	h.route(mux, "GET /api/v1/builds/{id}/artifacts", viewer(buildPath), h.listArtifacts)
	h.route(mux, "GET /api/v1/builds/{id}/artifacts/{path...}", viewer(buildPath), h.getArtifact)
	agentRoute := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, tok *store.Token) error) {
		mux.Handle(pattern, h.adaptKind(store.TokenAgent, fn))
	}
	agentRoute("PUT /api/v1/agent/jobs/{id}/artifacts", h.agentPutArtifact)
	agentRoute("GET /api/v1/agent/jobs/{id}/artifacts/{artifact}", h.agentGetArtifact)
}

func (h *Handler) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	arts, err := h.Store.Artifacts(r.Context(), id)
	if err != nil {
		return err
	}
	return writeList(w, arts, ArtifactOf)
}

func (h *Handler) getArtifact(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	path := r.PathValue("path")
	arts, err := h.Store.Artifacts(r.Context(), id)
	if err != nil {
		return err
	}
	for _, a := range arts {
		if a.Path != path {
			continue
		}
		if h.Artifacts == nil {
			return fmt.Errorf("artifact %s of build %d: %w", path, id, queue.ErrNoArtifacts)
		}
		f, err := h.Artifacts.Open(a.SHA256)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("artifact %s of build %d: its bytes are not on this server: %w", path, id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		return sendArtifact(w, f, a.SHA256, a.Size, a.Mode)
	}
	return fmt.Errorf("build %d has no artifact %q: %w", id, path, store.ErrNotFound)
}

// sendArtifact answers with the bytes of r, naming the digest and mode
// the record gives them, when given.
func sendArtifact(w http.ResponseWriter, r io.Reader, digest string, size int64, mode uint32) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	if digest != "" {
		w.Header().Set(headerSHA256, digest)
		w.Header().Set(headerMode, fmt.Sprintf("%04o", mode))
	}
	if f, ok := r.(*os.File); ok {
		if info, err := f.Stat(); err == nil {
			size = info.Size() // what is sent; the reader checks it
		}
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	_, err := io.Copy(w, r)
	return err
}

// agentLease reads and checks the lease an agent's artifact call names in
// its headers.
func agentLease(r *http.Request, tok *store.Token) (*queue.Assignment, error) {
	jobID, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || jobID <= 0 {
		return nil, badRequestf("job ID %q: want a positive number", r.PathValue("id"))
	}
	buildID, err1 := strconv.ParseInt(r.Header.Get(headerBuild), 10, 64)
	token, err2 := strconv.ParseInt(r.Header.Get(headerToken), 10, 64)
	if err1 != nil || err2 != nil {
		return nil, badRequestf("headers %s and %s: want the lease's build ID and token", headerBuild, headerToken)
	}
	if !hmac.Equal([]byte(r.Header.Get(headerKey)), []byte(leaseKey(tok, jobID, token))) {
		return nil, fmt.Errorf("job %d: %w: not leased to this agent token", jobID, store.ErrStaleLease)
	}
	return &queue.Assignment{BuildID: buildID, JobID: jobID, Token: token}, nil
}

// DefaultMaxArtifactSize is the most bytes one artifact may have unless
// the server says otherwise (--artifact-max-size): a bound on what one
// agent token can write to the server's disk at once.
const DefaultMaxArtifactSize = 4 << 30

func (h *Handler) agentPutArtifact(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
	a, err := agentLease(r, tok)
	if err != nil {
		return err
	}
	path, digest := r.URL.Query().Get("path"), r.Header.Get(headerSHA256)
	if !artifact.ValidPath(path) {
		return badRequestf("artifact path %q: want a relative path with slashes, inside the workspace", path)
	}
	if !artifact.ValidDigest(digest) {
		return badRequestf("header %s %q: want the file's SHA-256, 64 lowercase hex digits", headerSHA256, digest)
	}
	mode, err := strconv.ParseUint(r.Header.Get(headerMode), 8, 32)
	if err != nil || mode > 0o777 {
		return badRequestf("header %s %q: want permission bits in octal, such as 0755", headerMode, r.Header.Get(headerMode))
	}
	limit := h.MaxArtifactSize
	if limit <= 0 {
		limit = DefaultMaxArtifactSize
	}
	if r.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	body := &idleReader{r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w), idle: artifactIdle}
	err = h.Queue.PutArtifact(r.Context(), a, path, uint32(mode), digest, body)
	switch {
	case errors.Is(err, artifact.ErrDigest):
		return badRequestf("artifact %s: %v", path, err)
	case errors.Is(err, store.ErrConflict):
		// Not a 409: to an agent, that says its lease is gone.
		return badRequestf("artifact %s: another job of build %d has an artifact at that path", path, a.BuildID)
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) agentGetArtifact(w http.ResponseWriter, r *http.Request, tok *store.Token) error {
	a, err := agentLease(r, tok)
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("artifact"), 10, 64)
	if err != nil || id <= 0 {
		return badRequestf("artifact ID %q: want a positive number", r.PathValue("artifact"))
	}
	rc, err := h.Queue.OpenArtifact(r.Context(), a, queue.ArtifactRef{ID: id})
	if err != nil {
		return err
	}
	defer rc.Close()
	return sendArtifact(w, rc, "", 0, 0)
}

// idleReader reads an upload, pushing the connection's read deadline
// forward before each read: a large file may take as long as it needs, a
// stalled one is dropped after idle.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.rc.SetReadDeadline(time.Now().Add(r.idle))
	return r.r.Read(p)
}
