package web

import (
	"fmt"
	"unicode/utf8"

	"github.com/gantry-ci/gantry/internal/store"
)

// graph is a build's jobs laid out for an SVG drawn by the server: one
// column per depth in the needs DAG (a job sits one column right of the
// deepest job it needs), jobs in plan order within a column, and an edge
// from each job to each job that needs it.
type graph struct {
	Width, Height int
	Nodes         []node
	Edges         []edge
}

type node struct {
	Name, Label, Status string
	X, Y, W, H          int
	// IconX, TextX and TextY place the status icon and the label.
	IconX, TextX, TextY int
	Selected            bool
}

type edge struct {
	D      string // SVG path
	Status string // of the job at its start: a finished need draws solid
}

const (
	nodeW, nodeH = 168, 34
	gapX, gapY   = 48, 14
	pad          = 8
	maxLabel     = 21
)

// layout lays out jobs (in plan order) given what each needs. Needs that
// name no job are ignored; a cycle cannot happen (spec rejects them) but
// would only put jobs in column 0.
func layout(jobs []*store.Job, needs map[string][]string, selected string) graph {
	index := map[string]int{}
	for i, j := range jobs {
		index[j.Name] = i
	}
	depth := make([]int, len(jobs))
	// Plan order lists a job after the jobs it needs, so one pass in order
	// settles every depth; further passes cover any other order.
	for range jobs {
		changed := false
		for i, j := range jobs {
			for _, n := range needs[j.Name] {
				if k, ok := index[n]; ok && depth[k]+1 > depth[i] && depth[k]+1 < len(jobs) {
					depth[i], changed = depth[k]+1, true
				}
			}
		}
		if !changed {
			break
		}
	}
	rows := map[int]int{} // column -> jobs placed in it so far
	var g graph
	for i, j := range jobs {
		col := depth[i]
		row := rows[col]
		rows[col]++
		label := j.Name
		if utf8.RuneCountInString(label) > maxLabel {
			label = string([]rune(label)[:maxLabel-1]) + "…"
		}
		x, y := pad+col*(nodeW+gapX), pad+row*(nodeH+gapY)
		g.Nodes = append(g.Nodes, node{Name: j.Name, Label: label, Status: j.Status, X: x, Y: y, W: nodeW, H: nodeH,
			IconX: x + 9, TextX: x + 26, TextY: y + nodeH/2 + 5, Selected: j.Name == selected})
		g.Width = max(g.Width, x+nodeW+pad)
		g.Height = max(g.Height, y+nodeH+pad)
	}
	for i, j := range jobs {
		to := g.Nodes[i]
		for _, n := range needs[j.Name] {
			k, ok := index[n]
			if !ok {
				continue
			}
			from := g.Nodes[k]
			x1, y1 := from.X+from.W, from.Y+from.H/2
			x2, y2 := to.X, to.Y+to.H/2
			mid := (x1 + x2) / 2
			g.Edges = append(g.Edges, edge{D: fmt.Sprintf("M%d %dC%d %d %d %d %d %d", x1, y1, mid, y1, mid, y2, x2, y2), Status: from.Status})
		}
	}
	return g
}
