package docker

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/docker/dockertest"
)

// BenchmarkStep measures a step's cost on the docker backend, a `true` in
// the job's long-lived container (exec, what the backend does), against a
// fresh container per step (container-per-step, the design not taken) and
// the reference of the issue, `docker run --rm IMAGE true`, both through
// the CLI and through the same API calls.
//
//	go test -run '^$' -bench . -benchtime 30x ./internal/backend/docker/
func BenchmarkStep(b *testing.B) {
	img := dockertest.BuildImage(b)
	cli := dockertest.Client(b)
	ctx := context.Background()
	b.Run("exec", func(b *testing.B) {
		be, err := New(ctx, Options{Owner: "bench", Pull: PullNever})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close(ctx)
		j, err := be.Start(ctx, backend.JobSpec{ID: "bench", Name: "bench", Workspace: b.TempDir(), Image: img})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close(ctx)
		step := backend.StepSpec{Name: "true", Command: []string{"sh", "-e", "-c", "true"}, Env: []string{"CI=true"}}
		var out strings.Builder
		for b.Loop() {
			if res, err := j.Exec(ctx, step, &out); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("container-per-step", func(b *testing.B) {
		ws := b.TempDir()
		for b.Loop() {
			runContainer(b, ctx, cli, img, ws)
		}
	})
	b.Run("docker-run-rm-api", func(b *testing.B) {
		for b.Loop() {
			runContainer(b, ctx, cli, img, "")
		}
	})
	b.Run("docker-run-rm-cli", func(b *testing.B) {
		if _, err := exec.LookPath("docker"); err != nil {
			b.Skip("no docker CLI")
		}
		for b.Loop() {
			if out, err := exec.Command("docker", "run", "--rm", img, "true").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v: %s", err, out)
			}
		}
	})
}

// runContainer is `docker run --rm [-v ws:ws] img sh -e -c true` through
// the API: create, attach, start, read to the end, wait, remove.
func runContainer(b *testing.B, ctx context.Context, cli *client.Client, img, ws string) {
	b.Helper()
	cfg := &container.Config{Image: img, Cmd: []string{"sh", "-e", "-c", "true"}, AttachStdout: true, AttachStderr: true,
		Labels: map[string]string{LabelManaged: "1", LabelOwner: "bench"}}
	host := &container.HostConfig{}
	if ws != "" {
		cfg.WorkingDir = ws
		host.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: ws, Target: ws}}
	}
	c, err := cli.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	hj, err := cli.ContainerAttach(ctx, c.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		b.Fatal(err)
	}
	wait, errc := cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	stdcopy.StdCopy(io.Discard, io.Discard, hj.Reader)
	hj.Close()
	select {
	case w := <-wait:
		if w.StatusCode != 0 {
			b.Fatalf("exit %d", w.StatusCode)
		}
	case err := <-errc:
		b.Fatal(err)
	}
	if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{RemoveVolumes: true}); err != nil {
		b.Fatal(err)
	}
}
