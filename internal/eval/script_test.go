package eval_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ci/gantry/internal/eval"
)

// hostileValues are what a stranger can put in a branch name, a tag or a
// pull request title. Each would run a command, or at least change the words
// of one, if the shell parsed it. {dir} is replaced by a directory in which
// nothing may appear.
var hostileValues = []string{
	"$(touch {dir}/dollar-paren)",
	"`touch {dir}/backtick`",
	"'; touch {dir}/single-quote; echo '",
	`"; touch {dir}/double-quote; echo "`,
	"x; touch {dir}/semicolon",
	"x && touch {dir}/and || touch {dir}/or",
	"x | touch {dir}/pipe &",
	"a\ntouch {dir}/newline\n",
	"; rm -rf {dir}/keep",
	"x > {dir}/redirect",
	`'"'"'$(touch {dir}/mixed)'"'"'`,
	`\'; touch {dir}/backslash-quote #`,
	"$(touch {dir}/in-dquote)\"$(touch {dir}/after-dquote)\"",
	"${IFS}*",
	"*",
	"~",
	"$HOME $0 $$ $1 ${PATH}",
	"$((1+1))",
	"-n",
	`\`,
	`\n\t\\`,
	"a  b\t c",
	"# not a comment",
	"",
	"héllo wörld ✓",
	"}}'\"${{",
}

// contexts put ${{ branch }} where a script may have it; want is what the
// script prints given the value v.
var contexts = []struct {
	name string
	tmpl string
	want func(v string) string
}{
	{"outside quotes", `printf '[%s]\n' ${{ branch }}`, func(v string) string { return "[" + v + "]\n" }},
	{"inside double quotes", `printf '[%s]\n' "<${{ branch }}>"`, func(v string) string { return "[<" + v + ">]\n" }},
	{"inside single quotes", `printf '[%s]\n' '<${{ branch }}>'`, func(v string) string { return "[<" + v + ">]\n" }},
	{"inside a word", `printf '[%s]\n' x${{ branch }}y`, func(v string) string { return "[x" + v + "y]\n" }},
	{"in an assignment", "V=${{ branch }}\nprintf '[%s]\\n' \"$V\"", func(v string) string { return "[" + v + "]\n" }},
	{"after a comment with an apostrophe", "# don't worry\nprintf '[%s]\\n' ${{ branch }}", func(v string) string { return "[" + v + "]\n" }},
	{"twice, in all three quotes", `printf '[%s|%s|%s]\n' ${{ branch }} "${{ branch }}" '${{ branch }}'`, func(v string) string { return "[" + v + "|" + v + "|" + v + "]\n" }},
	{"in a multi-line script", "set -u\nif true; then\n  printf '[%s]\\n' \"${{ branch }}\"\nfi\n", func(v string) string { return "[" + v + "]\n" }},
	// The documented blemish: a here-document shows the reference's quotes.
	{"in a here-document", "cat <<EOF\n${{ branch }}\nEOF", func(v string) string { return `"` + v + `"` + "\n" }},
}

// shells are the shells the tests run scripts with: sh is what steps run
// under (engine.DefaultShell); bash, when there is one, has more syntax.
func shells(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, sh := range []string{"sh", "bash"} {
		if _, err := exec.LookPath(sh); err == nil {
			out = append(out, sh)
		} else if sh == "sh" {
			t.Fatalf("no sh: %v", err)
		}
	}
	return out
}

// runScript runs script as a step would (sh -e -c) with vars in its
// environment and dir as its working directory, and returns its output.
func runScript(t *testing.T, shell, dir, script string, vars []string) string {
	t.Helper()
	cmd := exec.Command(shell, "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C.UTF-8"}, vars...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -e -c %q: %v\nstderr: %s", shell, script, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("%s -e -c %q: stderr %q, want none", shell, script, stderr.String())
	}
	return stdout.String()
}

// TestScriptNeverRunsValues runs the scripts Script makes in a real shell,
// with hostile values, in every quoting context: each value must come out
// exactly as it went in, and none may run anything. One shell runs the
// scripts for every value, one after another, each with its own prefix.
func TestScriptNeverRunsValues(t *testing.T) {
	t.Parallel()
	for _, shell := range shells(t) {
		for _, c := range contexts {
			t.Run(shell+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				tm, err := eval.CompileTemplate(c.tmpl)
				if err != nil {
					t.Fatalf("CompileTemplate(%q) = %v", c.tmpl, err)
				}
				// A glob must find files here if the shell expanded one,
				// and a file that appears or goes means a value ran.
				dir := t.TempDir()
				for _, name := range []string{"keep", "other"} {
					if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				var scripts, allVars []string
				var want strings.Builder
				for i, hostile := range hostileValues {
					v := strings.ReplaceAll(hostile, "{dir}", dir)
					script, vars, err := tm.Script(&eval.Context{Branch: v}, fmt.Sprintf("GANTRY_EXPR_%d_", i))
					if err != nil {
						t.Fatalf("Script(%q) = %v", c.tmpl, err)
					}
					if strings.Contains(script, dir) {
						t.Errorf("Script(%q) with branch %q = %q, which holds the value", c.tmpl, v, script)
					}
					scripts = append(scripts, script)
					allVars = append(allVars, vars...)
					want.WriteString(c.want(v))
				}
				got := runScript(t, shell, dir, strings.Join(scripts, "\n"), allVars)
				if diff := cmp.Diff(strings.SplitAfter(want.String(), "\n"), strings.SplitAfter(got, "\n")); diff != "" {
					t.Errorf("%s running Script(%q) with hostile values printed other than the values (-want +got):\n%s", shell, c.tmpl, diff)
				}
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				if diff := cmp.Diff([]string{"keep", "other"}, names); diff != "" {
					t.Errorf("%s running Script(%q) with hostile values changed its directory: a value ran (-want +got):\n%s", shell, c.tmpl, diff)
				}
			})
		}
	}
}

// TestScriptValuesNeverRunAnywhere puts a value where Script's quoting meets
// shell syntax it does not follow (command substitutions, escapes before
// ${{ }}, here-documents). The output may be odd there; but the value is
// still only ever expanded as a variable, so nothing in it runs.
func TestScriptValuesNeverRunAnywhere(t *testing.T) {
	t.Parallel()
	templates := []string{
		`printf '[%s]\n' "$(printf '%s' ${{ branch }})"`,
		"printf '[%s]\\n' \"`printf '%s' ${{ branch }}`\"",
		`printf '[%s]\n' "$(printf '%s' '${{ branch }}')"`,
		`printf '[%s]\n' \${{ branch }}"`,
		`printf '[%s]\n' "\${{ branch }}"`,
		`printf '[%s]\n' $${{ branch }}`,
		"cat <<'EOF'\n${{ branch }}\nEOF",
		"cat <<EOF\nit's ${{ branch }} \"${{ branch }}\"\nEOF",
		`case ${{ branch }} in *) printf '[%s]\n' ${{ branch }};; esac`,
		`for x in ${{ branch }}; do printf '[%s]\n' "$x"; done`,
		`[ -n ${{ branch }} ] || true`,
		`: $(( ${#GANTRY_EXPR_1} )); printf '[%s]\n' "${{ branch }}"`,
	}
	for _, shell := range shells(t) {
		for _, tmpl := range templates {
			t.Run(shell+"/"+tmpl, func(t *testing.T) {
				t.Parallel()
				tm, err := eval.CompileTemplate(tmpl)
				if err != nil {
					t.Fatalf("CompileTemplate(%q) = %v", tmpl, err)
				}
				for _, hostile := range hostileValues {
					if !strings.Contains(hostile, "{dir}") {
						continue // it cannot show that it ran
					}
					dir := t.TempDir()
					v := strings.ReplaceAll(hostile, "{dir}", dir)
					script, vars, err := tm.Script(&eval.Context{Branch: v}, "GANTRY_EXPR_")
					if err != nil {
						t.Fatalf("Script(%q) = %v", tmpl, err)
					}
					cmd := exec.Command(shell, "-c", script)
					cmd.Dir = dir
					cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, vars...)
					cmd.Run() // a syntax error is fine; running the value is not
					if entries, _ := os.ReadDir(dir); len(entries) != 0 {
						t.Errorf("%s running Script(%q) with branch %q made %s: the value ran", shell, tmpl, v, entries[0].Name())
					}
				}
			})
		}
	}
}
