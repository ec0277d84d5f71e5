package spec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantry-ci/gantry/internal/eval"
	"github.com/gantry-ci/gantry/internal/spec"
)

// FuzzParse checks Parse's contract on any input: it never panics; it returns
// a pipeline or errors, never both or neither; every error has a position in
// the file and a one-line message; errors come in file order; the same input
// gives the same answer; and a pipeline it accepts keeps the promises the
// rest of Gantry relies on. The seed corpus in testdata/fuzz/FuzzParse holds
// real pipelines and nasty YAML.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := spec.Parse("f.yml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v; want a pipeline or an error, not both or neither", p, err)
		}
		if err != nil {
			checkErrors(t, err)
		} else {
			checkPipeline(t, p)
		}
		// Deterministic: no map order leaks into what Parse says.
		p2, err2 := spec.Parse("f.yml", data)
		if (p2 == nil) != (p == nil) || errString(err) != errString(err2) {
			t.Fatalf("Parse twice = %v then %v, want the same", err, err2)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	var list spec.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse error is %T (%v), want spec.ErrorList", err, err)
	}
	if len(list) == 0 {
		t.Fatal("Parse = empty ErrorList, want at least one error")
	}
	for i, e := range list {
		if e == nil {
			t.Fatalf("Parse errors[%d] = nil", i)
		}
		if e.File != "f.yml" || e.Line < 1 || e.Col < 1 || e.Msg == "" {
			t.Errorf("Parse errors[%d] = %#v, want file f.yml, line and column >= 1 and a message", i, e)
		}
		if strings.ContainsAny(e.Msg, "\n\r") {
			t.Errorf("Parse errors[%d].Msg = %q, want one line", i, e.Msg)
		}
		if i > 0 {
			prev := list[i-1]
			if prev.Line > e.Line || prev.Line == e.Line && prev.Col > e.Col {
				t.Errorf("Parse errors[%d] at %d:%d comes after %d:%d, want file order", i, e.Line, e.Col, prev.Line, prev.Col)
			}
			if *prev == *e {
				t.Errorf("Parse errors[%d] = %v twice", i, e)
			}
		}
	}
}

// checkPipeline checks what a valid pipeline promises to package plan and
// the engine.
func checkPipeline(t *testing.T, p *spec.Pipeline) {
	t.Helper()
	if len(p.Jobs) == 0 && len(p.Environments) == 0 {
		t.Fatal("Parse = a pipeline with neither jobs nor environments")
	}
	jobs := map[string]bool{}
	for _, j := range p.Jobs {
		if !spec.NamePattern.MatchString(j.Name) || jobs[j.Name] {
			t.Errorf("Parse = job %q: invalid or duplicate name", j.Name)
		}
		jobs[j.Name] = true
		checkSteps(t, "job "+j.Name, j.Steps)
		if j.If != "" {
			if _, err := eval.CompileCondition(j.If); err != nil {
				t.Errorf("Parse accepted job %q if %q: %v", j.Name, j.If, err)
			}
		}
		if j.Matrix != nil {
			if len(j.Matrix.Axes) == 0 && len(j.Matrix.Include) == 0 {
				t.Errorf("Parse = job %q with an empty matrix", j.Name)
			}
			for _, a := range j.Matrix.Axes {
				seen := map[string]bool{}
				for _, v := range a.Values {
					if seen[v] {
						t.Errorf("Parse = job %q axis %q with %q twice", j.Name, a.Name, v)
					}
					seen[v] = true
				}
			}
		}
	}
	for _, j := range p.Jobs {
		for _, n := range j.Needs {
			if !jobs[n] || n == j.Name {
				t.Errorf("Parse = job %q needs %q, which is not another job", j.Name, n)
			}
		}
	}
	envs := map[string]bool{}
	for _, e := range p.Environments {
		if !spec.NamePattern.MatchString(e.Name) || envs[e.Name] {
			t.Errorf("Parse = environment %q: invalid or duplicate name", e.Name)
		}
		envs[e.Name] = true
		if e.Rollout == nil {
			checkSteps(t, "environment "+e.Name, e.Steps)
		}
	}
	for _, e := range p.Environments {
		if e.PromoteFrom != "" && (!envs[e.PromoteFrom] || e.PromoteFrom == e.Name) {
			t.Errorf("Parse = environment %q promotes from %q, which is not another environment", e.Name, e.PromoteFrom)
		}
	}
}

func checkSteps(t *testing.T, what string, steps []*spec.Step) {
	t.Helper()
	if len(steps) == 0 {
		t.Errorf("Parse = %s without steps", what)
	}
	for i, s := range steps {
		if strings.TrimSpace(s.Run) == "" {
			t.Errorf("Parse = %s step %d without a command", what, i)
		}
		if _, err := eval.CompileTemplate(s.Run); err != nil {
			t.Errorf("Parse accepted %s step %d run %q: %v", what, i, s.Run, err)
		}
		if s.Retry < 0 || s.Retry > spec.MaxRetry {
			t.Errorf("Parse = %s step %d retry %d", what, i, s.Retry)
		}
	}
}
