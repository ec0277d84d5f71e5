package docker

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/backendtest"
	"github.com/gantry-ci/gantry/internal/backend/docker/dockertest"
)

const (
	testGrace     = 300 * time.Millisecond
	testWaitDelay = 100 * time.Millisecond
)

var owners atomic.Int64

// newTestBackend returns a backend with an owner of its own, and checks
// when the test ends that nothing with that owner is left. It does not
// call Backend.Close, which would reap what the jobs failed to remove.
func newTestBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	dockertest.BuildImage(t)
	if opts.Owner == "" {
		opts.Owner = fmt.Sprintf("test-%d-%d", os.Getpid(), owners.Add(1))
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = testGrace
	}
	if opts.WaitDelay == 0 {
		opts.WaitDelay = testWaitDelay
	}
	if opts.Pull == "" {
		opts.Pull = PullNever
	}
	dockertest.NoLeftovers(t, opts.Owner)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("docker.New = %v; these tests need a Docker Engine", err)
	}
	t.Cleanup(func() { b.cli.Close() })
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return newTestBackend(t, Options{})
	}, backendtest.Options{
		Image:           dockertest.Image,
		KillGrace:       testGrace,
		WaitDelay:       testWaitDelay,
		HostEnv:         strings.Fields("PATH HOSTNAME HOME PWD SHLVL"),
		SignalExitCodes: true,
	})
}
