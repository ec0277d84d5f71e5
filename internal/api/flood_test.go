//go:build !race

package api_test

// The flood runs without the race detector: under it the pure-Go SQLite
// is too slow for 10,000 jobs, so test.sh runs this file in a second,
// race-free pass (go test -run Flood ./internal/api).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/agent"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/store"
	"github.com/gantry-ci/gantry/internal/store/postgres"
	"github.com/gantry-ci/gantry/internal/store/postgres/pgtest"
)

// A flood of 10,000 queued jobs taken by 20 agents over HTTP: every job
// runs exactly once and every build succeeds, on SQLite and on PostgreSQL.
func TestAgentFlood(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { flood(t, newAgentEnv(t)) })
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(t.Context(), pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		flood(t, newAgentEnvOn(t, st))
	})
}

func flood(t *testing.T, e *agentEnv) {
	ctx := t.Context()
	start := time.Now()

	const builds, jobsPer, agents = 1000, 10, 20
	r, err := e.st.Repo(ctx, "acme/app")
	if err != nil {
		t.Fatal(err)
	}
	var pipeline strings.Builder
	pipeline.WriteString("jobs:\n")
	for j := range jobsPer {
		fmt.Fprintf(&pipeline, "  j%02d: {steps: [\"true\"]}\n", j)
	}
	var ids []int64
	for range builds {
		b := &store.Build{RepoID: r.ID, Status: store.StatusQueued, Event: "push", Branch: fmt.Sprintf("b%d", len(ids)%50),
			Commit: "0123456789abcdef0123456789abcdef01234567", Pipeline: []byte(pipeline.String())}
		for j := range jobsPer {
			b.Jobs = append(b.Jobs, &store.Job{Name: fmt.Sprintf("j%02d", j), Position: j, Status: store.StatusQueued, ExitCode: -1})
		}
		if err := e.st.CreateBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}

	var mu sync.Mutex
	runs := map[int64]int{}
	var done atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			remote := agent.NewRemote([]string{e.url}, e.a, nil)
			self := &store.Agent{Name: fmt.Sprintf("host-%d", i), Labels: []string{"linux"}, Capacity: 1}
			for {
				a, err := remote.Lease(runCtx, self)
				if err != nil {
					if runCtx.Err() == nil {
						t.Errorf("Lease = %v", err)
					}
					return
				}
				mu.Lock()
				runs[a.JobID]++
				mu.Unlock()
				if err := remote.Started(ctx, a); err != nil {
					t.Errorf("Started = %v", err)
				}
				if err := remote.Finish(ctx, a, &engine.JobResult{Name: a.Job, Status: engine.Success}); err != nil {
					t.Errorf("Finish = %v", err)
				}
				if done.Add(1) == builds*jobsPer+1 {
					stop()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d jobs in %v", done.Load(), time.Since(start))
	if n := done.Load(); n != builds*jobsPer+1 { // and the job newAgentEnv queued
		for id, n := range runs {
			if n != 1 {
				t.Logf("job %d ran %d times", id, n)
			}
		}
		t.Fatalf("%d jobs ran, want %d", n, builds*jobsPer+1)
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("job %d ran %d times", id, n)
		}
	}
	for _, id := range ids {
		if b, err := e.st.Build(ctx, id); err != nil || b.Status != store.StatusSuccess {
			t.Fatalf("build %d = %v, %v; want success", id, b.Status, err)
		}
	}
}
