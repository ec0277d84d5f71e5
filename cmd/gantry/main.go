// Command gantry is the whole of Gantry in one binary: `gantry run` runs a
// pipeline in this checkout exactly as the server would, `gantry validate`
// checks a pipeline file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes; they are part of the command-line contract.
const (
	exitOK        = 0   // everything that ran passed
	exitFailed    = 1   // a job failed, or the pipeline file is invalid
	exitUsage     = 2   // the command line is wrong
	exitInterrupt = 130 // stopped by Ctrl-C or SIGTERM
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the pipeline of this checkout on this machine", runCmd},
		{"validate", "check pipeline files; print every problem as FILE:LINE:COL: message", validateCmd},
		{"server", "start the server: webhooks in, builds out, on embedded SQLite with a built-in agent", serverCmd},
		{"repo", "add, list or remove repositories on a server (repo add|list|rm)", repoCmd},
		{"trigger", "start a build of a branch on a server", triggerCmd},
		{"builds", "list builds", buildsCmd},
		{"build", "show a build with its jobs and steps", buildCmd},
		{"logs", "print a build's logs; --follow streams them until it ends", logsCmd},
		{"cancel", "cancel a build", cancelCmd},
		{"retry", "run a build again; --failed re-runs only the jobs that did not pass", retryCmd},
		{"agent", "run jobs for a server on this machine", agentCmd},
		{"agent-token", "create, list or revoke agent tokens (agent-token create|list|revoke)", agentTokenCmd},
		{"agents", "list agents with their state and jobs", agentsCmd},
		{"queue", "list waiting jobs and why they wait", queueCmd},
		{"lock", "add, list or remove locks: resource pools jobs take turns on (lock add|list|rm)", lockCmd},
		{"artifacts", "list the artifacts of a build", artifactsCmd},
		{"artifact", "fetch an artifact, checked against its SHA-256 (artifact get)", artifactCmd},
		{"releases", "list a repo's releases", releasesCmd},
		{"release", "show a release: commit, authors, artifacts, deployments", releaseCmd},
		{"envs", "show a repo's environments: what runs where, since when, by whom, what waits", envsCmd},
		{"deployments", "list a repo's deployments", deploymentsCmd},
		{"deploy", "deploy a release to an environment", deployCmd},
		{"promote", "deploy what succeeded in one environment to the next", promoteCmd},
		{"rollback", "deploy again the release an environment ran before", rollbackCmd},
		{"approve", "approve a deployment waiting for approval", approveCmd},
		{"freeze", "freeze an environment for a while, list or remove freezes (admins; freeze add|list|rm)", freezeCmd},
		{"reject", "reject a deployment waiting for approval, which ends it", rejectCmd},
		{"user", "add, list or remove users (user add|list|rm)", userCmd},
		{"token", "create, list or revoke your API tokens (token create|list|revoke)", tokenCmd},
		{"group", "add users to groups, remove them, list groups (group add|rm|list)", groupCmd},
		{"role", "grant or revoke roles on repos, list them (role grant|revoke|list)", roleCmd},
		{"whoami", "print who your token acts for and your roles", whoamiCmd},
		{"audit", "list who changed what, when and why; audit verify checks the log was not altered", auditCmd},
		{"secret", "set, list or remove a repository's secrets; rotate their key (secret set|list|rm|rotate-key)", secretCmd},
		{"hook", "subscribe URLs to build events: signed JSON or chat messages (hook add|list|rm)", hookCmd},
		{"deliveries", "list commit statuses and hook events sent, or still to send, and how each went", deliveriesCmd},
		{"issue", "list the builds whose branch, title or commit message name an issue key (ABC-123, #123)", issueCmd},
		{"version", "print the version", versionCmd},
	}
}

func main() {
	os.Exit(gantry(os.Args[1:], os.Stdout, os.Stderr))
}

func gantry(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return gantry([]string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "--version", "-version":
		return versionCmd(nil, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "gantry: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Gantry: build, test and deploy every commit, from one binary.")
	fmt.Fprintln(w, "\nUsage:\n  gantry COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'gantry COMMAND --help' for a command's flags.")
	fmt.Fprintln(w, "\nExit codes: 0 success, 1 a job failed or the pipeline is invalid, 2 usage error, 130 interrupted.")
}

// newFlagSet returns a flag set whose --help prints the command's usage to
// stdout and whose errors go to stderr.
func newFlagSet(name, synopsis, about string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: gantry %s\n\n%s\n\nFlags:\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it prints --help to stdout and returns done with
// the exit code when the command should stop.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
		if a == "--" {
			break
		}
	}
	// Flags may come after positional arguments (gantry repo add NAME --url
	// U): parse, set the next positional aside, parse the rest again.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, true
			}
			return exitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// Parse stops at the first non-flag, or just after "--".
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	fs.Parse(append([]string{"--"}, positional...))
	return 0, false
}

// version is the binary's module version, or "devel".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func versionCmd(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "gantry %s\n", version())
	return exitOK
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}
