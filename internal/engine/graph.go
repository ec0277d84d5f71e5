package engine

import (
	"fmt"

	"github.com/gantry-ci/gantry/internal/eval"
	"github.com/gantry-ci/gantry/internal/plan"
)

// Graph decides, as jobs of a plan finish, which may start next and which
// will never run. It is the whole of the ordering logic: Run drives one in
// memory, and the server drives one over the jobs it keeps in its database,
// so a pipeline is ordered the same way wherever it runs. It does no I/O and
// is not safe for concurrent use.
//
// A job is decided the moment everything it needs has finished: it becomes
// ready when its `if:` holds (by default: when every job it needs passed),
// and is skipped otherwise. Nothing waits for a whole "stage".
type Graph struct {
	plan  *plan.Plan
	nodes map[string]*node
	order []*node // plan order
	ready []*node // decided to run, not yet handed out by Next
}

type node struct {
	job        *plan.Job
	status     Status
	waiting    int // needs not yet finished
	decided    bool
	dependents []*node
	needs      map[string]string
}

// Decision is a job that ended without running, and why.
type Decision struct {
	Job    string
	Status Status
	Reason string
}

// NewGraph returns the graph of p with every job pending.
func NewGraph(p *plan.Plan) *Graph {
	g := &Graph{plan: p, nodes: make(map[string]*node, len(p.Jobs))}
	for _, j := range p.Jobs {
		n := &node{job: j, status: Pending, waiting: len(j.Needs)}
		g.nodes[j.Name] = n
		g.order = append(g.order, n)
	}
	for _, n := range g.order {
		for _, need := range n.job.Needs {
			d := g.nodes[need]
			d.dependents = append(d.dependents, n)
		}
	}
	return g
}

// Start decides the jobs that need nothing. It returns those that will not
// run (their if: is false).
func (g *Graph) Start() []Decision {
	var out []Decision
	for _, n := range g.order {
		if n.waiting == 0 && !n.decided {
			out = g.decide(n, out)
		}
	}
	return out
}

// Next hands out a job that may start now, in plan order, and marks it
// running; nil when none may.
func (g *Graph) Next() *plan.Job {
	if len(g.ready) == 0 {
		return nil
	}
	n := g.ready[0]
	g.ready = g.ready[1:]
	n.status = Running
	return n.job
}

// Finish records how a job handed out by Next ended, and decides the jobs
// that were waiting for it. It returns those that will not run.
func (g *Graph) Finish(name string, st Status) []Decision {
	n := g.nodes[name]
	if n == nil || n.status != Running {
		return nil
	}
	n.status = st
	return g.settle(n, nil)
}

// Stop ends every job that has not started: skipped when cause is a
// fail-fast stop, cancelled otherwise. Jobs that are running are left to
// their caller.
func (g *Graph) Stop(cause error) []Decision {
	st, reason := notStarted(cause)
	var out []Decision
	g.ready = nil
	for _, n := range g.order {
		if n.status == Pending {
			n.status, n.decided = st, true
			out = append(out, Decision{Job: n.job.Name, Status: st, Reason: reason})
		}
	}
	return out
}

// Needs returns how each job that name needs ended, keyed by job name and
// also by the base name of a matrix job (the worst of its cells), for
// needs.<job>.status in expressions.
func (g *Graph) Needs(name string) map[string]string {
	if n := g.nodes[name]; n != nil {
		return n.needs
	}
	return nil
}

// Done reports whether every job has finished or been decided not to run.
func (g *Graph) Done() bool {
	for _, n := range g.order {
		if n.status == Pending || n.status == Running {
			return false
		}
	}
	return true
}

func (g *Graph) settle(n *node, out []Decision) []Decision {
	for _, d := range n.dependents {
		d.waiting--
		if d.waiting == 0 && !d.decided {
			out = g.decide(d, out)
		}
	}
	return out
}

// decide makes a job whose needs have all finished ready, or ends it.
func (g *Graph) decide(n *node, out []Decision) []Decision {
	n.decided = true
	ok, st, reason := g.evaluate(n)
	if ok {
		g.ready = append(g.ready, n)
		return out
	}
	n.status = st
	out = append(out, Decision{Job: n.job.Name, Status: st, Reason: reason})
	return g.settle(n, out)
}

var worse = map[Status]int{Success: 0, Skipped: 1, Cancelled: 2, Error: 3, Failure: 4}

func (g *Graph) evaluate(n *node) (bool, Status, string) {
	needs := map[string]string{}
	failed := ""
	var ec eval.Context
	for _, name := range n.job.Needs {
		d := g.nodes[name]
		needs[name] = string(d.status)
		if !d.status.Passed() && failed == "" {
			failed = fmt.Sprintf("needs %s: %s", name, d.status)
		}
		switch d.status {
		case Failure, Error:
			ec.Failed = true
		case Skipped:
			ec.Skipped = true
		case Cancelled:
			ec.Cancelled = true
		}
		if base := d.job.Base; base != name {
			if cur, seen := needs[base]; !seen || worse[d.status] > worse[Status(cur)] {
				needs[base] = string(d.status)
			}
		}
	}
	n.needs = needs
	if n.job.If == "" {
		if failed != "" {
			return false, Skipped, failed
		}
		return true, "", ""
	}
	cond, err := eval.CompileCondition(n.job.If)
	if err != nil {
		return false, Error, err.Error()
	}
	full := evalContext(g.plan, n.job, needs, g.plan.Env)
	full.Failed, full.Skipped, full.Cancelled = ec.Failed, ec.Skipped, ec.Cancelled
	ok, err := cond.Eval(full)
	if err != nil {
		return false, Error, err.Error()
	}
	if ok {
		return true, "", ""
	}
	if failed != "" {
		return false, Skipped, failed
	}
	return false, Skipped, "if: " + cond.String() + " is false"
}
