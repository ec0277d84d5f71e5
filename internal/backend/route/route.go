// Package route is a Backend that sends each job to one of two backends by
// whether it names an image: jobs with JobSpec.Image go to the container
// backend (docker), the others to the host backend (local). It is how
// `gantry run` and an agent run a pipeline that mixes both.
//
// It does not decide whether docker is available: its caller does, once,
// and passes the reason when it is not, which every job with an image then
// fails with.
package route

import (
	"context"
	"errors"
	"fmt"

	"github.com/gantry-ci/gantry/internal/backend"
)

// Router is a backend.Backend over a host backend and a container backend.
type Router struct {
	host      backend.Backend
	container backend.Backend
	why       error
}

var _ backend.Backend = (*Router)(nil)

// New returns a Router that runs jobs without an image on host and jobs
// with one on container. When container is nil, unavailable says why (a
// docker.New error, which wraps backend.ErrUnavailable), and Start fails
// every job with an image with "docker is not available: <why>".
func New(host, container backend.Backend, unavailable error) *Router {
	if container == nil && unavailable == nil {
		unavailable = backend.ErrUnavailable
	}
	return &Router{host: host, container: container, why: unavailable}
}

// Name is the host backend's name, "+", and the container backend's:
// "local+docker" (docker also when it is not available).
func (r *Router) Name() string {
	if r.container == nil {
		return r.host.Name() + "+docker"
	}
	return r.host.Name() + "+" + r.container.Name()
}

// Start starts spec on the backend its image calls for.
func (r *Router) Start(ctx context.Context, spec backend.JobSpec) (backend.Job, error) {
	if spec.Image == "" {
		return r.host.Start(ctx, spec)
	}
	if r.container == nil {
		if errors.Is(r.why, backend.ErrUnavailable) {
			return nil, fmt.Errorf("image %s: %w", spec.Image, r.why)
		}
		return nil, fmt.Errorf("image %s: %w: %w", spec.Image, backend.ErrUnavailable, r.why)
	}
	return r.container.Start(ctx, spec)
}
