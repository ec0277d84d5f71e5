package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/gantry-ci/gantry/internal/backend"
	"github.com/gantry-ci/gantry/internal/backend/docker"
	"github.com/gantry-ci/gantry/internal/backend/local"
	"github.com/gantry-ci/gantry/internal/backend/route"
	"github.com/gantry-ci/gantry/internal/console"
	"github.com/gantry-ci/gantry/internal/engine"
	"github.com/gantry-ci/gantry/internal/git"
	"github.com/gantry-ci/gantry/internal/plan"
	"github.com/gantry-ci/gantry/internal/spec"
)

// pipelineNames are the file names looked for when -f is not given.
var pipelineNames = []string{".gantry.yml", ".gantry.yaml"}

const runAbout = `Runs the pipeline of this checkout on this machine, through the same engine
the server uses, and exits 0 only if every job that ran passed.

Steps run on the host, each in its own process group, in the checkout's top
directory, with a clean environment: the pipeline's env, CI=true, GANTRY_*
variables, and from the host only PATH, HOME, USER, LOGNAME, SHELL, LANG,
LC_ALL, LC_CTYPE, TZ, TMPDIR and TERM (add others with --pass-env). A job's
secrets are read from the host environment variables of the same names and
masked as *** in all output.

A job with image: runs in a container of that image on the Docker Engine
(DOCKER_HOST, or /var/run/docker.sock), with the checkout mounted at the same
path and its services beside it; when no engine answers, such a job fails
with "docker is not available" and the reason. Gantry removes the containers
and networks it made when the run ends.

The branch and commit come from the checkout. The on: filters are not applied:
a run you start by hand always runs.

Ctrl-C stops every running step: SIGTERM to its process group, then SIGKILL
after --kill-grace.`

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "run [flags]", runAbout, stdout, stderr)
	file := fs.String("f", "", "pipeline `file` (default: .gantry.yml in this directory or at the top of the checkout)")
	var jobs, envs, passEnv listFlag
	fs.Var(&jobs, "job", "run only this `job` and what it needs (repeatable; a matrix job's name selects all its cells)")
	parallel := fs.Int("parallel", runtime.NumCPU(), "run at most `N` jobs at once")
	failFast := fs.Bool("fail-fast", false, "stop everything at the first failed job")
	output := fs.String("output", "text", "output `format`: text, or json for one JSON event per line")
	color := fs.String("color", "auto", "color the output: auto (on a terminal, unless NO_COLOR is set), always or never")
	event := fs.String("event", "", "the `event` expressions see: push, pull_request, tag, schedule or manual (default push, or tag with --tag)")
	branch := fs.String("branch", "", "the `branch` expressions see (default: the checked-out branch)")
	tag := fs.String("tag", "", "the `tag` expressions see")
	fs.Var(&envs, "env", "set `KEY=VALUE` in every job's environment (repeatable)")
	fs.Var(&passEnv, "pass-env", "pass this host environment `variable` to steps (repeatable)")
	killGrace := fs.Duration("kill-grace", 5*time.Second, "how long a stopped step gets between SIGTERM and SIGKILL")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry run: unexpected argument %q (use -f FILE to pick a pipeline file)\n", fs.Arg(0))
		return exitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "gantry run: --output must be text or json, not %q\n", *output)
		return exitUsage
	}
	if *parallel < 1 {
		fmt.Fprintf(stderr, "gantry run: --parallel must be at least 1\n")
		return exitUsage
	}
	extraEnv := map[string]string{}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "gantry run: --env %q: want KEY=VALUE\n", kv)
			return exitUsage
		}
		extraEnv[k] = v
	}

	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "gantry run: %v\n", err)
		return exitFailed
	}
	head, headErr := git.ReadHead(cwd)
	path, err := findPipeline(*file, cwd, head.Root)
	if err != nil {
		fmt.Fprintf(stderr, "gantry run: %v\n", err)
		return exitFailed
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "gantry run: %v\n", err)
		return exitFailed
	}
	p, err := spec.Parse(displayPath(path, cwd), data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}

	workspace := head.Root
	if headErr != nil {
		workspace = filepath.Dir(path)
	}
	t := plan.Trigger{Event: *event, Branch: head.Branch, Tag: *tag, Commit: head.Commit, Repo: filepath.Base(workspace)}
	if *branch != "" {
		t.Branch = *branch
	}
	if t.Event == "" {
		t.Event = plan.EventPush
		if t.Tag != "" {
			t.Event = plan.EventTag
		}
	}
	pl := plan.New(p, t)
	for k, v := range extraEnv {
		if pl.Env == nil {
			pl.Env = map[string]string{}
		}
		pl.Env[k] = v
	}
	if len(jobs) > 0 {
		if pl, err = pl.Select(jobs...); err != nil {
			fmt.Fprintf(stderr, "gantry run: %v\n", err)
			return exitUsage
		}
	}
	if len(pl.Jobs) == 0 {
		fmt.Fprintf(stderr, "gantry run: %s has no jobs to run\n", displayPath(path, cwd))
		return exitFailed
	}
	secrets := map[string]string{}
	for _, j := range pl.Jobs {
		for _, name := range j.Secrets {
			if v, ok := os.LookupEnv(name); ok {
				secrets[name] = v
			} else if _, warned := secrets[name]; !warned {
				secrets[name] = ""
				fmt.Fprintf(stderr, "gantry run: warning: secret %s is not set in the environment; job %s gets it empty\n", name, j.Name)
			}
		}
	}

	// Idle Ps cost a fresh process real time (threads started, woken and
	// parked); a run needs no more than one per job that can run at once.
	runtime.GOMAXPROCS(max(1, min(runtime.NumCPU(), *parallel, len(pl.Jobs))))

	var be backend.Backend = local.New(local.Options{KillGrace: *killGrace, PassEnv: passEnv})
	if needsDocker(pl) {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := docker.New(dctx, docker.Options{Owner: fmt.Sprintf("gantry-run-%d", os.Getpid()), KillGrace: *killGrace})
		dcancel()
		if err != nil {
			be = route.New(be, nil, err)
		} else {
			be = route.New(be, d, nil)
			defer func() {
				// What the jobs' Close missed, if anything.
				cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer ccancel()
				if err := d.Close(cctx); err != nil {
					fmt.Fprintf(stderr, "gantry run: clean up docker: %v\n", err)
				}
			}()
		}
	}
	eng := engine.New(be, engine.Options{
		Parallel:  *parallel,
		FailFast:  *failFast,
		Workspace: workspace,
		Secrets:   secrets,
		RunID:     fmt.Sprintf("run-%d-", os.Getpid()),
	})

	type renderer interface {
		Event(engine.Event)
		Summary(*engine.Result)
	}
	var out renderer
	if *output == "json" {
		out = console.NewJSON(stdout)
	} else {
		out = console.NewText(stdout, useColor(*color, stdout))
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintf(stderr, "\ngantry run: interrupted; stopping running steps (SIGKILL after %s)\n", *killGrace)
				cancel(engine.ErrInterrupted)
				continue
			}
			fmt.Fprintf(stderr, "gantry run: still stopping; steps are killed at the latest %s after the first interrupt\n", *killGrace)
		}
	}()

	res := eng.Run(ctx, pl, out.Event)
	out.Summary(res)
	switch {
	case errors.Is(context.Cause(ctx), engine.ErrInterrupted):
		return exitInterrupt
	case res.Status == engine.Success:
		return exitOK
	}
	return exitFailed
}

// needsDocker reports whether a job of pl names an image.
func needsDocker(pl *plan.Plan) bool {
	for _, j := range pl.Jobs {
		if j.Image != "" {
			return true
		}
	}
	return false
}

// findPipeline returns the pipeline file to run, or an error that says
// where it looked.
func findPipeline(file, cwd, root string) (string, error) {
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return "", fmt.Errorf("pipeline file %s: %w", file, errors.Unwrap(err))
		}
		return file, nil
	}
	dirs := []string{cwd}
	if root != "" && root != cwd {
		dirs = append(dirs, root)
	}
	var looked []string
	for _, d := range dirs {
		for _, n := range pipelineNames {
			p := filepath.Join(d, n)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			looked = append(looked, p)
		}
	}
	return "", fmt.Errorf("no pipeline file: looked for %s (use -f FILE to name one)", strings.Join(looked, ", "))
}

// displayPath shows path relative to the working directory when it is below it.
func displayPath(path, cwd string) string {
	if rel, err := filepath.Rel(cwd, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func useColor(mode string, w io.Writer) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
