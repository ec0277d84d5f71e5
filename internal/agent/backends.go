package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/docker"
	"github.com/gantry-ci/gantry/internal/backend/local"
	"github.com/gantry-ci/gantry/internal/backend/route"
)

// Machine is what an agent runs steps with on this machine: the local
// backend, and Docker for jobs with an image when an engine answers.
type Machine struct {
	Backend backend.Backend
	// Labels are what the machine adds to the agent's labels: "docker"
	// when jobs with an image can run here.
	Labels []string
	docker *docker.Backend
}

// NewMachine probes the Docker Engine (a few seconds at most) and removes
// what a crashed agent of the same name and work directory left on it:
// containers and networks labelled with its owner. Two agents on one host
// never share an owner, so one never removes the other's. Without an
// engine, jobs with an image fail with the reason.
func NewMachine(ctx context.Context, name, workDir string, killGrace time.Duration, log *slog.Logger) *Machine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := local.New(local.Options{KillGrace: killGrace, Logger: log})
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d, err := docker.New(dctx, docker.Options{Owner: DockerOwner(name, workDir), KillGrace: killGrace, Logger: log})
	if err != nil {
		log.LogAttrs(ctx, slog.LevelInfo, "jobs with an image cannot run here", slog.Any("err", err))
		return &Machine{Backend: route.New(host, nil, err)}
	}
	if err := d.Reap(dctx); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "remove what a previous agent left on docker", slog.Any("err", err))
	}
	return &Machine{Backend: route.New(host, d, nil), Labels: []string{"docker"}, docker: d}
}

// Close removes whatever the machine's jobs left on Docker.
func (m *Machine) Close(ctx context.Context) error {
	if m.docker == nil {
		return nil
	}
	return m.docker.Close(ctx)
}

// DockerOwner is the owner label of what an agent of that name and work
// dir makes on Docker: the next agent on the same work dir reaps it, and
// agents that share an engine leave each other's alone.
func DockerOwner(name, workDir string) string {
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	sum := sha256.Sum256([]byte(workDir))
	return "gantry-agent-" + name + "-" + hex.EncodeToString(sum[:4])
}
