// Package dockertest helps tests that need a real Docker Engine: it builds
// the test image locally (there is no registry to pull from) and checks
// that a test left no labelled container, network or volume behind.
//
// Tests that use it fail, never skip, when no engine is reachable: CI has
// one, and a skipped docker suite would pass unnoticed.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// Image is the tag of the test image: FROM scratch with a static busybox
// (Debian's busybox-static) as /bin/busybox, a symbolic link per applet in
// /bin (sh, env, sleep, cat, yes, head, httpd, nc, wget, ...), /tmp, and
// PATH=/bin.
const Image = "gantry-test/busybox:1"

// BusyboxPath is where the static busybox is read from on the host.
const BusyboxPath = "/bin/busybox"

var (
	buildOnce sync.Once
	buildErr  error
)

// Client returns a client for the environment's Docker Engine, or fails
// the test saying why there is none.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker tests need a Docker Engine: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		t.Fatalf("docker tests need a reachable Docker Engine (DOCKER_HOST or /var/run/docker.sock): %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// BuildImage builds Image once per test binary and returns its tag.
func BuildImage(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildErr = buildImage() })
	if buildErr != nil {
		t.Fatalf("build test image %s: %v", Image, buildErr)
	}
	return Image
}

func buildImage() error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	list, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(0, 0)
	add := func(h *tar.Header, data []byte) {
		h.ModTime = now
		h.Size = int64(len(data))
		tw.WriteHeader(h)
		tw.Write(data)
	}
	add(&tar.Header{Name: "Dockerfile", Mode: 0o644, Typeflag: tar.TypeReg},
		[]byte("FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n"))
	add(&tar.Header{Name: "rootfs/bin/", Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	add(&tar.Header{Name: "rootfs/tmp/", Mode: 0o1777, Typeflag: tar.TypeDir}, nil)
	add(&tar.Header{Name: "rootfs/etc/", Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	add(&tar.Header{Name: "rootfs/etc/passwd", Mode: 0o644, Typeflag: tar.TypeReg},
		[]byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"))
	add(&tar.Header{Name: "rootfs/etc/group", Mode: 0o644, Typeflag: tar.TypeReg},
		[]byte("root:x:0:\nnogroup:x:65534:\n"))
	add(&tar.Header{Name: "rootfs/bin/busybox", Mode: 0o755, Typeflag: tar.TypeReg}, bb)
	for _, name := range strings.Fields(string(list)) {
		if name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		add(&tar.Header{Name: "rootfs/bin/" + name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: "busybox"}, nil)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{Image},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{"gantry.test": "1"},
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if bytes.Contains(out, []byte(`"error"`)) || bytes.Contains(out, []byte(`"errorDetail"`)) {
		return fmt.Errorf("build failed: %s", out)
	}
	return nil
}

// NoLeftovers registers a cleanup, run after the test's other cleanups,
// that fails the test if any container, network or volume labelled
// gantry.owner=owner remains, and removes them.
func NoLeftovers(t testing.TB, owner string) {
	t.Helper()
	cli := Client(t)
	// Registered first, so it runs last, after the test closed its jobs.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", "gantry.owner="+owner))
		ctrs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			t.Errorf("list containers: %v", err)
		}
		for _, c := range ctrs {
			t.Errorf("left behind: container %.12s (%s, %s, labels %v)", c.ID, c.Image, c.State, c.Labels)
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
		if err != nil {
			t.Errorf("list networks: %v", err)
		}
		for _, n := range nets {
			t.Errorf("left behind: network %s (labels %v)", n.Name, n.Labels)
			cli.NetworkRemove(ctx, n.ID)
		}
		vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
		if err != nil {
			t.Errorf("list volumes: %v", err)
		}
		for _, v := range vols.Volumes {
			t.Errorf("left behind: volume %s (labels %v)", v.Name, v.Labels)
			cli.VolumeRemove(ctx, v.Name, true)
		}
	})
}

// Leftovers lists the containers and networks labelled gantry.managed=1
// whose gantry.owner starts with ownerPrefix.
func Leftovers(ownerPrefix string) ([]string, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", "gantry.managed=1"))
	var left []string
	ctrs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, c := range ctrs {
		if strings.HasPrefix(c.Labels["gantry.owner"], ownerPrefix) {
			left = append(left, "container "+c.ID[:12])
		}
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if strings.HasPrefix(n.Labels["gantry.owner"], ownerPrefix) {
			left = append(left, "network "+n.Name)
		}
	}
	return left, nil
}
