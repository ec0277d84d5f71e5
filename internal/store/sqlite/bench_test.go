package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/store"
)

func benchRepo(b *testing.B) (*store.Repo, store.Store) {
	s := open(b, filepath.Join(b.TempDir(), "gantry.db"))
	r := &store.Repo{Name: "acme/app", CloneURL: "https://example.com/acme/app.git"}
	if err := s.CreateRepo(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	return r, s
}

func benchBuild(r *store.Repo) *store.Build {
	pipeline := bytes.Repeat([]byte("# a pipeline file of about a kilobyte\n"), 27)
	b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "push", Branch: "main",
		Commit: "0123456789abcdef0123456789abcdef01234567", Author: "alice", Message: "Fix the thing", Pipeline: pipeline}
	now := time.Now()
	for i, name := range []string{"test", "lint", "build"} {
		j := &store.Job{Name: name, Position: i, Status: store.StatusQueued, ExitCode: -1, RunsOn: []string{"linux"}, QueuedAt: now}
		if name == "build" {
			j.Status, j.QueuedAt = store.StatusPending, time.Time{}
		}
		b.Jobs = append(b.Jobs, j)
	}
	return b
}

// BenchmarkCreateBuild stores a build with 3 jobs, as a webhook does.
func BenchmarkCreateBuild(b *testing.B) {
	r, s := benchRepo(b)
	ctx := context.Background()
	for b.Loop() {
		if err := s.CreateBuild(ctx, benchBuild(r)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaseAndFinish leases a job and finishes it through Update, as
// the queue and build.Finish do: two write transactions per job.
func BenchmarkLeaseAndFinish(b *testing.B) {
	r, s := benchRepo(b)
	ctx := context.Background()
	for i := 0; i < b.N; i += 2 {
		bd := benchBuild(r)
		bd.Jobs[2].Status, bd.Jobs[2].QueuedAt = store.StatusQueued, time.Now()
		if i+1 == b.N {
			bd.Jobs = bd.Jobs[:1]
		} else {
			bd.Jobs = bd.Jobs[:2]
		}
		if err := s.CreateBuild(ctx, bd); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		lb, j, err := s.Lease(ctx, "agent", []string{"linux", "amd64"}, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		err = s.Update(ctx, lb.ID, func(bd *store.Build) error {
			now := time.Now()
			for _, jj := range bd.Jobs {
				if jj.ID != j.ID {
					continue
				}
				jj.Status, jj.ExitCode, jj.FinishedAt, jj.LeaseExpires = store.StatusSuccess, 0, now, time.Time{}
				jj.Steps = append(jj.Steps,
					&store.Step{Index: 0, Name: "checkout", Status: store.StatusSuccess, Attempts: 1, StartedAt: now, FinishedAt: now},
					&store.Step{Index: 1, Name: "go test ./...", Status: store.StatusSuccess, Attempts: 1, StartedAt: now, FinishedAt: now})
			}
			bd.Status = store.StatusRunning
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendLogs appends batches of log chunks to one running job, as
// an agent's buffered reports do; MB/s is log data stored per second.
func BenchmarkAppendLogs(b *testing.B) {
	for _, bc := range []struct{ chunks, size int }{{16, 4 << 10}, {64, 256}, {1, 1 << 20}} {
		b.Run(fmt.Sprintf("%dx%dB", bc.chunks, bc.size), func(b *testing.B) {
			r, s := benchRepo(b)
			ctx := context.Background()
			if err := s.CreateBuild(ctx, benchBuild(r)); err != nil {
				b.Fatal(err)
			}
			_, j, err := s.Lease(ctx, "agent", []string{"linux"}, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			line := bytes.Repeat([]byte("ok  \tgithub.com/gantry-ci/gantry/internal/x\t0.123s\n"), bc.size/50+1)[:bc.size]
			b.SetBytes(int64(bc.chunks * bc.size))
			for b.Loop() {
				chunks := make([]*store.LogChunk, bc.chunks)
				for i := range chunks {
					chunks[i] = &store.LogChunk{Step: 1, Data: line}
				}
				if err := s.AppendLogs(ctx, j.ID, j.LeaseToken, chunks); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
