package spec

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/gantry-ci/gantry/internal/eval"
)

// MaxFileSize is the largest pipeline file Parse accepts.
const MaxFileSize = 1 << 20

// maxNodes bounds the work of walking a document, aliases expanded, so that
// a small file of nested aliases cannot make Parse run for ever.
const maxNodes = 200_000

// Keys lists, for each kind of mapping in the file, the keys it may hold.
// Unknown keys are errors with a "did you mean" hint; the JSON Schema test
// checks the schema against this table.
var Keys = map[string][]string{
	"pipeline":     {"on", "env", "concurrency", "jobs", "environments"},
	"concurrency":  {"push", "pull_request", "tag", "schedule", "manual", "repo", "branch"},
	"on":           {"push", "pull_request", "schedule"},
	"push":         {"branches", "branches-ignore", "tags", "paths", "paths-ignore"},
	"pull_request": {"branches", "branches-ignore", "paths", "paths-ignore"},
	"schedule":     {"cron"},
	"job":          {"needs", "if", "runs-on", "image", "pull", "services", "locks", "artifacts", "secrets", "env", "matrix", "timeout", "steps"},
	"step":         {"name", "run", "env", "timeout", "retry", "if", "working-directory"},
	"service":      {"image", "env", "command", "ready"},
	"ready":        {"run", "interval", "timeout"},
	"environment":  {"deploy", "promote-from", "groups", "approvals", "rollout", "health", "freeze", "runs-on", "image", "env", "secrets", "timeout", "url", "steps"},
	"deploy":       {"branch"},
	"approvals":    {"required", "groups", "author-may-approve"},
	"rollout":      {"hosts", "batch", "health"},
	"health":       {"url", "run", "timeout", "interval", "successes", "retries"},
	"freeze":       {"cron", "duration", "reason"},
}

// NamePattern is what a job, environment, service or matrix axis may be called:
// names appear in URLs, log prefixes and command lines.
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// MaxRetry bounds `retry:` on a step.
const MaxRetry = 10

// Error is one problem in a pipeline file, at a 1-based line and column.
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// ErrorList is every problem found in a file, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Parse reads a pipeline file. name is used in error positions only. On any
// problem it returns a nil Pipeline and an ErrorList with all of them.
func Parse(name string, data []byte) (*Pipeline, error) {
	p := &parser{file: name}
	if len(data) > MaxFileSize {
		p.errAt(Pos{1, 1}, "file is %d bytes; a pipeline file may be at most %d", len(data), MaxFileSize)
		return nil, p.errs
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.yamlError(err)
		return nil, p.errs
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.errAt(Pos{1, 1}, "file is empty: a pipeline needs at least one job under \"jobs\"")
		return nil, p.errs
	}
	pl := p.pipeline(doc.Content[0])
	if p.nodes > maxNodes {
		// The walk was cut short, so what else it reported may be false.
		p.errs, p.seen = nil, nil
		p.tooBig()
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i], p.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, p.errs
	}
	return pl, nil
}

type parser struct {
	file  string
	errs  ErrorList
	seen  map[Error]bool // errs as a set, for errAt
	nodes int
	// hintWork is the edit-distance work spent on hints so far; see suggest.
	hintWork int
}

func pos(n *yaml.Node) Pos { return Pos{n.Line, n.Column} }

func (p *parser) errAt(at Pos, format string, args ...any) {
	if at.Line == 0 {
		at = Pos{1, 1}
	}
	e := Error{File: p.file, Line: at.Line, Col: at.Col, Msg: fmt.Sprintf(format, args...)}
	if p.seen[e] {
		return // the same alias walked twice
	}
	if p.seen == nil {
		p.seen = map[Error]bool{}
	}
	p.seen[e] = true
	p.errs = append(p.errs, &e)
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errAt(pos(n), format, args...)
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlError turns the YAML library's error into positioned errors.
func (p *parser) yamlError(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		line := 1
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			if sm[1] != "" {
				line, _ = strconv.Atoi(sm[1])
			}
			m = sm[2]
		}
		p.errAt(Pos{line, 1}, "invalid YAML: %s", m)
	}
}

// resolve follows aliases and counts the work done.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	p.nodes++
	return n
}

func (p *parser) tooBig() bool {
	if p.nodes > maxNodes {
		p.errAt(Pos{1, 1}, "document too large once its aliases are expanded (more than %d nodes)", maxNodes)
		return true
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// mapping walks a mapping of the given kind, rejecting unknown and duplicate
// keys, and calls fn for each key in file order.
func (p *parser) mapping(n *yaml.Node, what, kind string, fn func(key string, k, v *yaml.Node)) bool {
	n = p.resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping, got %s", what, kindName(n))
		return false
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if p.tooBig() {
			return false
		}
		k, v := p.resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "%s: a key must be a plain name, got %s", what, kindName(k))
			continue
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			p.errorf(k, "%s: duplicate key %q (first at line %d)", what, key, first.Line)
			continue
		}
		seen[key] = k
		if kind != "" && !slices.Contains(Keys[kind], key) {
			p.errorf(k, "%s: unknown key %q%s", what, key, p.suggestN(key, Keys[kind], maxKnownKeys))
			continue
		}
		fn(key, k, p.resolve(v))
	}
	return true
}

// maxHintWork bounds the edit-distance work (table cells) that one Parse
// spends on "did you mean" hints, which is quadratic in the file's size when
// thousands of needs name thousands of jobs; past it, hints are left out.
const maxHintWork = 20_000_000

// maxKnownKeys is how many keys an unknown-key error lists; a job has 13.
const maxKnownKeys = 16

// suggest is suggest within the parser's budget for hints.
func (p *parser) suggest(got string, known []string) string {
	return p.suggestN(got, known, 12)
}

// suggestN is suggestN within the parser's budget for hints.
func (p *parser) suggestN(got string, known []string, listMax int) string {
	if p.hintWork > maxHintWork {
		return "" // before counting: counting is quadratic too
	}
	for _, k := range known {
		p.hintWork += (len(got) + 1) * (len(k) + 1)
	}
	if p.hintWork > maxHintWork {
		return ""
	}
	return suggestN(got, known, listMax)
}

// suggest is a "did you mean" hint for a misspelt name, or "".
func suggest(got string, known []string) string { return suggestN(got, known, 12) }

// suggestN is suggest that lists the known names, when none is close, if
// there are at most listMax of them.
func suggestN(got string, known []string, listMax int) string {
	best, bestD := "", 0
	for _, k := range known {
		d := distance(strings.ToLower(got), strings.ToLower(k))
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(1, len(got)/3) {
		if len(known) > 0 && len(known) <= listMax {
			return fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
		}
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// distance is the edit distance counting a swap of two neighbours as one
// edit (optimal string alignment), the commonest typo in a key.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s: want a single value, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(n *yaml.Node, what string) string {
	s, _ := p.scalar(n, what)
	return s
}

// nonEmpty is str that also rejects "".
func (p *parser) nonEmpty(n *yaml.Node, what string) string {
	s, ok := p.scalar(n, what)
	if ok && strings.TrimSpace(s) == "" {
		p.errorf(n, "%s: must not be empty", what)
	}
	return s
}

// strList accepts a single value or a list of values.
func (p *parser) strList(n *yaml.Node, what string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list, got %s", what, kindName(n))
		return nil
	}
	var out []string
	for i, c := range n.Content {
		c = p.resolve(c)
		if s, ok := p.scalar(c, fmt.Sprintf("%s[%d]", what, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) globs(n *yaml.Node, what string) []string {
	list := p.strList(n, what)
	for _, g := range list {
		if !doublestar.ValidatePattern(g) {
			p.errorf(n, "%s: invalid pattern %q", what, g)
		}
	}
	return list
}

func (p *parser) names(n *yaml.Node, what string) []string {
	list := p.strList(n, what)
	for _, s := range list {
		if !NamePattern.MatchString(s) {
			p.errorf(n, "%s: %q is not a valid name (letters, digits, '.', '-', '_')", what, s)
		}
	}
	return list
}

func (p *parser) secretNames(n *yaml.Node, what string) []string {
	list := p.strList(n, what)
	for _, s := range list {
		if !envNamePattern.MatchString(s) {
			p.errorf(n, "%s: %q is not a valid variable name", what, s)
		}
	}
	return list
}

func (p *parser) duration(n *yaml.Node, what string) time.Duration {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errorf(n, "%s: invalid duration %q: want a positive duration such as 30s, 10m or 1h30m", what, s)
		return 0
	}
	return d
}

func (p *parser) integer(n *yaml.Node, what string, lo, hi int) int {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		p.errorf(n, "%s: want a whole number from %d to %d, got %q", what, lo, hi, s)
		return 0
	}
	return v
}

func (p *parser) boolean(n *yaml.Node, what string) bool {
	s, ok := p.scalar(n, what)
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	p.errorf(n, "%s: want true or false, got %q", what, s)
	return false
}

func (p *parser) cron(n *yaml.Node, what string) string {
	s, ok := p.scalar(n, what)
	if !ok {
		return ""
	}
	if (strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=")) && !strings.Contains(s, " ") {
		// cron.ParseStandard panics on a time zone without a schedule.
		p.errorf(n, "%s: invalid cron expression %q: a time zone needs a schedule after it, such as \"TZ=Europe/Berlin 0 3 * * *\"", what, s)
		return s
	}
	if err := checkCron(s); err != nil {
		p.errorf(n, "%s: invalid cron expression %q: %v", what, s, err)
	}
	return s
}

// checkCron parses a cron expression. The cron library panics on some
// malformed input (a bare "TZ=UTC"); a pipeline file must never crash us.
func checkCron(s string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed expression")
		}
	}()
	_, err = cron.ParseStandard(s)
	return err
}

func (p *parser) env(n *yaml.Node, what string) map[string]string {
	out := map[string]string{}
	p.mapping(n, what, "", func(key string, k, v *yaml.Node) {
		if !envNamePattern.MatchString(key) {
			p.errorf(k, "%s: %q is not a valid variable name", what, key)
			return
		}
		s, ok := p.scalar(v, what+"."+key)
		if ok {
			p.template(v, what+"."+key, s)
		}
		out[key] = s
	})
	return out
}

// template checks every ${{ }} in s.
func (p *parser) template(n *yaml.Node, what, s string) {
	if _, err := eval.CompileTemplate(s); err != nil {
		p.exprError(n, what, err)
	}
}

func (p *parser) condition(n *yaml.Node, what string) (string, Pos) {
	s, ok := p.scalar(n, what)
	if !ok {
		return "", pos(n)
	}
	if _, err := eval.CompileCondition(s); err != nil {
		p.exprError(n, what, err)
	}
	return s, pos(n)
}

func (p *parser) exprError(n *yaml.Node, what string, err error) {
	at := pos(n)
	var ee *eval.Error
	if errors.As(err, &ee) {
		// The column is exact for a plain scalar on one line; for quoted or
		// block scalars the node's own position is the best we can say.
		if n.Style == 0 && !strings.Contains(n.Value, "\n") && ee.Col > 0 {
			at.Col += ee.Col - 1
		}
		p.errAt(at, "%s: %s", what, ee.Error())
		return
	}
	p.errAt(at, "%s: %v", what, err)
}

func (p *parser) pipeline(root *yaml.Node) *Pipeline {
	pl := &Pipeline{Env: map[string]string{}}
	var jobsNode *yaml.Node
	ok := p.mapping(root, "pipeline", "pipeline", func(key string, k, v *yaml.Node) {
		switch key {
		case "on":
			pl.On = p.triggers(v)
		case "env":
			pl.Env = p.env(v, "env")
		case "jobs":
			jobsNode = k
			pl.Jobs = p.jobs(v)
		case "environments":
			pl.Environments = p.environments(v)
		case "concurrency":
			pl.Concurrency, pl.Limits = p.concurrency(v)
		}
	})
	if !ok {
		return nil
	}
	if jobsNode == nil && len(pl.Environments) == 0 {
		p.errorf(root, "pipeline: no jobs: add a \"jobs\" mapping with at least one job")
	}
	p.checkNeeds(pl)
	p.checkEnvironments(pl)
	return pl
}

// concurrency reads `concurrency: MODE` (every event) or a mapping of
// event to mode, with the limits `repo: N` and `branch: N`.
func (p *parser) concurrency(n *yaml.Node) (map[string]string, Limits) {
	out := map[string]string{}
	var lim Limits
	mode := func(n *yaml.Node, what string) string {
		s, ok := p.scalar(n, what)
		if ok && !slices.Contains(ConcurrencyModes, s) {
			p.errorf(n, "%s: unknown mode %q%s", what, s, suggest(s, ConcurrencyModes))
		}
		return s
	}
	if n.Kind == yaml.ScalarNode {
		m := mode(n, "concurrency")
		for _, ev := range Keys["concurrency"] {
			if ev != "repo" && ev != "branch" {
				out[ev] = m
			}
		}
		return out, lim
	}
	p.mapping(n, "concurrency", "concurrency", func(key string, k, v *yaml.Node) {
		switch key {
		case "repo":
			lim.Repo = p.integer(v, "concurrency.repo", 1, 10000)
		case "branch":
			lim.Branch = p.integer(v, "concurrency.branch", 1, 10000)
		default:
			out[key] = mode(v, "concurrency."+key)
		}
	})
	return out, lim
}

func (p *parser) triggers(n *yaml.Node) Triggers {
	var t Triggers
	switch n.Kind {
	case yaml.ScalarNode, yaml.SequenceNode:
		// on: push   or   on: [push, pull_request]
		for _, ev := range p.strList(n, "on") {
			switch ev {
			case "push":
				t.Push = &PushTrigger{}
			case "pull_request":
				t.PullRequest = &PullRequestTrigger{}
			default:
				p.errorf(n, "on: unknown event %q%s", ev, p.suggest(ev, []string{"push", "pull_request"}))
			}
		}
		return t
	}
	p.mapping(n, "on", "on", func(key string, k, v *yaml.Node) {
		switch key {
		case "push":
			t.Push = &PushTrigger{}
			if isNull(v) {
				return
			}
			p.mapping(v, "on.push", "push", func(key string, k, v *yaml.Node) {
				what := "on.push." + key
				switch key {
				case "branches":
					t.Push.Branches = p.globs(v, what)
				case "branches-ignore":
					t.Push.BranchesIgnore = p.globs(v, what)
				case "tags":
					t.Push.Tags = p.globs(v, what)
				case "paths":
					t.Push.Paths = p.globs(v, what)
				case "paths-ignore":
					t.Push.PathsIgnore = p.globs(v, what)
				}
			})
		case "pull_request":
			t.PullRequest = &PullRequestTrigger{}
			if isNull(v) {
				return
			}
			p.mapping(v, "on.pull_request", "pull_request", func(key string, k, v *yaml.Node) {
				what := "on.pull_request." + key
				switch key {
				case "branches":
					t.PullRequest.Branches = p.globs(v, what)
				case "branches-ignore":
					t.PullRequest.BranchesIgnore = p.globs(v, what)
				case "paths":
					t.PullRequest.Paths = p.globs(v, what)
				case "paths-ignore":
					t.PullRequest.PathsIgnore = p.globs(v, what)
				}
			})
		case "schedule":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "on.schedule: want a list of {cron: ...}, got %s", kindName(v))
				return
			}
			for i, c := range v.Content {
				what := fmt.Sprintf("on.schedule[%d]", i)
				s := Schedule{Pos: pos(c)}
				p.mapping(c, what, "schedule", func(key string, k, v *yaml.Node) {
					s.Cron = p.cron(v, what+".cron")
					s.Pos = pos(v)
				})
				if s.Cron == "" {
					p.errorf(c, "%s: cron is required", what)
				}
				t.Schedule = append(t.Schedule, s)
			}
		}
	})
	return t
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (p *parser) jobs(n *yaml.Node) []*Job {
	var jobs []*Job
	p.mapping(n, "jobs", "", func(name string, k, v *yaml.Node) {
		if !NamePattern.MatchString(name) {
			p.errorf(k, "jobs: %q is not a valid job name (letters, digits, '.', '-', '_'; not starting with '.' or '-')", name)
			return
		}
		jobs = append(jobs, p.job(name, k, v))
	})
	if n.Kind == yaml.MappingNode && len(jobs) == 0 && len(n.Content) == 0 {
		p.errorf(n, "jobs: empty: add at least one job")
	}
	return jobs
}

func (p *parser) job(name string, k, n *yaml.Node) *Job {
	j := &Job{Name: name, Pos: pos(k), Env: map[string]string{}}
	what := "job " + strconv.Quote(name)
	var stepsSeen bool
	p.mapping(n, what, "job", func(key string, k, v *yaml.Node) {
		w := what + ": " + key
		switch key {
		case "needs":
			j.Needs, j.NeedsPos = p.names(v, w), pos(v)
		case "if":
			j.If, j.IfPos = p.condition(v, w)
		case "runs-on":
			j.RunsOn = p.strList(v, w)
		case "image":
			j.Image = p.nonEmpty(v, w)
			p.template(v, w, j.Image)
		case "pull":
			j.Pull = p.str(v, w)
			switch {
			case v.Kind != yaml.ScalarNode, j.Pull == "always", j.Pull == "if-not-present", j.Pull == "never":
			default:
				p.errorf(v, "%s: %q: want always, if-not-present or never", w, j.Pull)
			}
		case "services":
			j.Services = p.services(v, w)
		case "locks":
			j.Locks = p.names(v, w)
		case "artifacts":
			j.Artifacts = p.globs(v, w)
		case "secrets":
			j.Secrets = p.secretNames(v, w)
		case "env":
			j.Env = p.env(v, w)
		case "matrix":
			j.Matrix = p.matrix(v, w)
		case "timeout":
			j.Timeout = p.duration(v, w)
		case "steps":
			stepsSeen = true
			j.Steps = p.steps(v, w)
		}
	})
	if n.Kind == yaml.MappingNode && !stepsSeen {
		p.errorf(k, "%s: no steps: add \"steps\" with at least one {run: ...}", what)
	}
	return j
}

func (p *parser) steps(n *yaml.Node, what string) []*Step {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list of steps, got %s", what, kindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(n, "%s: empty: add at least one {run: ...}", what)
		return nil
	}
	var steps []*Step
	for i, c := range n.Content {
		c = p.resolve(c)
		steps = append(steps, p.step(c, fmt.Sprintf("%s[%d]", what, i)))
	}
	return steps
}

func (p *parser) step(n *yaml.Node, what string) *Step {
	s := &Step{Pos: pos(n)}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		// A bare string is shorthand for {run: ...}.
		s.Run, s.RunPos = n.Value, pos(n)
		p.template(n, what, s.Run)
		if strings.TrimSpace(s.Run) == "" {
			p.errorf(n, "%s: empty command", what)
		}
		return s
	}
	hasRun := false
	p.mapping(n, what, "step", func(key string, k, v *yaml.Node) {
		w := what + "." + key
		switch key {
		case "name":
			s.Name = p.nonEmpty(v, w)
		case "run":
			hasRun = true
			s.Run, s.RunPos = p.nonEmpty(v, w), pos(v)
			p.template(v, w, s.Run)
		case "env":
			s.Env = p.env(v, w)
		case "timeout":
			s.Timeout = p.duration(v, w)
		case "retry":
			s.Retry = p.integer(v, w, 0, MaxRetry)
		case "if":
			s.If, s.IfPos = p.condition(v, w)
		case "working-directory":
			s.WorkingDirectory = p.nonEmpty(v, w)
			if strings.HasPrefix(s.WorkingDirectory, "/") || slices.Contains(strings.Split(s.WorkingDirectory, "/"), "..") {
				p.errorf(v, "%s: must be a path inside the workspace, got %q", w, s.WorkingDirectory)
			}
		}
	})
	if n.Kind == yaml.MappingNode && !hasRun {
		p.errorf(n, "%s: no \"run\": a step needs a command", what)
	}
	return s
}

func (p *parser) services(n *yaml.Node, what string) []*Service {
	var out []*Service
	p.mapping(n, what, "", func(name string, k, v *yaml.Node) {
		if !NamePattern.MatchString(name) {
			p.errorf(k, "%s: %q is not a valid service name", what, name)
			return
		}
		s := &Service{Name: name}
		w := what + "." + name
		p.mapping(v, w, "service", func(key string, k, v *yaml.Node) {
			switch key {
			case "image":
				s.Image = p.nonEmpty(v, w+".image")
			case "env":
				s.Env = p.env(v, w+".env")
			case "command":
				s.Command = p.strList(v, w+".command")
			case "ready":
				s.Ready = &Ready{}
				p.mapping(v, w+".ready", "ready", func(key string, k, v *yaml.Node) {
					switch key {
					case "run":
						s.Ready.Run = p.nonEmpty(v, w+".ready.run")
					case "interval":
						s.Ready.Interval = p.duration(v, w+".ready.interval")
					case "timeout":
						s.Ready.Timeout = p.duration(v, w+".ready.timeout")
					}
				})
			}
		})
		if v.Kind == yaml.MappingNode && s.Image == "" {
			p.errorf(k, "%s: image is required", w)
		}
		out = append(out, s)
	})
	return out
}

func (p *parser) matrix(n *yaml.Node, what string) *Matrix {
	m := &Matrix{}
	p.mapping(n, what, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "include", "exclude":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "%s.%s: want a list of mappings, got %s", what, key, kindName(v))
				return
			}
			for i, c := range v.Content {
				c = p.resolve(c)
				cell := map[string]string{}
				p.mapping(c, fmt.Sprintf("%s.%s[%d]", what, key, i), "", func(ax string, k, v *yaml.Node) {
					if !NamePattern.MatchString(ax) {
						p.errorf(k, "%s.%s[%d]: %q is not a valid axis name", what, key, i, ax)
						return
					}
					if s, ok := p.scalar(v, fmt.Sprintf("%s.%s[%d].%s", what, key, i, ax)); ok {
						cell[ax] = s
						p.cellValue(v, fmt.Sprintf("%s.%s[%d].%s", what, key, i, ax), s)
					}
				})
				if key == "include" {
					m.Include = append(m.Include, cell)
				} else {
					m.Exclude = append(m.Exclude, cell)
				}
			}
		default:
			if !NamePattern.MatchString(key) {
				p.errorf(k, "%s: %q is not a valid axis name", what, key)
				return
			}
			vals := p.strList(v, what+"."+key)
			if v.Kind == yaml.SequenceNode && len(vals) == 0 {
				p.errorf(v, "%s.%s: empty: an axis needs at least one value", what, key)
			}
			seen := map[string]bool{}
			for _, val := range vals {
				if seen[val] {
					// Two equal cells would be two jobs of the same name.
					p.errorf(v, "%s.%s: duplicate value %q", what, key, val)
				}
				seen[val] = true
				p.cellValue(v, what+"."+key, val)
			}
			m.Axes = append(m.Axes, Axis{Name: key, Values: vals})
		}
	})
	axes := map[string]bool{}
	for _, a := range m.Axes {
		axes[a.Name] = true
	}
	for _, ex := range m.Exclude {
		for _, ax := range sortedKeys(ex) {
			if !axes[ax] {
				p.errorf(n, "%s.exclude: %q is not an axis of this matrix%s", what, ax, p.suggest(ax, sortedKeys(axes)))
			}
		}
	}
	if len(m.Axes) == 0 && len(m.Include) == 0 {
		p.errorf(n, "%s: empty: give at least one axis, such as go: [\"1.22\", \"1.23\"]", what)
	} else if len(m.Include) == 0 && len(m.Exclude) > 0 && allExcluded(m) {
		p.errorf(n, "%s: exclude removes every cell: the job would never run", what)
	}
	return m
}

// cellValue rejects matrix values that would make two cells' job names
// alike: names are job[axis=value,...].
func (p *parser) cellValue(n *yaml.Node, what, val string) {
	if strings.ContainsAny(val, ",=[]\n") || val == "" {
		p.errorf(n, "%s: value %q: a matrix value may not be empty or contain , = [ ] or a newline (it becomes part of the job's name)", what, val)
	}
}

// allExcluded reports whether every cell of m's axes matches an exclude
// entry. It stops at the first cell that survives.
func allExcluded(m *Matrix) bool {
	idx := make([]int, len(m.Axes))
	for _, a := range m.Axes {
		if len(a.Values) == 0 {
			return false
		}
	}
	for count := 0; count < 100_000; count++ {
		excluded := false
		for _, ex := range m.Exclude {
			match := len(ex) > 0
			for k, v := range ex {
				i := slices.IndexFunc(m.Axes, func(a Axis) bool { return a.Name == k })
				if i < 0 || v != m.Axes[i].Values[idx[i]] {
					match = false
					break
				}
			}
			if match {
				excluded = true
				break
			}
		}
		if !excluded {
			return false
		}
		// Next cell, odometer-style.
		i := len(idx) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < len(m.Axes[i].Values) {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p *parser) environments(n *yaml.Node) []*Environment {
	var out []*Environment
	p.mapping(n, "environments", "", func(name string, k, v *yaml.Node) {
		if !NamePattern.MatchString(name) {
			p.errorf(k, "environments: %q is not a valid environment name", name)
			return
		}
		out = append(out, p.environment(name, k, v))
	})
	return out
}

func (p *parser) environment(name string, k, n *yaml.Node) *Environment {
	e := &Environment{Name: name, Pos: pos(k), Env: map[string]string{}}
	what := "environment " + strconv.Quote(name)
	p.mapping(n, what, "environment", func(key string, k, v *yaml.Node) {
		w := what + ": " + key
		switch key {
		case "deploy":
			p.mapping(v, w, "deploy", func(key string, k, v *yaml.Node) {
				e.DeployBranch = p.nonEmpty(v, w+".branch")
				if !doublestar.ValidatePattern(e.DeployBranch) {
					p.errorf(v, "%s.branch: invalid pattern %q", w, e.DeployBranch)
				}
			})
		case "promote-from":
			e.PromoteFrom = p.nonEmpty(v, w)
		case "groups":
			e.Groups = p.names(v, w)
		case "approvals":
			e.Approvals = &Approvals{Required: 1}
			p.mapping(v, w, "approvals", func(key string, k, v *yaml.Node) {
				switch key {
				case "required":
					e.Approvals.Required = p.integer(v, w+".required", 0, 100)
				case "groups":
					e.Approvals.Groups = p.names(v, w+".groups")
				case "author-may-approve":
					e.Approvals.AuthorMayApprove = p.boolean(v, w+".author-may-approve")
				}
			})
		case "rollout":
			e.Rollout = &Rollout{Batch: 1}
			p.mapping(v, w, "rollout", func(key string, k, v *yaml.Node) {
				switch key {
				case "hosts":
					e.Rollout.Hosts = p.nonEmpty(v, w+".hosts")
				case "batch":
					e.Rollout.Batch = p.integer(v, w+".batch", 1, 10000)
				case "health":
					e.Rollout.Health = p.health(v, w+".health")
				}
			})
			if v.Kind == yaml.MappingNode && e.Rollout.Hosts == "" {
				p.errorf(v, "%s: hosts is required", w)
			}
		case "health":
			e.Health = p.health(v, w)
		case "freeze":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "%s: want a list of {cron, duration, reason}, got %s", w, kindName(v))
				return
			}
			for i, c := range v.Content {
				c = p.resolve(c)
				f := &Freeze{Pos: pos(c)}
				ww := fmt.Sprintf("%s[%d]", w, i)
				p.mapping(c, ww, "freeze", func(key string, k, v *yaml.Node) {
					switch key {
					case "cron":
						f.Cron = p.cron(v, ww+".cron")
					case "duration":
						f.Duration = p.duration(v, ww+".duration")
					case "reason":
						f.Reason = p.str(v, ww+".reason")
					}
				})
				if c.Kind == yaml.MappingNode && (f.Cron == "" || f.Duration == 0) {
					p.errorf(c, "%s: cron and duration are both required", ww)
				}
				e.Freeze = append(e.Freeze, f)
			}
		case "runs-on":
			e.RunsOn = p.strList(v, w)
		case "image":
			e.Image = p.nonEmpty(v, w)
			p.template(v, w, e.Image)
		case "env":
			e.Env = p.env(v, w)
		case "secrets":
			e.Secrets = p.secretNames(v, w)
		case "timeout":
			e.Timeout = p.duration(v, w)
		case "url":
			e.URL = p.nonEmpty(v, w)
		case "steps":
			e.Steps = p.steps(v, w)
		}
	})
	if n.Kind == yaml.MappingNode && len(e.Steps) == 0 && e.Rollout == nil {
		p.errorf(k, "%s: no steps: a deployment needs \"steps\" (or a \"rollout\")", what)
	}
	return e
}

// health parses a health check: a url or a command to run, with the
// defaults of the Health* constants for what it leaves out.
func (p *parser) health(n *yaml.Node, what string) *Health {
	h := &Health{Timeout: HealthTimeout, Interval: HealthInterval, Successes: HealthSuccesses, Retries: HealthRetries}
	p.mapping(n, what, "health", func(key string, k, v *yaml.Node) {
		w := what + "." + key
		switch key {
		case "url":
			h.URL = p.nonEmpty(v, w)
			p.template(v, w, h.URL)
		case "run":
			h.Run = p.nonEmpty(v, w)
			p.template(v, w, h.Run)
		case "timeout":
			h.Timeout = p.duration(v, w)
		case "interval":
			h.Interval = p.duration(v, w)
		case "successes":
			h.Successes = p.integer(v, w, 1, 100)
		case "retries":
			h.Retries = p.integer(v, w, 0, 100)
		}
	})
	if n.Kind == yaml.MappingNode {
		switch {
		case h.URL == "" && h.Run == "":
			p.errorf(n, "%s: url or run is required", what)
		case h.URL != "" && h.Run != "":
			p.errorf(n, "%s: url and run are both set: a check is one or the other", what)
		}
	}
	return h
}

// checkNeeds reports needs on missing jobs and cycles in the needs graph.
func (p *parser) checkNeeds(pl *Pipeline) {
	names := make([]string, 0, len(pl.Jobs))
	byName := make(map[string]*Job, len(pl.Jobs)) // pl.Job, without the quadratic cost
	for _, j := range pl.Jobs {
		names = append(names, j.Name)
		byName[j.Name] = j
	}
	for _, j := range pl.Jobs {
		for _, n := range j.Needs {
			if byName[n] == nil {
				p.errAt(j.NeedsPos, "job %q needs %q, which is not a job in this file%s", j.Name, n, p.suggest(n, names))
			}
		}
	}
	// Depth-first search; a grey node met again closes a cycle.
	const white, grey, black = 0, 1, 2
	color := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(j *Job)
	visit = func(j *Job) {
		color[j.Name] = grey
		stack = append(stack, j.Name)
		for _, n := range j.Needs {
			dep := byName[n]
			if dep == nil {
				continue
			}
			switch color[n] {
			case white:
				visit(dep)
			case grey:
				i := slices.Index(stack, n)
				cycle := append(slices.Clone(stack[i:]), n)
				key := strings.Join(sortedUnique(cycle), ",")
				if !reported[key] {
					reported[key] = true
					p.errAt(dep.Pos, "needs cycle: %s", strings.Join(cycle, " -> "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[j.Name] = black
	}
	for _, j := range pl.Jobs {
		if color[j.Name] == white {
			visit(j)
		}
	}
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

// checkEnvironments reports promote-from naming no environment, and cycles.
func (p *parser) checkEnvironments(pl *Pipeline) {
	byName := map[string]*Environment{}
	var names []string
	for _, e := range pl.Environments {
		byName[e.Name] = e
		names = append(names, e.Name)
	}
	const onPath, done = 1, 2
	walked := map[string]int{}
	for _, e := range pl.Environments {
		if e.PromoteFrom == "" {
			continue
		}
		if byName[e.PromoteFrom] == nil {
			p.errAt(e.Pos, "environment %q: promote-from %q, which is not an environment in this file%s", e.Name, e.PromoteFrom, p.suggest(e.PromoteFrom, names))
			continue
		}
		// Follow the chain until it ends, reaches an environment already
		// followed, or comes back onto itself: each environment is followed
		// once, and each cycle reported once, at its first environment.
		var path []string
		cur := e
		for cur != nil && walked[cur.Name] == 0 {
			walked[cur.Name] = onPath
			path = append(path, cur.Name)
			cur = byName[cur.PromoteFrom]
		}
		if cur != nil && walked[cur.Name] == onPath {
			i := slices.Index(path, cur.Name)
			p.errAt(byName[path[i]].Pos, "promote-from cycle: %s", strings.Join(append(path[i:], cur.Name), " <- "))
		}
		for _, n := range path {
			walked[n] = done
		}
		if e.DeployBranch != "" && e.PromoteFrom != "" {
			p.errAt(e.Pos, "environment %q: deploy.branch and promote-from exclude each other: a release comes here either from a branch or from %q", e.Name, e.PromoteFrom)
		}
	}
}
