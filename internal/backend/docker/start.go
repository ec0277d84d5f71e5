package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantry-ci/gantry/internal/backend"
)

// Start pulls the images as the pull policy says, creates the job's network
// and services when it has services and waits until they are ready, and
// starts the job's container. On error it removes what it created.
func (b *Backend) Start(ctx context.Context, spec backend.JobSpec) (_ backend.Job, err error) {
	fail := func(err error) (backend.Job, error) {
		return nil, fmt.Errorf("start job %q: %w", spec.Name, err)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}
	if spec.Image == "" {
		return fail(errors.New("no image: the docker backend runs jobs that name one"))
	}
	ws, err := checkWorkspace(spec.Workspace)
	if err != nil {
		return fail(err)
	}
	policy := spec.Pull
	if policy == "" {
		policy = b.pull
	}
	seen := map[string]bool{}
	for _, img := range append([]string{spec.Image}, serviceImages(spec.Services)...) {
		if seen[img] {
			continue
		}
		seen[img] = true
		if err := b.ensureImage(ctx, img, policy); err != nil {
			return fail(err)
		}
	}

	j := &job{
		b:         b,
		id:        spec.ID,
		name:      spec.Name,
		workspace: ws,
		closing:   make(chan struct{}),
		closeDone: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			j.remove(cctx)
		}
	}()
	labels := b.labels(spec.ID)
	netMode := container.NetworkMode("")
	if len(spec.Services) > 0 {
		name := "gantry-" + randomSuffix()
		n, err := b.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels})
		if err != nil {
			return fail(fmt.Errorf("create network: %w", err))
		}
		j.network = n.ID
		netMode = container.NetworkMode(n.ID)
		for _, s := range spec.Services {
			id, err := b.startService(ctx, j, s, labels)
			if id != "" {
				j.services = append(j.services, id)
			}
			if err != nil {
				return fail(fmt.Errorf("service %s: %w", s.Name, err))
			}
		}
	}

	init := true
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: controlShell,
		OpenStdin:  true,
		WorkingDir: ws,
		Labels:     labels,
	}
	host := &container.HostConfig{
		Init:        &init,
		NetworkMode: netMode,
		Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: ws, Target: ws}},
	}
	c, err := b.cli.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return fail(fmt.Errorf("create container of image %s: %w", spec.Image, err))
	}
	j.ctr = c.ID
	conn, err := b.cli.ContainerAttach(ctx, c.ID, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return fail(fmt.Errorf("attach to container of image %s: %w", spec.Image, err))
	}
	j.ctl = newControl(conn)
	if err := b.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("start container of image %s: %w", spec.Image, err))
	}
	if err := b.waitReady(ctx, j, spec.Services); err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}
	return j, nil
}

func serviceImages(ss []backend.Service) []string {
	var imgs []string
	for _, s := range ss {
		imgs = append(imgs, s.Image)
	}
	return imgs
}

// randomSuffix returns a short random hex string for names.
func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ensureImage makes img present as policy says. Errors name the image.
func (b *Backend) ensureImage(ctx context.Context, img, policy string) error {
	switch policy {
	case PullAlways:
		return b.pullImage(ctx, img)
	case PullIfNotPresent, PullNever:
		_, err := b.cli.ImageInspect(ctx, img)
		if err == nil {
			return nil
		}
		if !client.IsErrNotFound(err) {
			return fmt.Errorf("image %s: %w", img, err)
		}
		if policy == PullNever {
			return fmt.Errorf("image %s is not present on the Docker Engine and the pull policy is never", img)
		}
		return b.pullImage(ctx, img)
	}
	return fmt.Errorf("pull policy %q: want always, if-not-present or never", policy)
}

// pullImage pulls img, reading the engine's progress stream to its end: a
// pull that fails midway says so only there.
func (b *Backend) pullImage(ctx context.Context, img string) error {
	opts := image.PullOptions{}
	if b.auth != nil {
		opts.RegistryAuth = b.auth(img)
	}
	rc, err := b.cli.ImagePull(ctx, img, opts)
	if err != nil {
		return fmt.Errorf("pull image %s: %w", img, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("pull image %s: %w", img, err)
		}
		if m.ErrorDetail.Message != "" {
			return fmt.Errorf("pull image %s: %s", img, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("pull image %s: %s", img, m.Error)
		}
	}
}

// startService creates and starts a service's container on the job's
// network, with its name as alias. It returns the container's ID as soon
// as there is one, so that the caller removes it on error.
func (b *Backend) startService(ctx context.Context, j *job, s backend.Service, labels map[string]string) (string, error) {
	var env []string
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	cfg := &container.Config{Image: s.Image, Cmd: s.Command, Env: env, Labels: labels, Hostname: s.Name}
	host := &container.HostConfig{NetworkMode: container.NetworkMode(j.network)}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		j.network: {Aliases: []string{s.Name}},
	}}
	c, err := b.cli.ContainerCreate(ctx, cfg, host, nc, nil, "")
	if err != nil {
		return "", fmt.Errorf("create container of image %s: %w", s.Image, err)
	}
	if err := b.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return c.ID, fmt.Errorf("start container of image %s: %w", s.Image, err)
	}
	return c.ID, nil
}

// waitReady runs each service's readiness check until it succeeds, the
// service exits, or the check's timeout passes.
func (b *Backend) waitReady(ctx context.Context, j *job, ss []backend.Service) error {
	for i, s := range ss {
		if s.Ready == nil || len(s.Ready.Command) == 0 {
			continue
		}
		if err := b.waitService(ctx, j.services[i], s); err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
	}
	return nil
}

func (b *Backend) waitService(ctx context.Context, id string, s backend.Service) error {
	timeout, every := s.Ready.Timeout, s.Ready.Interval
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	if every <= 0 {
		every = DefaultReadyEvery
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		code, out, err := b.runCheck(ctx, id, s.Ready.Command)
		if err == nil && code == 0 {
			return nil
		}
		if err != nil {
			if ctx.Err() == nil || last == "" {
				last = err.Error()
			}
		} else {
			last = fmt.Sprintf("exit status %d", code)
			if out = strings.TrimSpace(out); out != "" {
				last += ": " + lastLine(out)
			}
		}
		insp, ierr := b.cli.ContainerInspect(ctx, id)
		if ierr == nil && insp.State != nil && !insp.State.Running {
			return fmt.Errorf("exited with status %d before it was ready", insp.State.ExitCode)
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
				return cause
			}
			return fmt.Errorf("not ready after %v: check %q: %s", timeout, s.Ready.Command, last)
		case <-t.C:
		}
	}
}

// runCheck runs cmd in container id and returns its exit code and its
// output, at most 4 KiB of it.
func (b *Backend) runCheck(ctx context.Context, id string, cmd []string) (int, string, error) {
	ec, err := b.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", err
	}
	hj, err := b.cli.ContainerExecAttach(ctx, ec.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", err
	}
	defer hj.Close()
	stop := context.AfterFunc(ctx, func() { hj.Close() })
	defer stop()
	var out limitedBuffer
	out.max = 4 << 10
	stdcopy.StdCopy(&out, &out, hj.Reader)
	insp, err := b.cli.ContainerExecInspect(ctx, ec.ID)
	if err != nil {
		return -1, out.String(), err
	}
	if insp.Running {
		return -1, out.String(), errors.New("check still running")
	}
	return insp.ExitCode, out.String(), nil
}

// limitedBuffer keeps the first max bytes written to it and discards the
// rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
