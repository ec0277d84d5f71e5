package engine

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

func newGraph(t *testing.T, src string) *Graph {
	t.Helper()
	p, err := spec.Parse("g.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return NewGraph(plan.New(p, plan.Trigger{Event: plan.EventPush, Branch: "main"}))
}

func names(g *Graph) []string {
	var out []string
	for j := g.Next(); j != nil; j = g.Next() {
		out = append(out, j.Name)
	}
	return out
}

func TestGraphOrdersByNeedsNotStages(t *testing.T) {
	t.Parallel()
	g := newGraph(t, `
jobs:
  slow: {steps: ["true"]}
  fast: {steps: ["true"]}
  after-fast: {needs: [fast], steps: ["true"]}
  after-both: {needs: [slow, after-fast], steps: ["true"]}
`)
	if d := g.Start(); d != nil {
		t.Fatalf("Start() = %v, want no decisions", d)
	}
	if got, want := names(g), []string{"slow", "fast"}; !cmp.Equal(got, want) {
		t.Fatalf("ready at start = %v, want %v", got, want)
	}
	g.Finish("fast", Success)
	if got, want := names(g), []string{"after-fast"}; !cmp.Equal(got, want) {
		t.Fatalf("ready after fast = %v, want %v (slow still running)", got, want)
	}
	g.Finish("after-fast", Success)
	if got := names(g); got != nil {
		t.Fatalf("ready before slow finished = %v, want none", got)
	}
	g.Finish("slow", Success)
	if got, want := names(g), []string{"after-both"}; !cmp.Equal(got, want) {
		t.Fatalf("ready after slow = %v, want %v", got, want)
	}
	g.Finish("after-both", Success)
	if !g.Done() {
		t.Error("Done() = false after every job finished")
	}
}

func TestGraphSkipsAndConditions(t *testing.T) {
	t.Parallel()
	g := newGraph(t, `
jobs:
  build: {matrix: {os: [linux, mac]}, steps: ["true"]}
  test: {needs: [build], steps: ["true"]}
  notify: {needs: [test], if: always(), steps: ["true"]}
  nightly: {if: event == 'schedule', steps: ["true"]}
  report: {needs: [build], if: "always() && needs.build.status == 'failure'", steps: ["true"]}
`)
	if got, want := g.Start(), []Decision{{"nightly", Skipped, "if: event == 'schedule' is false"}}; !cmp.Equal(got, want) {
		t.Errorf("Start() = %v, want %v", got, want)
	}
	if got, want := names(g), []string{"build[os=linux]", "build[os=mac]"}; !cmp.Equal(got, want) {
		t.Fatalf("ready = %v, want %v", got, want)
	}
	if d := g.Finish("build[os=linux]", Success); d != nil {
		t.Errorf("Finish(linux) = %v, want nothing decided while mac runs", d)
	}
	got := g.Finish("build[os=mac]", Failure)
	want := []Decision{{"test", Skipped, "needs build[os=mac]: failure"}}
	if !cmp.Equal(got, want) {
		t.Errorf("Finish(mac) = %v, want %v", got, want)
	}
	// report's if: sees the worst cell under the matrix job's own name;
	// notify runs whatever happened because of always().
	if got, want := names(g), []string{"notify", "report"}; !cmp.Equal(got, want) {
		t.Errorf("ready = %v, want %v", got, want)
	}
	if got := g.Needs("report")["build"]; got != "failure" {
		t.Errorf("Needs(report)[build] = %q, want failure", got)
	}
}

func TestGraphStop(t *testing.T) {
	t.Parallel()
	g := newGraph(t, `
jobs:
  a: {steps: ["true"]}
  b: {needs: [a], steps: ["true"]}
  c: {steps: ["true"]}
`)
	g.Start()
	if j := g.Next(); j.Name != "a" {
		t.Fatalf("Next() = %s, want a", j.Name)
	}
	got := g.Stop(errors.New("interrupted"))
	want := []Decision{{"b", Cancelled, "not started: interrupted"}, {"c", Cancelled, "not started: interrupted"}}
	if !cmp.Equal(got, want) {
		t.Errorf("Stop() = %v, want %v", got, want)
	}
	if got := g.Stop(&failFastError{job: "a"}); got != nil {
		t.Errorf("second Stop() = %v, want nothing left", got)
	}
	if g.Done() {
		t.Error("Done() = true while a still runs")
	}
}

// A job decided while Start walks the roots is handed out once, and a
// skipped need makes success() false without making failure() true.
func TestGraphSkippedNeeds(t *testing.T) {
	t.Parallel()
	g := newGraph(t, `
jobs:
  deploy: {if: "false", steps: ["true"]}
  cleanup: {needs: [deploy], if: always(), steps: ["true"]}
  notify: {needs: [deploy], if: failure(), steps: ["true"]}
  after: {needs: [deploy], steps: ["true"]}
`)
	got := g.Start()
	want := []Decision{
		{"deploy", Skipped, "if: false is false"},
		{"notify", Skipped, "needs deploy: skipped"},
		{"after", Skipped, "needs deploy: skipped"},
	}
	if !cmp.Equal(got, want) {
		t.Errorf("Start() = %v, want %v", got, want)
	}
	if got, want := names(g), []string{"cleanup"}; !cmp.Equal(got, want) {
		t.Errorf("handed out %v, want %v once", got, want)
	}
}
