package docker

import (
	"context"
	"errors"
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
		// Each exec is several API calls to a daemon that, with the whole
		// suite running on 2 cores, answers slowly at times.
		Slack: 6 * time.Second,
	})
}

func startJob(t *testing.T, b *Backend, spec backend.JobSpec) backend.Job {
	t.Helper()
	if spec.Workspace == "" {
		spec.Workspace = t.TempDir()
	}
	if spec.Image == "" {
		spec.Image = dockertest.Image
	}
	if spec.ID == "" {
		spec.ID = "job-" + t.Name()
	}
	j, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start(%+v) = %v, want a job", spec, err)
	}
	t.Cleanup(func() {
		if err := j.Close(context.Background()); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return j
}

func runStep(t *testing.T, j backend.Job, script string, env ...string) (backend.Result, string) {
	t.Helper()
	var out strings.Builder
	res, err := j.Exec(context.Background(), backend.StepSpec{Name: "s", Command: []string{"sh", "-c", script}, Env: env}, &out)
	if err != nil {
		t.Fatalf("Exec(%q) = %+v, %v; output %q", script, res, err, out.String())
	}
	return res, out.String()
}

// webService is an HTTP server on port 8080 that answers "hello from NAME".
func webService(name string, ready bool) backend.Service {
	s := backend.Service{
		Name:    name,
		Image:   dockertest.Image,
		Env:     map[string]string{"GREETING": "hello from " + name},
		Command: []string{"sh", "-c", `echo "$GREETING" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp`},
	}
	if ready {
		s.Ready = &backend.Ready{Command: []string{"wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"}, Interval: 50 * time.Millisecond, Timeout: 10 * time.Second}
	}
	return s
}

// TestServices: steps reach each service by its name, once it is ready.
func TestServices(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, Options{})
	j := startJob(t, b, backend.JobSpec{Services: []backend.Service{webService("web", true), webService("api", true)}})
	for _, name := range []string{"web", "api"} {
		res, out := runStep(t, j, "wget -q -O - http://"+name+":8080/")
		if res.ExitCode != 0 || out != "hello from "+name+"\n" {
			t.Errorf("GET http://%s:8080/ = %+v, %q; want exit 0, %q", name, res, out, "hello from "+name+"\n")
		}
	}
}

// TestServiceNotReady: a service whose check never passes fails Start with
// the check's last word, and leaves nothing behind.
func TestServiceNotReady(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, Options{})
	s := webService("db", false)
	s.Ready = &backend.Ready{Command: []string{"sh", "-c", "echo not yet; exit 3"}, Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond}
	spec := backend.JobSpec{ID: "notready", Name: "notready", Workspace: t.TempDir(), Image: dockertest.Image, Services: []backend.Service{s}}
	j, err := b.Start(context.Background(), spec)
	if err == nil {
		j.Close(context.Background())
		t.Fatal("Start = a job, want an error")
	}
	for _, want := range []string{"service db", "not ready after 500ms", "exit status 3: not yet"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start = %q, want it to say %q", err, want)
		}
	}
	// A service that exits before it is ready says so.
	s.Command = []string{"sh", "-c", "exit 4"}
	s.Ready.Timeout = 10 * time.Second
	spec.Services = []backend.Service{s}
	if j, err = b.Start(context.Background(), spec); err == nil {
		j.Close(context.Background())
		t.Fatal("Start = a job, want an error")
	}
	if want := "exited with status 4 before it was ready"; !strings.Contains(err.Error(), want) {
		t.Errorf("Start = %q, want it to say %q", err, want)
	}
}

// TestPull: the pull policy, and errors that name the image.
func TestPull(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, Options{})
	const missing = "gantry-test/no-such-image:0"
	for _, tt := range []struct {
		pull, image, want string
	}{
		{PullNever, missing, "image " + missing + " is not present on the Docker Engine and the pull policy is never"},
		{PullIfNotPresent, missing, "pull image " + missing + ": "},
		{PullAlways, dockertest.Image, "pull image " + dockertest.Image + ": "},
		{"sometimes", dockertest.Image, `pull policy "sometimes"`},
	} {
		spec := backend.JobSpec{ID: "pull", Name: "pull", Workspace: t.TempDir(), Image: tt.image, Pull: tt.pull}
		j, err := b.Start(context.Background(), spec)
		if err == nil {
			j.Close(context.Background())
			t.Errorf("Start(pull %s, image %s) = a job, want an error", tt.pull, tt.image)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(pull %s, image %s) = %q, want it to say %q", tt.pull, tt.image, err, tt.want)
		}
	}
	// A service's image too.
	spec := backend.JobSpec{ID: "pull", Name: "pull", Workspace: t.TempDir(), Image: dockertest.Image, Pull: PullNever,
		Services: []backend.Service{{Name: "db", Image: missing}}}
	if j, err := b.Start(context.Background(), spec); err == nil {
		j.Close(context.Background())
		t.Error("Start(service with a missing image) = a job, want an error")
	} else if !strings.Contains(err.Error(), missing) {
		t.Errorf("Start(service with a missing image) = %q, want it to name %s", err, missing)
	}
}

// TestReap: what a crashed backend left is removed by the next one with the
// same owner, and only that.
func TestReap(t *testing.T) {
	t.Parallel()
	crashed := newTestBackend(t, Options{})
	other := newTestBackend(t, Options{})
	crashed.Start(context.Background(), backend.JobSpec{ID: "left", Name: "left", Workspace: t.TempDir(), Image: dockertest.Image,
		Services: []backend.Service{webService("web", false)}}) // never closed
	j := startJob(t, other, backend.JobSpec{})
	next := newTestBackend(t, Options{Owner: crashed.Owner()})
	if err := next.Reap(context.Background()); err != nil {
		t.Fatalf("Reap = %v", err)
	}
	if res, _ := runStep(t, j, "true"); res.ExitCode != 0 {
		t.Errorf("another owner's job after Reap: exit %d, want 0", res.ExitCode)
	}
	// The leftovers check of crashed's owner, registered by newTestBackend,
	// fails the test if anything is left.
}

// TestUnavailable: New says why when no engine answers.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	sock := t.TempDir() + "/none.sock"
	_, err := New(context.Background(), Options{Host: "unix://" + sock})
	if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "docker is not available") || !strings.Contains(err.Error(), sock) {
		t.Errorf("New(no engine) = %v, want ErrUnavailable saying docker is not available and naming %s", err, sock)
	}
}

// TestOutputOrderMillionLines: a million lines of stdout and stderr, in
// order, through a writer that keeps only a count: memory stays bounded.
func TestOutputOrderMillionLines(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, Options{})
	j := startJob(t, b, backend.JobSpec{})
	var c lineCounter
	res, err := j.Exec(context.Background(), backend.StepSpec{Name: "lines", Command: []string{"sh", "-c",
		`seq 1 500000 | sed 's/^/o /'; seq 1 500000 | sed 's/^/e /' >&2; echo out; echo err >&2; echo out2`}}, &c)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec = %+v, %v", res, err)
	}
	if c.lines != 1000003 || c.last != "out2" {
		t.Errorf("got %d lines, the last %q; want 1000003, %q", c.lines, c.last, "out2")
	}
	if !strings.HasSuffix(c.tail, "e 500000\nout\nerr\nout2\n") {
		t.Errorf("output ends %q, want it to end %q", c.tail, "e 500000\nout\nerr\nout2\n")
	}
}

type lineCounter struct {
	lines int
	last  string
	tail  string
	cur   []byte
}

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != '\n' {
			c.cur = append(c.cur, b)
			continue
		}
		c.lines++
		c.last = string(c.cur)
		c.tail += c.last + "\n"
		if len(c.tail) > 64 {
			c.tail = c.tail[len(c.tail)-64:]
		}
		c.cur = c.cur[:0]
	}
	return len(p), nil
}
