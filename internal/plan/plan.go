// Package plan turns a parsed pipeline and a trigger into the graph of jobs
// that will run: it decides whether the trigger selects the pipeline at all
// (Match), expands each matrix into one job per cell, and resolves needs onto
// the expanded names. It is pure: no I/O, no clock, no evaluation of `if:`
// (which may depend on how other jobs ended, so the engine does it).
package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/gantry-ci/gantry/internal/spec"
)

// Events a build can be started by.
const (
	EventPush        = "push"
	EventPullRequest = "pull_request"
	EventTag         = "tag"
	EventSchedule    = "schedule"
	EventManual      = "manual"
	// EventDeploy is a deployment: a build whose one job runs an
	// environment's steps for a release (Trigger.Environment, .Release).
	EventDeploy = "deploy"
)

// Trigger is what started a build.
type Trigger struct {
	Event  string `json:"event"`
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	Commit string `json:"commit,omitempty"`
	Repo   string `json:"repo,omitempty"`
	// BaseBranch is a pull request's target branch.
	BaseBranch string `json:"base_branch,omitempty"`
	// ChangedPaths are the files the push or pull request changed; nil means
	// unknown, and then paths filters select the build.
	ChangedPaths []string `json:"-"`
	BuildNumber  int      `json:"build_number,omitempty"`
	// Environment and Release, on a deployment, name the environment and
	// the version of the release deployed there.
	Environment string `json:"environment,omitempty"`
	Release     string `json:"release,omitempty"`
}

// Plan is the graph of jobs of one build.
type Plan struct {
	Trigger Trigger           `json:"trigger"`
	Env     map[string]string `json:"env,omitempty"`
	// Jobs are in file order, matrix cells in place of their job.
	Jobs []*Job `json:"jobs"`
	// Limits are the locks that the pipeline's concurrency limits stand
	// for, with their capacities: every job holds them, on top of its own.
	Limits map[string]int `json:"limits,omitempty"`
}

// LimitLock names the lock that stands for a concurrency limit: of the
// repository ("repo:acme/app") or of one of its branches
// ("branch:acme/app@main").
func LimitLock(scope, repo, branch string) string {
	if scope == "branch" {
		return "branch:" + repo + "@" + branch
	}
	return "repo:" + repo
}

// Job is one job to run: a job of the file, or one cell of its matrix.
type Job struct {
	// Name is the job's name, or for a matrix cell the job's name followed by
	// the cell, such as test[go=1.23,os=linux].
	Name string `json:"name"`
	// Base is the name of the job in the file.
	Base string `json:"base,omitempty"`
	// Matrix holds the cell's values; MatrixKeys their order.
	Matrix     map[string]string `json:"matrix,omitempty"`
	MatrixKeys []string          `json:"-"`
	// Needs are expanded names: needing a matrix job means needing every cell.
	Needs     []string          `json:"needs,omitempty"`
	If        string            `json:"if,omitempty"`
	RunsOn    []string          `json:"runs_on,omitempty"`
	Image     string            `json:"image,omitempty"`
	Pull      string            `json:"pull,omitempty"`
	Services  []*spec.Service   `json:"services,omitempty"`
	Locks     []string          `json:"locks,omitempty"`
	Artifacts []string          `json:"artifacts,omitempty"`
	Secrets   []string          `json:"secrets,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Timeout   time.Duration     `json:"timeout,omitempty"`
	Steps     []*spec.Step      `json:"steps"`
}

// Match reports whether p's `on` section selects the trigger; when it does
// not, reason says why in a sentence fit for a user. Manual builds are always
// selected.
func Match(on spec.Triggers, t Trigger) (ok bool, reason string) {
	none := on.Push == nil && on.PullRequest == nil && len(on.Schedule) == 0
	switch t.Event {
	case EventManual:
		return true, ""
	case EventSchedule:
		if len(on.Schedule) == 0 {
			return false, "the pipeline has no schedule trigger"
		}
		return true, ""
	case EventPush, EventTag:
		if none {
			return true, ""
		}
		pt := on.Push
		if pt == nil {
			return false, "the pipeline is not triggered by push"
		}
		if t.Event == EventTag || t.Tag != "" {
			if len(pt.Tags) == 0 && len(pt.Branches) > 0 {
				return false, fmt.Sprintf("tag %q: on.push lists branches but no tags", t.Tag)
			}
			if len(pt.Tags) > 0 && !matchAny(pt.Tags, t.Tag) {
				return false, fmt.Sprintf("tag %q matches none of on.push.tags %v", t.Tag, pt.Tags)
			}
		} else {
			if len(pt.Tags) > 0 && len(pt.Branches) == 0 {
				return false, fmt.Sprintf("branch %q: on.push lists tags but no branches", t.Branch)
			}
			if ok, why := matchBranch(pt.Branches, pt.BranchesIgnore, t.Branch, "on.push"); !ok {
				return false, why
			}
		}
		return matchPaths(pt.Paths, pt.PathsIgnore, t.ChangedPaths, "on.push")
	case EventPullRequest:
		if none {
			return true, ""
		}
		pr := on.PullRequest
		if pr == nil {
			return false, "the pipeline is not triggered by pull_request"
		}
		if ok, why := matchBranch(pr.Branches, pr.BranchesIgnore, t.BaseBranch, "on.pull_request"); !ok {
			return false, why
		}
		return matchPaths(pr.Paths, pr.PathsIgnore, t.ChangedPaths, "on.pull_request")
	}
	return false, fmt.Sprintf("unknown event %q", t.Event)
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := doublestar.Match(p, s); ok {
			return true
		}
	}
	return false
}

func matchBranch(include, ignore []string, branch, where string) (bool, string) {
	if len(include) > 0 && !matchAny(include, branch) {
		return false, fmt.Sprintf("branch %q matches none of %s.branches %v", branch, where, include)
	}
	if matchAny(ignore, branch) {
		return false, fmt.Sprintf("branch %q matches %s.branches-ignore %v", branch, where, ignore)
	}
	return true, ""
}

func matchPaths(include, ignore, changed []string, where string) (bool, string) {
	if changed == nil || (len(include) == 0 && len(ignore) == 0) {
		return true, ""
	}
	for _, f := range changed {
		if (len(include) == 0 || matchAny(include, f)) && !matchAny(ignore, f) {
			return true, ""
		}
	}
	if len(include) > 0 {
		return false, fmt.Sprintf("no changed file matches %s.paths %v", where, include)
	}
	return false, fmt.Sprintf("every changed file matches %s.paths-ignore %v", where, ignore)
}

// New builds the plan of p for trigger t. A deployment's plan is one job:
// the environment's steps (see Deploy).
func New(p *spec.Pipeline, t Trigger) *Plan {
	if t.Event == EventDeploy {
		return deploy(p, t)
	}
	pl := &Plan{Trigger: t, Env: p.Env}
	cells := map[string][]string{} // base name -> expanded names
	for _, j := range p.Jobs {
		if j.Matrix == nil {
			pl.Jobs = append(pl.Jobs, newJob(j, j.Name, nil, nil))
			cells[j.Name] = []string{j.Name}
			continue
		}
		for _, c := range expand(j.Matrix) {
			name := cellName(j.Name, c.keys, c.values)
			pl.Jobs = append(pl.Jobs, newJob(j, name, c.values, c.keys))
			cells[j.Name] = append(cells[j.Name], name)
		}
	}
	for _, j := range pl.Jobs {
		var needs []string
		for _, n := range p.Job(j.Base).Needs {
			needs = append(needs, cells[n]...)
		}
		j.Needs = needs
	}
	if p.Limits.Repo > 0 && t.Repo != "" {
		pl.limit(LimitLock("repo", t.Repo, ""), p.Limits.Repo)
	}
	if p.Limits.Branch > 0 && t.Repo != "" && t.Branch != "" {
		pl.limit(LimitLock("branch", t.Repo, t.Branch), p.Limits.Branch)
	}
	return pl
}

// limit makes every job hold the lock name, of capacity n.
func (pl *Plan) limit(name string, n int) {
	if pl.Limits == nil {
		pl.Limits = map[string]int{}
	}
	pl.Limits[name] = n
	for _, j := range pl.Jobs {
		j.Locks = append(slices.Clip(j.Locks), name)
	}
}

func newJob(j *spec.Job, name string, matrix map[string]string, keys []string) *Job {
	return &Job{
		Name: name, Base: j.Name, Matrix: matrix, MatrixKeys: keys,
		If: j.If, RunsOn: j.RunsOn, Image: j.Image, Pull: j.Pull, Services: j.Services,
		Locks: j.Locks, Artifacts: j.Artifacts, Secrets: j.Secrets, Env: j.Env,
		Timeout: j.Timeout, Steps: j.Steps,
	}
}

type cell struct {
	keys   []string
	values map[string]string
}

// expand returns a matrix's cells: the product of its axes in file order,
// less the cells an exclude entry matches, plus each include entry that is
// not already a cell.
func expand(m *spec.Matrix) []cell {
	var keys []string
	for _, a := range m.Axes {
		keys = append(keys, a.Name)
	}
	cells := []map[string]string{{}}
	for _, a := range m.Axes {
		var next []map[string]string
		for _, c := range cells {
			for _, v := range a.Values {
				n := make(map[string]string, len(c)+1)
				for k, x := range c {
					n[k] = x
				}
				n[a.Name] = v
				next = append(next, n)
			}
		}
		cells = next
	}
	if len(m.Axes) == 0 {
		cells = nil
	}
	cells = slices.DeleteFunc(cells, func(c map[string]string) bool {
		for _, ex := range m.Exclude {
			if contains(c, ex) {
				return true
			}
		}
		return false
	})
	for _, inc := range m.Include {
		if slices.ContainsFunc(cells, func(c map[string]string) bool { return equal(c, inc) }) {
			continue
		}
		cells = append(cells, inc)
	}
	out := make([]cell, 0, len(cells))
	for _, c := range cells {
		ck := slices.Clone(keys)
		var extra []string
		for k := range c {
			if !slices.Contains(keys, k) {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		ck = slices.DeleteFunc(append(ck, extra...), func(k string) bool { _, ok := c[k]; return !ok })
		out = append(out, cell{keys: ck, values: c})
	}
	return out
}

func contains(c, sub map[string]string) bool {
	for k, v := range sub {
		if c[k] != v {
			return false
		}
	}
	return true
}

func equal(a, b map[string]string) bool {
	return len(a) == len(b) && contains(a, b)
}

func cellName(base string, keys []string, values map[string]string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + values[k]
	}
	return base + "[" + strings.Join(parts, ",") + "]"
}

// Select narrows the plan to the named jobs and everything they need,
// transitively. A name may be a job of the file (all of its matrix cells) or
// one cell.
func (p *Plan) Select(names ...string) (*Plan, error) {
	want := map[string]bool{}
	var add func(n string)
	add = func(n string) {
		if want[n] {
			return
		}
		want[n] = true
		for _, need := range p.job(n).Needs {
			add(need)
		}
	}
	for _, name := range names {
		found := false
		for _, j := range p.Jobs {
			if j.Name == name || j.Base == name {
				add(j.Name)
				found = true
			}
		}
		if !found {
			var known []string
			for _, j := range p.Jobs {
				if !slices.Contains(known, j.Base) {
					known = append(known, j.Base)
				}
			}
			return nil, fmt.Errorf("no job %q in this pipeline (jobs: %s)", name, strings.Join(known, ", "))
		}
	}
	out := &Plan{Trigger: p.Trigger, Env: p.Env}
	for _, j := range p.Jobs {
		if want[j.Name] {
			out.Jobs = append(out.Jobs, j)
		}
	}
	return out, nil
}

func (p *Plan) job(name string) *Job {
	for _, j := range p.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}
