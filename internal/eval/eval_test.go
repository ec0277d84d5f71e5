package eval_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/eval"
)

func TestConditionEval(t *testing.T) {
	t.Parallel()
	main := eval.Context{Branch: "main", Event: "push", Commit: "0123abc", Repo: "gantry"}
	with := func(f func(c *eval.Context)) eval.Context {
		c := main
		f(&c)
		return c
	}
	failed := with(func(c *eval.Context) { c.Failed = true })
	skipped := with(func(c *eval.Context) { c.Skipped = true })
	cancelled := with(func(c *eval.Context) { c.Cancelled = true })
	failedCancelled := with(func(c *eval.Context) { c.Failed, c.Cancelled = true, true })
	needs := with(func(c *eval.Context) {
		c.Needs = map[string]string{"build": "failure", "lint": "success"}
		c.Failed = true
	})
	cell := with(func(c *eval.Context) {
		c.Matrix = map[string]string{"go": "1.23", "go-version": "1.23.4", "os": "linux"}
		c.Env = map[string]string{"DEPLOY": "yes", "EMPTY": ""}
	})
	tag := eval.Context{Tag: "v1.2.3", Event: "tag"}

	tests := []struct {
		cond string
		ctx  eval.Context
		want bool
	}{
		// The context.
		{`branch == "main"`, main, true},
		{`branch == "dev"`, main, false},
		{`event == "push" && commit != "" && repo == "gantry"`, main, true},
		{`tag startsWith "v" && event == "tag" && branch == ""`, tag, true},
		{`tag matches "^v[0-9]+\\.[0-9]+\\.[0-9]+$"`, tag, true},
		{`event in ["push", "tag"]`, tag, true},
		{`branch == "main" or branch == "dev"`, main, true},
		{`not (branch == "main")`, main, false},
		{`matrix.go == "1.23" && matrix.os == "linux"`, cell, true},
		{`matrix["go-version"] == "1.23.4"`, cell, true},
		{`matrix.arch == ""`, cell, true},
		{`matrix.go == ""`, main, true}, // a nil matrix reads as empty
		{`env.DEPLOY == "yes" && env.EMPTY == "" && env.UNSET == ""`, cell, true},
		{`env.DEPLOY == ""`, main, true},
		{`len(commit) == 7 && upper(repo) == "GANTRY"`, main, true},
		{"branch == \"main\"\n  && event == \"push\"\n", main, true},
		// Written with ${{ }}.
		{`${{ branch == "main" }}`, main, true},
		{`  ${{branch == "dev"}}  `, main, false},

		// The implicit success(): a condition without status functions is
		// false once something it depends on failed, was skipped or cancelled.
		{`branch == "main"`, failed, false},
		{`branch == "main"`, skipped, false},
		{`branch == "main"`, cancelled, false},
		{`true`, failed, false},
		{`true`, main, true},

		// The status functions.
		{`success()`, main, true},
		{`success()`, failed, false},
		{`success()`, skipped, false},
		{`success()`, cancelled, false},
		{`failure()`, main, false},
		{`failure()`, failed, true},
		{`failure()`, skipped, false},
		{`failure()`, failedCancelled, false},
		{`always()`, main, true},
		{`always()`, failed, true},
		{`always()`, cancelled, true},
		{`cancelled()`, main, false},
		{`cancelled()`, cancelled, true},
		{`success() || failure()`, failed, true},
		{`!success()`, skipped, true},
		{`failure() && branch == "main"`, failed, true},
		{`${{ always() }}`, failedCancelled, true},

		// needs.<job>.status.
		{`needs.build.status == "failure"`, needs, false}, // the implicit success()
		{`always() && needs.build.status == "failure"`, needs, true},
		{`failure() && needs.lint.status == "success"`, needs, true},
		{`always() && needs["build"].status != "success"`, needs, true},
		{`always() && needs.missing.status == ""`, needs, true},
	}
	for _, tt := range tests {
		c, err := eval.CompileCondition(tt.cond)
		if err != nil {
			t.Errorf("CompileCondition(%q) = %v, want no error", tt.cond, err)
			continue
		}
		ctx := tt.ctx
		got, err := c.Eval(&ctx)
		if err != nil || got != tt.want {
			t.Errorf("CompileCondition(%q).Eval(%+v) = %v, %v; want %v", tt.cond, tt.ctx, got, err, tt.want)
		}
	}
}

func TestConditionString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`branch == "main"`, `branch == "main"`},
		{`  ${{ branch == "main" }} `, `branch == "main"`},
		{"\talways()\n", "always()"},
	}
	for _, tt := range tests {
		c, err := eval.CompileCondition(tt.in)
		if err != nil {
			t.Fatalf("CompileCondition(%q) = %v, want no error", tt.in, err)
		}
		if got := c.String(); got != tt.want {
			t.Errorf("CompileCondition(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// asEvalError returns err as an *eval.Error, failing the test if it is not one.
func asEvalError(t *testing.T, call string, err error) *eval.Error {
	t.Helper()
	var e *eval.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s error = %T (%v), want *eval.Error", call, err, err)
	}
	return e
}

func TestCompileConditionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cond    string
		wantErr string
		wantCol int
	}{
		// Unknown names, at their column.
		{`brnach == "main"`, `expression "brnach == \"main\"": unknown name brnach`, 1},
		{`branch == "main" && evnt == "push"`, `expression "branch == \"main\" && evnt == \"push\"": unknown name evnt`, 21},
		{`github.ref == "main"`, `expression "github.ref == \"main\"": unknown name github`, 1},
		{`secrets.TOKEN != ""`, `expression "secrets.TOKEN != \"\"": unknown name secrets`, 1},
		{`always() && nope`, `expression "always() && nope": unknown name nope`, 13},
		// The column counts what stands before the expression, ${{ included.
		{`${{ brnach }}`, `expression "brnach": unknown name brnach`, 5},
		{`  ${{   brnach }}`, `expression "brnach": unknown name brnach`, 9},
		{`  brnach`, `expression "brnach": unknown name brnach`, 3},
		// ... in characters, not bytes.
		{`"é" == brnch`, `expression "\"é\" == brnch": unknown name brnch`, 8},
		// Fields of needs.
		{`needs.build.stat == "x"`, `expression "needs.build.stat == \"x\"": type eval.Need has no field stat`, 13},
		// Syntax.
		{`branch ==`, `expression "branch ==": unexpected token EOF`, 9},
		{`branch == "main`, `expression "branch == \"main": literal not terminated`, 16},
		{`(branch == "main"`, `expression "(branch == \"main\"": unexpected token EOF`, 17},
		{`branch == "main")`, `expression "branch == \"main\")": unexpected token Bracket(")")`, 17},
		{`${{ branch == }}`, `expression "branch ==": unexpected token EOF`, 13},
		// Not a boolean.
		{`branch`, `expression "branch": invalid operation: && (mismatched types bool and string)`, 0},
		{`always() ? branch : tag`, `expression "always() ? branch : tag": expected bool, but got string`, 0},
		// Empty.
		{``, `expression "": empty condition`, 0},
		{"  \n ", `expression "": empty condition`, 0},
		{`${{ }}`, `expression "": empty condition`, 0},
	}
	for _, tt := range tests {
		c, err := eval.CompileCondition(tt.cond)
		if err == nil {
			t.Errorf("CompileCondition(%q) = %v, nil; want error %q", tt.cond, c, tt.wantErr)
			continue
		}
		e := asEvalError(t, "CompileCondition", err)
		if e.Error() != tt.wantErr || e.Col != tt.wantCol {
			t.Errorf("CompileCondition(%q) = %q at column %d, want %q at column %d", tt.cond, e.Error(), e.Col, tt.wantErr, tt.wantCol)
		}
	}
}

func TestConditionEvalError(t *testing.T) {
	t.Parallel()
	c, err := eval.CompileCondition(`int(branch) > 0`)
	if err != nil {
		t.Fatalf("CompileCondition = %v, want no error", err)
	}
	got, err := c.Eval(&eval.Context{Branch: "main"})
	if err == nil {
		t.Fatalf("Eval(branch main) = %v, nil; want an error", got)
	}
	if e := asEvalError(t, "Eval", err); e.Expr != "int(branch) > 0" {
		t.Errorf("Eval(branch main) error = %#v, want Expr %q", e, "int(branch) > 0")
	}
	// The same condition is fine where it can be evaluated.
	if got, err := c.Eval(&eval.Context{Branch: "12"}); err != nil || !got {
		t.Errorf("Eval(branch 12) = %v, %v; want true", got, err)
	}
	// Large values are refused, not built.
	c, err = eval.CompileCondition(`len(repeat(branch, 100000000)) > 0`)
	if err != nil {
		t.Fatalf("CompileCondition = %v, want no error", err)
	}
	if got, err := c.Eval(&eval.Context{Branch: "main"}); err == nil {
		t.Errorf("Eval(repeat 1e8) = %v, nil; want an error", got)
	}
}

func TestTemplateString(t *testing.T) {
	t.Parallel()
	ctx := &eval.Context{
		Branch: "main", Commit: "0123abc", Repo: "gantry", Event: "push",
		Matrix: map[string]string{"go": "1.23"},
		Env:    map[string]string{"REGISTRY": "registry.example.com"},
		Needs:  map[string]string{"build": "success"},
	}
	tests := []struct {
		tmpl      string
		want      string
		wantConst bool
	}{
		{"", "", true},
		{"make test", "make test", true},
		{"$HOME ${PATH} $(pwd) {{ x }} }} ${ {", "$HOME ${PATH} $(pwd) {{ x }} }} ${ {", true},
		{"golang:${{ matrix.go }}", "golang:1.23", false},
		{"${{ env.REGISTRY }}/${{ repo }}:${{ commit }}", "registry.example.com/gantry:0123abc", false},
		{"${{branch}}", "main", false},
		{"$${{ branch }}", "$main", false},
		{"v${{ 1 + 2 }}", "v3", false},
		{"${{ 1.5 }} ${{ true }} ${{ nil }}|", "1.5 true |", false},
		{"${{ [1, 2] }}", "[1 2]", false},
		{`${{ tag != "" ? tag : "dev-" + commit }}`, "dev-0123abc", false},
		{"${{ needs.build.status }}", "success", false},
		{"${{ matrix.os }}${{ env.NOPE }}", "", false},
		{"${{ success() }} ${{ failure() }}", "true false", false},
		{"a\n${{ branch }}\nb", "a\nmain\nb", false},
	}
	for _, tt := range tests {
		tm, err := eval.CompileTemplate(tt.tmpl)
		if err != nil {
			t.Errorf("CompileTemplate(%q) = %v, want no error", tt.tmpl, err)
			continue
		}
		if got := tm.IsConst(); got != tt.wantConst {
			t.Errorf("CompileTemplate(%q).IsConst() = %v, want %v", tt.tmpl, got, tt.wantConst)
		}
		got, err := tm.String(ctx)
		if err != nil || got != tt.want {
			t.Errorf("CompileTemplate(%q).String() = %q, %v; want %q", tt.tmpl, got, err, tt.want)
		}
	}
}

func TestCompileTemplateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl    string
		wantErr string
		wantCol int // of the ${{ at fault
	}{
		{"echo ${{ nope }}", `expression "nope": unknown name nope`, 6},
		{"echo ${{ branch }} ${{ github.sha }}", `expression "github.sha": unknown name github`, 20},
		{"echo ${{ branch + }}", `expression "branch +": unexpected token EOF`, 6},
		{"echo ${{ branch", `expression "${{ branch": unterminated ${{: missing }}`, 6},
		{"${{ branch }} and ${{ tag", `expression "${{ tag": unterminated ${{: missing }}`, 19},
		{"echo ${{ }}", `expression "${{ }}": empty ${{ }}`, 6},
		{"echo ${{}}", `expression "${{}}": empty ${{ }}`, 6},
		{"a\nb ${{ nope }}", `expression "nope": unknown name nope`, 5},
		{"é ✓ ${{ nope }}", `expression "nope": unknown name nope`, 5},
		// "}}" ends the expression, even inside a string.
		{`${{ "}}" }}`, `expression "\"": literal not terminated`, 1},
		{`${{ {"a": {"b": 1}} }}`, `expression "{\"a\": {\"b\": 1": unexpected token EOF`, 1},
	}
	for _, tt := range tests {
		tm, err := eval.CompileTemplate(tt.tmpl)
		if err == nil {
			t.Errorf("CompileTemplate(%q) = %v, nil; want error %q", tt.tmpl, tm, tt.wantErr)
			continue
		}
		e := asEvalError(t, "CompileTemplate", err)
		if e.Error() != tt.wantErr || e.Col != tt.wantCol {
			t.Errorf("CompileTemplate(%q) = %q at column %d, want %q at column %d", tt.tmpl, e.Error(), e.Col, tt.wantErr, tt.wantCol)
		}
	}
}

func TestTemplateEvalError(t *testing.T) {
	t.Parallel()
	tm, err := eval.CompileTemplate("n=${{ int(branch) }}")
	if err != nil {
		t.Fatalf("CompileTemplate = %v, want no error", err)
	}
	ctx := &eval.Context{Branch: "main"}
	if got, err := tm.String(ctx); err == nil {
		t.Errorf("String(branch main) = %q, nil; want an error", got)
	} else if e := asEvalError(t, "String", err); e.Col != 3 || e.Expr != "int(branch)" {
		t.Errorf("String(branch main) error = %#v, want Expr int(branch) at column 3", e)
	}
	if got, vars, err := tm.Script(ctx, "P"); err == nil {
		t.Errorf("Script(branch main) = %q, %q, nil; want an error", got, vars)
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	ctx := &eval.Context{Branch: "$(id)", Tag: "v1'x", Commit: "c\"d"}
	tests := []struct {
		name     string
		tmpl     string
		want     string
		wantVars []string
	}{
		{
			name: "no expressions",
			tmpl: "echo '$HOME' \"${PATH}\" $(pwd)",
			want: "echo '$HOME' \"${PATH}\" $(pwd)",
		},
		{
			name:     "outside quotes",
			tmpl:     "echo ${{ branch }}",
			want:     `echo "$P1"`,
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "in double quotes",
			tmpl:     `echo "on ${{ branch }}!"`,
			want:     `echo "on ${P1}!"`,
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "in single quotes",
			tmpl:     `echo 'on ${{ branch }}!'`,
			want:     `echo 'on '"$P1"'!'`,
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "each in its place",
			tmpl:     `echo ${{ branch }} "${{ tag }}" '${{ commit }}' x${{ branch }}y`,
			want:     `echo "$P1" "${P2}" ''"$P3"'' x"$P4"y`,
			wantVars: []string{"P1=$(id)", "P2=v1'x", `P3=c"d`, "P4=$(id)"},
		},
		{
			name:     "escaped quotes open nothing",
			tmpl:     `echo \'${{ branch }} \"${{ tag }}`,
			want:     `echo \'"$P1" \""$P2"`,
			wantVars: []string{"P1=$(id)", "P2=v1'x"},
		},
		{
			name:     "escapes inside double quotes",
			tmpl:     `echo "a\"'${{ branch }}"`,
			want:     `echo "a\"'${P1}"`,
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "a backslash in single quotes escapes nothing",
			tmpl:     `echo 'a\' ${{ branch }}`,
			want:     `echo 'a\' "$P1"`,
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "an apostrophe in a comment",
			tmpl:     "# don't panic\necho ${{ branch }}",
			want:     "# don't panic\necho \"$P1\"",
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "an expression in a comment",
			tmpl:     "echo x # it's ${{ branch }}\necho ${{ tag }}",
			want:     "echo x # it's \"$P1\"\necho \"$P2\"",
			wantVars: []string{"P1=$(id)", "P2=v1'x"},
		},
		{
			name:     "a # inside a word is no comment",
			tmpl:     `echo a#'${{ branch }}' $#'${{ tag }}' ${{ commit }}#'${{ branch }}'`,
			want:     `echo a#''"$P1"'' $#''"$P2"'' "$P3"#''"$P4"''`,
			wantVars: []string{"P1=$(id)", "P2=v1'x", `P3=c"d`, "P4=$(id)"},
		},
		{
			name:     "a comment after an operator",
			tmpl:     "true;# it's\necho ${{ branch }}",
			want:     "true;# it's\necho \"$P1\"",
			wantVars: []string{"P1=$(id)"},
		},
		{
			name:     "quotes across lines",
			tmpl:     "echo 'one\n${{ branch }}\ntwo' \"three\n${{ tag }}\"",
			want:     "echo 'one\n'\"$P1\"'\ntwo' \"three\n${P2}\"",
			wantVars: []string{"P1=$(id)", "P2=v1'x"},
		},
		{
			name:     "an empty value",
			tmpl:     "echo ${{ repo }}",
			want:     `echo "$P1"`,
			wantVars: []string{"P1="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tm, err := eval.CompileTemplate(tt.tmpl)
			if err != nil {
				t.Fatalf("CompileTemplate(%q) = %v, want no error", tt.tmpl, err)
			}
			got, vars, err := tm.Script(ctx, "P")
			if err != nil {
				t.Fatalf("Script(%q) = %v, want no error", tt.tmpl, err)
			}
			if got != tt.want {
				t.Errorf("Script(%q) = %q, want %q", tt.tmpl, got, tt.want)
			}
			if diff := cmp.Diff(tt.wantVars, vars); diff != "" {
				t.Errorf("Script(%q) vars mismatch (-want +got):\n%s", tt.tmpl, diff)
			}
		})
	}
}
