package main

import (
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/gantry-ci/gantry/internal/backend/docker/dockertest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"gantry": func() { os.Exit(gantry(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScript runs the command-line scripts in testdata/script: each runs the
// real gantry binary in a fresh directory and checks what a user would see.
func TestScript(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			// [docker] builds the test image, then holds: docker tests fail
			// rather than skip when there is no engine.
			if cond == "docker" {
				dockertest.BuildImage(t)
				return true, nil
			}
			return false, nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// no-leftovers fails if a container or network labelled
			// gantry.managed=1 and an owner starting with gantry-run- is left.
			"no-leftovers": func(ts *testscript.TestScript, neg bool, args []string) {
				out, err := dockertest.Leftovers("gantry-run-")
				if err != nil {
					ts.Fatalf("list leftovers: %v", err)
				}
				if len(out) > 0 {
					ts.Fatalf("left behind: %s", strings.Join(out, ", "))
				}
			},
		},
	})
}
