package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

func (r *Remote) lease(a *queue.Assignment) api.LeaseRef {
	r.mu.Lock()
	defer r.mu.Unlock()
	return api.LeaseRef{BuildID: a.BuildID, JobID: a.JobID, Token: a.Token, Key: r.keys[a.JobID]}
}

// retry runs one try of an artifact call until it succeeds, fails for
// good, or patience runs out, as call does for JSON calls: 401 is
// ErrRefused, 409 store.ErrStaleLease, other answers below 500 final;
// transport errors and 5xx are tried again, on the next server when one
// could not be reached.
func (r *Remote) retry(ctx context.Context, patience time.Duration, try func(c *api.Client) error) error {
	start := time.Now()
	wait := 100 * time.Millisecond
	for {
		c, i := r.client()
		err := try(c)
		var se *api.StatusError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
			return fmt.Errorf("%w: %s", ErrRefused, se.Message)
		case errors.As(err, &se) && se.Status == http.StatusConflict:
			return fmt.Errorf("%s: %w", se.Message, store.ErrStaleLease)
		case errors.As(err, &se) && se.Status < 500:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if se == nil {
			r.failover(i, err)
		}
		if time.Since(start)+wait > patience {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// UploadArtifact sends a file of a passed job, opening it afresh for each
// try.
func (r *Remote) UploadArtifact(ctx context.Context, a *queue.Assignment, f *queue.ArtifactFile) error {
	l := r.lease(a)
	return r.retry(ctx, a.LeaseTTL, func(c *api.Client) error {
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = c.PutArtifact(ctx, l, f.Path, f.Mode, f.SHA256, f.Size, rc)
		return err
	})
}

// OpenArtifact opens an artifact of the release a deployment's job
// deploys. The caller checks what it reads.
func (r *Remote) OpenArtifact(ctx context.Context, a *queue.Assignment, ref queue.ArtifactRef) (io.ReadCloser, error) {
	l := r.lease(a)
	var body io.ReadCloser
	err := r.retry(ctx, a.LeaseTTL, func(c *api.Client) error {
		var err error
		body, err = c.AgentArtifact(ctx, l, ref.ID)
		return err
	})
	return body, err
}
