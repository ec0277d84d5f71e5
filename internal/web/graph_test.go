package web

import (
	"testing"

	"github.com/gantry-ci/gantry/internal/store"
)

func TestLayout(t *testing.T) {
	t.Parallel()
	jobs := []*store.Job{
		{Name: "lint", Status: store.StatusSuccess},
		{Name: "test", Status: store.StatusFailure},
		{Name: "build", Status: store.StatusSkipped},
		{Name: "a job with a rather long matrix name (go: 1.23)", Status: store.StatusRunning},
		{Name: "deploy", Status: store.StatusPending},
	}
	needs := map[string][]string{"build": {"lint", "test"}, "deploy": {"build", "missing"}}
	g := layout(jobs, needs, "test")
	type pos struct{ col, row int }
	want := map[string]pos{"lint": {0, 0}, "test": {0, 1}, "build": {1, 0}, "a job with a rather long matrix name (go: 1.23)": {0, 2}, "deploy": {2, 0}}
	for _, n := range g.Nodes {
		w := want[n.Name]
		if n.X != pad+w.col*(nodeW+gapX) || n.Y != pad+w.row*(nodeH+gapY) {
			t.Errorf("layout: %s at (%d, %d), want column %d row %d", n.Name, n.X, n.Y, w.col, w.row)
		}
		if n.Selected != (n.Name == "test") {
			t.Errorf("layout: %s selected = %v", n.Name, n.Selected)
		}
	}
	if got := g.Nodes[3].Label; got != "a job with a rather …" {
		t.Errorf("layout: long label = %q, want it cut to %d characters", got, maxLabel)
	}
	if len(g.Edges) != 3 {
		t.Errorf("layout: %d edges, want 3 (lint→build, test→build, build→deploy; the missing need drawn not at all)", len(g.Edges))
	}
	if g.Width != pad+3*nodeW+2*gapX+pad || g.Height != pad+3*nodeH+2*gapY+pad {
		t.Errorf("layout: size %dx%d, want 3 columns by 3 rows", g.Width, g.Height)
	}
}
