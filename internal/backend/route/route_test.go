package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/backend"
)

// fake records the jobs it was asked to start.
type fake struct {
	name    string
	started []string
}

func (f *fake) Name() string { return f.name }

func (f *fake) Start(_ context.Context, spec backend.JobSpec) (backend.Job, error) {
	f.started = append(f.started, spec.Name)
	return nil, nil
}

func TestRoute(t *testing.T) {
	t.Parallel()
	host, ctr := &fake{name: "local"}, &fake{name: "docker"}
	r := New(host, ctr, nil)
	if r.Name() != "local+docker" {
		t.Errorf("Name() = %q, want local+docker", r.Name())
	}
	r.Start(context.Background(), backend.JobSpec{Name: "onhost"})
	r.Start(context.Background(), backend.JobSpec{Name: "incontainer", Image: "busybox"})
	if len(host.started) != 1 || host.started[0] != "onhost" || len(ctr.started) != 1 || ctr.started[0] != "incontainer" {
		t.Errorf("host started %q, container started %q; want [onhost], [incontainer]", host.started, ctr.started)
	}
}

func TestRouteUnavailable(t *testing.T) {
	t.Parallel()
	host := &fake{name: "local"}
	why := fmt.Errorf("%w: dial unix /var/run/docker.sock: connect: no such file or directory", backend.ErrUnavailable)
	r := New(host, nil, why)
	if r.Name() != "local+docker" {
		t.Errorf("Name() = %q, want local+docker", r.Name())
	}
	_, err := r.Start(context.Background(), backend.JobSpec{Name: "build", Image: "golang:1.23"})
	if err == nil || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Start(image job) = %v, want an error wrapping ErrUnavailable", err)
	}
	for _, want := range []string{"golang:1.23", why.Error()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start(image job) = %q, want it to say %q", err, want)
		}
	}
	if _, err := r.Start(context.Background(), backend.JobSpec{Name: "plain"}); err != nil || len(host.started) != 1 {
		t.Errorf("Start(plain job) = %v, host started %q; want it on the host", err, host.started)
	}
}
