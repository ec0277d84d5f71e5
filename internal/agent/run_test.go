package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/backend/local"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/queue"
	"github.com/gantry-ci/gantry/internal/store"
)

// fakeServer hands out one job and answers as its hooks say; it is the
// server side of the agent protocol, in memory.
type fakeServer struct {
	job     *queue.Assignment
	started func() error
	report  func(evs []engine.Event) error

	mu       sync.Mutex
	leased   bool
	finished *engine.JobResult
	done     chan struct{} // closed once the job is over for the agent
}

func (f *fakeServer) Lease(ctx context.Context, _ *store.Agent) (*queue.Assignment, error) {
	f.mu.Lock()
	leased := f.leased
	f.leased = true
	f.mu.Unlock()
	if !leased {
		return f.job, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (f *fakeServer) Started(context.Context, *queue.Assignment) error {
	if err := f.started(); err != nil {
		close(f.done)
		return err
	}
	return nil
}

func (f *fakeServer) Report(_ context.Context, _ *queue.Assignment, evs []engine.Event) error {
	return f.report(evs)
}

func (f *fakeServer) Heartbeat(context.Context, *queue.Assignment) error { return nil }

func (f *fakeServer) Finish(_ context.Context, _ *queue.Assignment, res *engine.JobResult) error {
	f.mu.Lock()
	f.finished = res
	f.mu.Unlock()
	close(f.done)
	return nil
}

func (f *fakeServer) Seen(context.Context, *store.Agent) error { return nil }

func (f *fakeServer) UploadArtifact(context.Context, *queue.Assignment, *queue.ArtifactFile) error {
	return errors.New("no artifacts here")
}

func (f *fakeServer) OpenArtifact(context.Context, *queue.Assignment, queue.ArtifactRef) (io.ReadCloser, error) {
	return nil, errors.New("no artifacts here")
}

// runOne runs an agent against f until the job is over, and returns the
// agent's work dir.
func runOne(t *testing.T, f *fakeServer) string {
	t.Helper()
	work := t.TempDir()
	a := New(f, local.New(local.Options{KillGrace: time.Second}), git.NewMirrors(t.TempDir()), nil, Options{Name: "t", WorkDir: work})
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx, ctx) }()
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not end within 30s")
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run = %v", err)
	}
	return work
}

// jobOf makes a repository whose pipeline has one job of steps, and the
// assignment of that job.
func jobOf(t *testing.T, steps ...string) *queue.Assignment {
	t.Helper()
	dir := t.TempDir()
	yml := "jobs:\n  test:\n    steps:\n"
	for _, s := range steps {
		yml += "      - " + s + "\n"
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "c"}} {
		if args[0] == "add" {
			if err := os.WriteFile(filepath.Join(dir, ".gantry.yml"), []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.TrimSpace(string(out))
	return &queue.Assignment{BuildID: 1, JobID: 1, Token: 1, Job: "test", Repo: "acme/app", CloneURL: dir, Commit: sha,
		Pipeline: []byte(yml), LeaseTTL: 30 * time.Second,
		Trigger: plan.Trigger{Event: plan.EventPush, Branch: "main", Commit: sha, Repo: "acme/app"}}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// A job cancelled on the server while a step runs is stopped at the next
// step's start at the latest: that step never runs.
func TestJobLostBeforeAStepRunsNoMoreSteps(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	one, two := filepath.Join(marks, "one"), filepath.Join(marks, "two")
	f := &fakeServer{job: jobOf(t, "touch "+one, "touch "+two), done: make(chan struct{}),
		started: func() error { return nil },
		report: func(evs []engine.Event) error {
			for _, ev := range evs {
				if ev.Type == engine.StepStarted && ev.StepIndex == 1 {
					// Cancelled while step 0 ran; a slow server says so.
					time.Sleep(300 * time.Millisecond)
					return store.ErrStaleLease
				}
			}
			return nil
		}}
	runOne(t, f)
	if !exists(one) || exists(two) {
		t.Errorf("first step ran: %v, second step ran: %v; want only the first", exists(one), exists(two))
	}
	if f.finished == nil || f.finished.Status != engine.Cancelled {
		t.Errorf("finished with %+v, want cancelled", f.finished)
	}
}

// A job whose start the server refuses (cancelled, or handed to another
// agent, between the lease and the start) runs nothing, though its
// workspace was being checked out meanwhile.
func TestJobRefusedAtStartRunsNothing(t *testing.T) {
	t.Parallel()
	mark := filepath.Join(t.TempDir(), "ran")
	f := &fakeServer{job: jobOf(t, "touch "+mark), done: make(chan struct{}),
		started: func() error { return store.ErrStaleLease },
		report:  func([]engine.Event) error { return nil }}
	runOne(t, f)
	if exists(mark) {
		t.Error("a step ran after the server refused the job's start")
	}
	if f.finished != nil {
		t.Errorf("the job was finished with %+v after its start was refused", f.finished)
	}
}

// A job whose commit cannot be checked out ends as an error that says
// why, and runs nothing.
func TestJobWithoutItsCommitFails(t *testing.T) {
	t.Parallel()
	mark := filepath.Join(t.TempDir(), "ran")
	job := jobOf(t, "touch "+mark)
	job.Commit = strings.Repeat("ab", 20)
	f := &fakeServer{job: job, done: make(chan struct{}),
		started: func() error { return nil },
		report:  func([]engine.Event) error { return nil }}
	runOne(t, f)
	if exists(mark) {
		t.Error("a step ran without its commit")
	}
	if f.finished == nil || f.finished.Status != engine.Error || !strings.Contains(f.finished.Reason, "commit not found") {
		t.Errorf("finished with %+v, want an error saying the commit is not found", f.finished)
	}
}
