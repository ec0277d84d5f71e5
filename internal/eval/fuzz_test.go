package eval

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzMarker is a value no template of the corpus holds, full of what a
// shell would act on.
const fuzzMarker = "$(touch /tmp/gantry-fuzz)`id`;'\"\n\\ GANTRY-FUZZ-7f3a"

// FuzzTemplate feeds any text as a template (and as a condition) and any
// value to every name of the context. Nothing may panic, and Script keeps
// its promise in the form that can be proved without a shell: the script is
// the template's literal text with each ${{ }} replaced by a reference to
// its variable, so it is the same whatever the values are, and no value
// ever appears in it; the values travel only in vars. TestScriptNeverRunsValues
// shows with a real shell that the references are quoted right.
func FuzzTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, text, value string) {
		valueCtx := fuzzContext(value)
		markerCtx := fuzzContext(fuzzMarker)

		if c, err := CompileCondition(text); err != nil {
			checkError(t, "CompileCondition", text, err, 0)
		} else {
			c.Eval(valueCtx)
			c.Eval(&Context{})
		}

		tm, err := CompileTemplate(text)
		if err != nil {
			checkError(t, "CompileTemplate", text, err, 1)
			return
		}
		const prefix = "GANTRY_EXPR_"
		script, vars, err := tm.Script(valueCtx, prefix)
		if err != nil {
			checkError(t, "Script", text, err, 1)
			return
		}
		checkScript(t, tm, text, valueCtx, prefix, script, vars)

		mscript, mvars, err := tm.Script(markerCtx, prefix)
		if err != nil {
			return // the marker may not evaluate where the value did (int(branch))
		}
		checkScript(t, tm, text, markerCtx, prefix, mscript, mvars)
		if mscript != script {
			t.Fatalf("Script(%q) = %q with value %q but %q with %q: the script depends on the values", text, script, value, mscript, fuzzMarker)
		}
		if strings.Contains(mscript, fuzzMarker) && !strings.Contains(text, fuzzMarker) {
			t.Fatalf("Script(%q) = %q, which holds the value %q", text, mscript, fuzzMarker)
		}
	})
}

func fuzzContext(v string) *Context {
	m := map[string]string{v: v, "x": v, "go": v}
	return &Context{
		Branch: v, Tag: v, Event: v, Commit: v, Repo: v,
		Matrix: m, Env: m, Needs: map[string]string{v: v, "build": v},
	}
}

// checkError checks that err is an *Error with a column inside text (or
// just past its end), and at least minCol.
func checkError(t *testing.T, call, text string, err error, minCol int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s(%q) error = %T (%v), want *Error", call, text, err, err)
	}
	if e.Col < minCol || e.Col > utf8.RuneCountInString(text)+1 {
		t.Fatalf("%s(%q) error at column %d, want %d to %d: %v", call, text, e.Col, minCol, utf8.RuneCountInString(text)+1, err)
	}
	if e.Msg == "" {
		t.Fatalf("%s(%q) error %#v has no message", call, text, e)
	}
}

// checkScript checks that script is tm's literal text with a reference in
// place of each expression, that vars hold the values the expressions give
// in ctx, and that the values are what String puts in place of them.
func checkScript(t *testing.T, tm *Template, text string, ctx *Context, prefix, script string, vars []string) {
	t.Helper()
	if tm.IsConst() {
		if script != text || vars != nil {
			t.Fatalf("Script(%q) = %q, %q; want the text itself and no vars", text, script, vars)
		}
		return
	}
	rest := script
	var str strings.Builder
	n := 0
	for _, p := range tm.parts {
		if p.prog == nil {
			if !strings.HasPrefix(rest, p.lit) {
				t.Fatalf("Script(%q) = %q: want literal %q at %q", text, script, p.lit, rest)
			}
			rest = rest[len(p.lit):]
			str.WriteString(p.lit)
			continue
		}
		n++
		name := fmt.Sprintf("%s%d", prefix, n)
		found := false
		for _, ref := range []string{`"$` + name + `"`, "${" + name + "}", `'"$` + name + `"'`} {
			if strings.HasPrefix(rest, ref) {
				rest, found = rest[len(ref):], true
				break
			}
		}
		if !found {
			t.Fatalf("Script(%q) = %q: want a reference to %s at %q", text, script, name, rest)
		}
		v, err := p.eval(ctx)
		if err != nil {
			t.Fatalf("Script(%q) succeeded but expression %q fails: %v", text, p.src, err)
		}
		if n > len(vars) || vars[n-1] != name+"="+v {
			t.Fatalf("Script(%q) vars = %q, want %s=%q at %d", text, vars, name, v, n-1)
		}
		str.WriteString(v)
	}
	if rest != "" || n != len(vars) {
		t.Fatalf("Script(%q) = %q, %q: %q left over, %d expressions", text, script, vars, rest, n)
	}
	if s, err := tm.String(ctx); err != nil || s != str.String() {
		t.Fatalf("String(%q) = %q, %v; want %q, the text with the values Script passes", text, s, err, str.String())
	}
}
