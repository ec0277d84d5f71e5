package main

// Speed of the web UI, measured in a real browser against the real
// binary (not timed tests: run them by hand, figures in docs/web.md):
//
//	go test -run '^$' -bench BenchmarkWeb -benchtime 5x ./cmd/gantry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gantry-ci/gantry/internal/api"
)

// benchSetup starts a server with one repo whose pipeline is the given
// file, signs a browser in as the admin, and returns both.
func benchSetup(b *testing.B, pipeline string, serverFlags ...string) (*testServer, *page) {
	b.Helper()
	srv := startServer(b, b.TempDir(), serverFlags...)
	dir, _ := makeRepo(b, map[string]string{".gantry.yml": pipeline})
	if _, err := srv.client().AddRepo(context.Background(), api.NewRepo{Name: "acme/bench", CloneURL: dir, WebhookSecret: "s"}); err != nil {
		b.Fatal(err)
	}
	p := &page{t: b, ctx: newBrowser(b, 1280, 900), url: srv.url}
	p.open("/")
	p.signIn(testToken)
	return srv, p
}

// BenchmarkWebBuildPage100kLines opens the page of a build whose job
// printed 100,000 lines, and reports the browser's first contentful paint
// (fcp-ms, from the start of the navigation) and when the page had loaded
// (load-ms). The page shows the log's last 1,000 lines.
func BenchmarkWebBuildPage100kLines(b *testing.B) {
	srv, p := benchSetup(b, `
jobs:
  big:
    steps:
      - run: seq -f 'line %g of a long log, with some text to make it look like output' 1 100000
`)
	bd, err := srv.client().Trigger(context.Background(), "acme/bench", api.Trigger{})
	if err != nil {
		b.Fatal(err)
	}
	if done := srv.waitBuild(bd.ID, 2*time.Minute); done.Status != "success" {
		b.Fatalf("build = %s, want success", done.Status)
	}
	fcp, load := firstPaints(b, p, fmt.Sprintf("/builds/%d", bd.ID))
	if n := p.count("#log-lines .l"); n != 1000 {
		b.Errorf("the page shows %d lines, want the last 1000", n)
	}
	if got := evalJS[string](p, `[...document.querySelectorAll("#log-lines .l")].pop().textContent`); got != "line 100000 of a long log, with some text to make it look like output" {
		b.Errorf("the last line shown is %q", got)
	}
	b.ReportMetric(mean(fcp), "fcp-ms")
	b.ReportMetric(slices.Max(fcp), "max-fcp-ms")
	b.ReportMetric(mean(load), "load-ms")
}

// BenchmarkWebLogLatency follows a running build's log in the page and
// reports how long after a step printed a line the line was in the page:
// the step prints its clock, the page notes its own when the line is
// added (one machine, one clock). 50 lines, 100ms apart, per iteration.
func BenchmarkWebLogLatency(b *testing.B) {
	b.Run("builtin", func(b *testing.B) { benchLogLatency(b, false) })
	b.Run("remote", func(b *testing.B) { benchLogLatency(b, true) })
}

// benchLogLatency is BenchmarkWebLogLatency with the job on the server's
// built-in agent, or on a `gantry agent` of its own (remote).
func benchLogLatency(b *testing.B, remote bool) {
	gate := filepath.Join(b.TempDir(), "gate")
	var flags []string
	if remote {
		flags = []string{"--agents", "0"}
	}
	srv, p := benchSetup(b, `
jobs:
  ticks:
    steps:
      - run: while [ ! -e `+gate+` ]; do sleep 0.02; done; for i in $(seq 1 50); do echo "tick $(date +%s%N)"; sleep 0.1; done
`, flags...)
	if remote {
		srv.startAgent("remote", srv.agentToken("bench"), b.TempDir())
	}
	var lat []float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		os.Remove(gate)
		bd, err := srv.client().Trigger(context.Background(), "acme/bench", api.Trigger{})
		if err != nil {
			b.Fatal(err)
		}
		waitJob(b, srv, bd.ID, "ticks", "running")
		p.open(fmt.Sprintf("/builds/%d", bd.ID))
		evalJS[bool](p, `(() => {
			window.lat = [];
			new MutationObserver(ms => {
				const now = Date.now();
				for (const m of ms) for (const n of m.addedNodes) {
					const t = /^tick (\d+)$/.exec(n.textContent || "");
					if (t) window.lat.push(now - Number(t[1].slice(0, -6)) - Number("0." + t[1].slice(-6)));
				}
			}).observe(document.getElementById("log-lines"), {childList: true});
			return true;
		})()`)
		b.StartTimer()
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		p.waitFor("the build's end", `document.documentElement.dataset.buildEnded === "1"`, 60*time.Second)
		b.StopTimer()
		got := evalJS[[]float64](p, `window.lat`)
		if len(got) != 50 {
			b.Fatalf("the page saw %d tick lines arrive, want 50", len(got))
		}
		lat = append(lat, got...)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*95/100], "p95-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
}

// firstPaints opens url b.N times, each a fresh page, and returns each
// time's first contentful paint and load event, in ms from the start of
// the navigation; only the openings are timed.
func firstPaints(b *testing.B, p *page, url string) (fcp, load []float64) {
	b.Helper()
	b.ResetTimer()
	for range b.N {
		p.open("/healthz") // leave the page, so each open is a fresh one
		p.open(url)
		p.waitFor("first paint", `performance.getEntriesByName("first-contentful-paint").length > 0`, 10*time.Second)
		fcp = append(fcp, evalJS[float64](p, `performance.getEntriesByName("first-contentful-paint")[0].startTime`))
		load = append(load, evalJS[float64](p, `performance.getEntriesByType("navigation")[0].loadEventEnd`))
	}
	b.StopTimer()
	return fcp, load
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// BenchmarkWebEnvironments200Releases opens the environments page of a
// repo with 200 releases, each deployed to staging by itself, and reports
// the browser's first contentful paint (fcp-ms) and load event (load-ms),
// as BenchmarkWebBuildPage100kLines does.
func BenchmarkWebEnvironments200Releases(b *testing.B) {
	srv, p := benchSetup(b, `
jobs:
  build:
    steps: ["true"]
environments:
  staging:
    deploy: {branch: main}
    steps: ["true"]
  production:
    promote-from: staging
    approvals: {required: 1, author-may-approve: true}
    steps: ["true"]
`)
	ctx := context.Background()
	c := srv.client()
	var last int64
	for range 200 {
		bd, err := c.Trigger(ctx, "acme/bench", api.Trigger{})
		if err != nil {
			b.Fatal(err)
		}
		last = bd.ID
	}
	srv.waitBuild(last, 5*time.Minute)
	waitFor(b, 10*time.Minute, "200 releases deployed to staging", func() bool {
		ds, err := c.Deployments(ctx, "acme/bench", "staging", 1000)
		if err != nil || len(ds) < 200 {
			return false
		}
		for _, d := range ds {
			if d.State != "succeeded" {
				return false
			}
		}
		return true
	})
	if _, err := c.Promote(ctx, api.PromoteRequest{Repo: "acme/bench", From: "staging", To: "production"}); err != nil {
		b.Fatal(err)
	}
	fcp, load := firstPaints(b, p, "/environments/acme/bench")
	if n := p.count("table.matrix tbody tr"); n != 20 {
		b.Errorf("the matrix shows %d releases, want the newest 20", n)
	}
	if n := p.count("form.decide"); n != 1 {
		b.Errorf("the admin sees %d approval forms, want the production deployment's", n)
	}
	b.ReportMetric(mean(fcp), "fcp-ms")
	b.ReportMetric(slices.Max(fcp), "max-fcp-ms")
	b.ReportMetric(mean(load), "load-ms")
}
