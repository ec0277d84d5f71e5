package api_test

import (
	"context"
	"fmt"
	"slices"
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

// The agent figures of the README: queued -> leased by an idle agent, and
// lease+complete cycles per second with 50 agents, over real HTTP on each
// store.
//
//	go test -run '^$' -bench Agent -benchtime 2000x ./internal/api   (GANTRY_TEST_POSTGRES set, as test.sh does)

func benchStores(b *testing.B, fn func(b *testing.B, e *agentEnv)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, newAgentEnv(b)) })
	b.Run("postgres", func(b *testing.B) {
		st, err := postgres.Open(b.Context(), pgtest.URL(b))
		if err != nil {
			b.Fatal(err)
		}
		fn(b, newAgentEnvOn(b, st))
	})
}

// queueJob stores a build of branch with one queued job and wakes the
// agents, as the server does when a webhook queues a build. (Pushes to one
// branch would queue behind each other: a flood of runnable builds comes
// from many branches.)
func queueJob(b *testing.B, e *agentEnv, repoID int64, branch string) {
	bd := &store.Build{RepoID: repoID, Status: store.StatusQueued, Event: "push", Branch: branch,
		Commit:   "0123456789abcdef0123456789abcdef01234567",
		Pipeline: []byte("jobs: {test: {steps: [\"true\"]}}\n"),
		Jobs:     []*store.Job{{Name: "test", Status: store.StatusQueued, ExitCode: -1}}}
	if err := e.st.CreateBuild(b.Context(), bd); err != nil {
		b.Fatal(err)
	}
	e.queue.Notify()
}

// BenchmarkAgentQueuedToLeased: an idle agent waits in a long poll; each
// iteration queues a job and times until the agent holds its lease.
func BenchmarkAgentQueuedToLeased(b *testing.B) {
	benchStores(b, func(b *testing.B, e *agentEnv) {
		ctx := b.Context()
		r, err := e.st.Repo(ctx, "acme/app")
		if err != nil {
			b.Fatal(err)
		}
		remote := agent.NewRemote([]string{e.url}, e.a, nil)
		self := &store.Agent{Name: "idle", Labels: []string{"linux"}, Capacity: 1}
		// The job newAgentEnv queued, first.
		if a, err := remote.Lease(ctx, self); err != nil {
			b.Fatal(err)
		} else {
			remote.Finish(ctx, a, &engine.JobResult{Name: a.Job, Status: engine.Success})
		}
		leased := make(chan time.Time)
		go func() {
			for {
				a, err := remote.Lease(ctx, self)
				if err != nil {
					return
				}
				leased <- time.Now()
				remote.Finish(ctx, a, &engine.JobResult{Name: a.Job, Status: engine.Success})
			}
		}()
		var samples []time.Duration
		for b.Loop() {
			time.Sleep(2 * time.Millisecond) // the agent is back in its long poll
			start := time.Now()
			queueJob(b, e, r.ID, "main")
			samples = append(samples, (<-leased).Sub(start))
		}
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "ms-p99")
		b.ReportMetric(0, "ns/op")
	})
}

// BenchmarkAgentCycles50: 50 agents lease, start and finish b.N one-job
// builds queued up front.
func BenchmarkAgentCycles50(b *testing.B) {
	benchStores(b, func(b *testing.B, e *agentEnv) {
		ctx := b.Context()
		r, err := e.st.Repo(ctx, "acme/app")
		if err != nil {
			b.Fatal(err)
		}
		n := b.N
		for i := range n {
			queueJob(b, e, r.ID, fmt.Sprintf("branch-%d", i%100))
		}
		var done atomic.Int64
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				remote := agent.NewRemote([]string{e.url}, e.a, nil)
				self := &store.Agent{Name: fmt.Sprintf("host-%d", i), Labels: []string{"linux"}, Capacity: 1}
				for {
					a, err := remote.Lease(runCtx, self)
					if err != nil {
						return
					}
					remote.Started(ctx, a)
					remote.Finish(ctx, a, &engine.JobResult{Name: a.Job, Status: engine.Success})
					if done.Add(1) == int64(n)+1 {
						stop()
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "cycles/s")
	})
}
