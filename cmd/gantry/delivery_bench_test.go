package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkDeliveryPushToStaging pushes a new commit to main and times it
// until its release runs on staging: the webhook, the build (one job that
// makes and uploads a small artifact), the release, the deployment (which
// places and checks the artifact, then copies it), on the built-in agent.
// It reports the median and the slowest (ms-median, ms-max).
func BenchmarkDeliveryPushToStaging(b *testing.B) {
	out := b.TempDir()
	repoDir, sha := makeRepo(b, map[string]string{".gantry.yml": deliveryPipeline(out, "")})
	s := startServer(b, b.TempDir())
	if _, errOut, code := s.cli("repo", "add", "acme/app", "--url", repoDir, "--webhook-secret", "k"); code != 0 {
		b.Fatal(errOut)
	}
	live := func(release string) bool {
		envs, err := s.client().Environments(context.Background(), "acme/app")
		if err != nil {
			return false
		}
		for _, e := range envs {
			if e.Name == "staging" && e.Current != nil && e.Current.Release == release {
				return true
			}
		}
		return false
	}
	var took []float64
	for i := range b.N + 1 { // the first warms the mirror and the agent up
		if i > 0 {
			sha = commit(b, repoDir, map[string]string{"README": fmt.Sprint(i)})
		}
		start := time.Now()
		a := s.send(pushDelivery(b, "github", "acme/app", "main", sha, fmt.Sprint("d", i), "k"))
		if len(a.body.Builds) != 1 {
			b.Fatalf("push = %d %+v", a.status, a.body)
		}
		release := fmt.Sprintf("main-%d", a.body.Builds[0].Number)
		for !live(release) {
			if time.Since(start) > time.Minute {
				b.Fatalf("%s not on staging after a minute\nserver log:\n%s", release, s.stderr)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if i > 0 {
			took = append(took, float64(time.Since(start).Microseconds())/1000)
		}
	}
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2], "ms-median")
	b.ReportMetric(took[len(took)-1], "ms-max")
	b.ReportMetric(0, "ns/op")
}
