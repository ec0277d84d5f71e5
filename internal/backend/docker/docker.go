// Package docker is the backend that runs a job's steps in a container of
// the job's image, through the Docker Engine API, with the job's services
// as sidecar containers beside it.
//
// # What a job gets
//
// Start creates, for a job with services, a user-defined bridge network of
// its own; starts each service from its image (the image's entrypoint, with
// Service.Command as its command when set) on that network, with the
// service's name as its network alias, so that steps reach it by that name;
// waits for each service's readiness check; and creates the job's container:
// the job's image, the workspace bind-mounted at the same path as on the
// host, the workspace as working directory, Docker's init as PID 1 (it reaps
// orphaned processes), and as main process a control shell (sh -s reading
// the backend's commands from the container's stdin, ignoring SIGTERM)
// through which the backend signals the steps. The image's ENTRYPOINT and
// CMD are not run for the job's container; a job's image must have sh.
//
// Each step runs in that one container through `docker exec`, so that files,
// background processes and installed packages carry from one step to the
// next, as they do on the local backend, and so that a step costs one exec
// rather than a container: see the package's BenchmarkStep for the measured
// difference. The step runs as the image's user (USER), in the workspace or
// StepSpec.Dir below it, with the container's environment (the image's ENV,
// HOSTNAME, and HOME when the image does not set it) overridden and extended
// by StepSpec.Env; the shell that starts the step may add PWD and SHLVL. The
// program, StepSpec.Command[0], is looked up in the step's PATH.
//
// A step's stdout and stderr are one pipe, so that the log has them in the
// exact order the step wrote them: the step is started by a small sh
// wrapper that checks the program exists, tells the backend its process ID
// (the step's process group), runs the program with stderr redirected to
// stdout, and tells the backend its exit status. The exec's own stderr
// stream is thus the backend's channel, never the step's, and the backend
// learns that the step's main process exited even while a background
// process holds the output open. Stdin is empty.
//
// # Exit codes
//
// Docker reports a process killed by signal N as exit code 128+N, as a shell
// does, and so does Result.ExitCode, except for a step that the backend
// stopped (Result.Stopped), whose 128+SIGTERM or 128+SIGKILL is -1.
//
// # Stopping
//
// When Exec's context ends, the step's process group (the step and what it
// started, unless they left the group) gets SIGTERM, then SIGKILL after
// Options.KillGrace, both sent by the job's control shell, inside the
// container and as the image's user, so that the backend needs no access to
// the host's processes. (A fresh `docker exec kill` would do, but the
// engine handles a container's exec exits one at a time and waits up to two
// seconds on each whose output a background process holds, which can make
// a new exec's output seconds late, exactly when a stop must be quick.)
// Exec then returns Result.Stopped and an error wrapping the context's
// cause. A step whose main process has exited returns at most
// Options.WaitDelay later, even if a background process still holds its
// output; background processes keep running until Close. Close sends
// SIGTERM to every process in the job's container but its init and control
// shell, waits up to KillGrace for them to exit, and removes the job's
// containers (SIGKILL) and network.
//
// # Nothing left behind
//
// Everything the backend creates carries the labels gantry.managed=1,
// gantry.owner=<Options.Owner> and gantry.job=<JobSpec.ID>. A job's Close
// removes its containers (with their anonymous volumes) and network; Start
// removes what it made when it fails. Reap removes everything labelled with
// the backend's owner: call it when an agent starts, to clear what a crashed
// predecessor with the same owner left, and Backend.Close does it on
// shutdown.
//
// # Images
//
// JobSpec.Pull (or Options.Pull when empty) decides whether the job's and
// the services' images are pulled: "if-not-present" (the default) pulls an
// image the engine does not have, "always" pulls every time, "never" uses
// only local images. Credentials for a registry come from
// Options.RegistryAuth.
//
// # Safe by default
//
// Containers are never privileged, get the Docker Engine's default
// capabilities, publish no ports, and mount nothing from the host but the
// job's workspace (services mount nothing). There is no option, in the
// backend or in the pipeline file, to ask for more: no privileged mode, no
// Docker socket, no other host path.
//
// # What it does not do
//
// It sets no resource limits. Processes that leave the step's process group
// (setsid) escape a stopped step's signals, but not Close. The workspace is
// shared with the host, so files the step creates are owned by the image's
// user ID on the host too.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/gantry-ci/gantry/internal/backend"
)

var _ backend.Backend = (*Backend)(nil)

// Labels put on everything the backend creates.
const (
	LabelManaged = "gantry.managed" // always "1"
	LabelOwner   = "gantry.owner"   // Options.Owner
	LabelJob     = "gantry.job"     // JobSpec.ID
)

// Pull policies, for JobSpec.Pull and Options.Pull.
const (
	PullAlways       = "always"
	PullIfNotPresent = "if-not-present"
	PullNever        = "never"
)

// Defaults for the zero values of Options.
const (
	DefaultKillGrace    = 10 * time.Second
	DefaultWaitDelay    = 500 * time.Millisecond
	DefaultOwner        = "gantry"
	DefaultReadyTimeout = time.Minute
	DefaultReadyEvery   = time.Second
)

// Options configure a docker Backend. The zero value is ready to use.
type Options struct {
	// Host is the Docker Engine's address (unix:///var/run/docker.sock,
	// tcp://host:2376); empty means the environment's DOCKER_HOST, and
	// DOCKER_CERT_PATH and DOCKER_TLS_VERIFY with it, as for the docker CLI.
	Host string

	// Owner is written on everything the backend creates, and Reap removes
	// what carries it: give each agent on a Docker Engine its own, stable
	// across restarts. Empty means DefaultOwner.
	Owner string

	// KillGrace is how long a stopped step (or, on Close, a job's leftover
	// processes) has between SIGTERM and SIGKILL. Zero or less means
	// DefaultKillGrace.
	KillGrace time.Duration

	// WaitDelay is how long Exec keeps reading a step's output after its
	// main process exited while a background process still holds the
	// output open. Zero or less means DefaultWaitDelay.
	WaitDelay time.Duration

	// Pull is the pull policy for jobs whose JobSpec.Pull is empty; empty
	// means PullIfNotPresent.
	Pull string

	// RegistryAuth returns the credentials to pull image with, as the
	// Docker Engine API's X-Registry-Auth value (base64url of the JSON
	// {"username": ..., "password": ...}), or "" for none. Nil means none.
	// The agent builds it from the repository's secrets.
	RegistryAuth func(image string) string

	// Logger receives the backend's diagnostics (not build output); nil
	// discards them.
	Logger *slog.Logger
}

// Backend runs jobs in containers of a Docker Engine. Create it with New;
// its methods are safe for concurrent use.
type Backend struct {
	cli       *client.Client
	owner     string
	killGrace time.Duration
	waitDelay time.Duration
	pull      string
	auth      func(string) string
	log       *slog.Logger
}

// New connects to the Docker Engine and checks that it answers. When it
// does not, the error wraps backend.ErrUnavailable and reads "docker is not
// available: <why>".
func New(ctx context.Context, opts Options) (*Backend, error) {
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Host != "" {
		copts = append(copts, client.WithHost(opts.Host))
	}
	switch opts.Pull {
	case "", PullAlways, PullIfNotPresent, PullNever:
	default:
		return nil, fmt.Errorf("docker backend: pull policy %q: want always, if-not-present or never", opts.Pull)
	}
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, unavailable{err}
	}
	b := &Backend{
		cli:       cli,
		owner:     opts.Owner,
		killGrace: opts.KillGrace,
		waitDelay: opts.WaitDelay,
		pull:      opts.Pull,
		auth:      opts.RegistryAuth,
		log:       opts.Logger,
	}
	if b.owner == "" {
		b.owner = DefaultOwner
	}
	if b.killGrace <= 0 {
		b.killGrace = DefaultKillGrace
	}
	if b.waitDelay <= 0 {
		b.waitDelay = DefaultWaitDelay
	}
	if b.pull == "" {
		b.pull = PullIfNotPresent
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if err := b.Available(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	return b, nil
}

// Available reports whether the Docker Engine answers, within ctx (give it
// a few seconds): nil, or an error wrapping backend.ErrUnavailable that says
// why. An agent calls it to decide whether it advertises its docker label.
func (b *Backend) Available(ctx context.Context) error {
	if _, err := b.cli.Ping(ctx); err != nil {
		return unavailable{err}
	}
	b.cli.NegotiateAPIVersion(ctx)
	return nil
}

// unavailable is the error of a Docker Engine that does not answer.
type unavailable struct{ err error }

func (u unavailable) Error() string   { return "docker is not available: " + u.err.Error() }
func (u unavailable) Unwrap() []error { return []error{backend.ErrUnavailable, u.err} }

// Name returns "docker".
func (b *Backend) Name() string { return "docker" }

// Owner returns the owner label value the backend writes and reaps.
func (b *Backend) Owner() string { return b.owner }

// Close removes everything that carries the backend's owner label, running
// jobs' containers included, and closes the connection to the engine. Call
// it once no job runs any more.
func (b *Backend) Close(ctx context.Context) error {
	err := b.Reap(ctx)
	if cerr := b.cli.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reap removes every container (with its anonymous volumes), network and
// volume labelled with the backend's owner: what a crashed predecessor with
// the same Options.Owner left behind. It removes what it can and returns
// the first error.
func (b *Backend) Reap(ctx context.Context) error {
	return reap(ctx, b.cli, filters.NewArgs(
		filters.Arg("label", LabelManaged+"=1"),
		filters.Arg("label", LabelOwner+"="+b.owner)))
}

// reap removes the containers, then the networks, then the volumes that
// match f.
func reap(ctx context.Context, cli *client.Client, f filters.Args) error {
	var errs []error
	ctrs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("reap: list containers: %w", err)
	}
	for _, c := range ctrs {
		if err := removeContainer(ctx, cli, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("reap: list networks: %w", err))...)
	}
	for _, n := range nets {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, fmt.Errorf("reap: remove network %s: %w", n.Name, err))
		}
	}
	vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("reap: list volumes: %w", err))...)
	}
	for _, v := range vols.Volumes {
		if err := cli.VolumeRemove(ctx, v.Name, true); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, fmt.Errorf("reap: remove volume %s: %w", v.Name, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// removeContainer force-removes a container and its anonymous volumes; a
// container already gone is not an error.
func removeContainer(ctx context.Context, cli *client.Client, id string) error {
	err := cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !client.IsErrNotFound(err) && !isRemovalInProgress(err) {
		return fmt.Errorf("remove container %.12s: %w", id, err)
	}
	return nil
}

// isRemovalInProgress tells the engine's answer to a second removal of a
// container being removed, which Close and Reap at once can cause.
func isRemovalInProgress(err error) bool {
	return err != nil && containsAny(err.Error(), "removal of container", "is already in progress")
}

// labels are the labels of what the backend creates for job id.
func (b *Backend) labels(id string) map[string]string {
	return map[string]string{LabelManaged: "1", LabelOwner: b.owner, LabelJob: id}
}

// checkWorkspace returns the workspace as an absolute path, or an error
// that names it.
func checkWorkspace(ws string) (string, error) {
	if ws == "" {
		return "", errors.New("no workspace")
	}
	abs, err := filepath.Abs(ws)
	if err != nil {
		return "", fmt.Errorf("workspace %s: %w", ws, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("workspace %s is not a directory", abs)
	}
	return abs, nil
}
